"""The normalize_catalogue command line: help, bad input, end to end on the demo catalogue."""

import json

import numpy as np
import pytest
import xarray as xr

from jobs import normalize_catalogue as job
from lamost2csst.core import prepare_inputs
from lamost2csst.core.inputs import treat_trouble_spots
from lamost2csst.errors import InputError
from lamost2csst.io import toy_catalogue, write_spectra
from lamost2csst.io.spectra import round_pixels

N_DEMO = 300


def test_help_exits_0_and_explains_steps_options_and_outputs(capsys):
    with pytest.raises(SystemExit) as exc:
        job.main(["--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    for option in (
        "--catalogue",
        "--out",
        "--n-demo",
        "--chunk-stars",
        "--scheduler",
        "--workers",
        "--threads-per-worker",
        "--resume",
        "--overwrite",
        "--performance-report",
        "--no-progress",
    ):
        assert option in text
    for words in (
        "rest frame",
        "INPUT_WAVE",
        "continuum",
        "chunk-<index>.done",
        "outputs/demo_inputs.zarr",
        "JSON",
    ):
        assert words in text


def _fails_with_2(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        job.main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err


def test_wrong_schema_missing_store_and_missing_out_exit_2(tmp_path, capsys):
    wrong = tmp_path / "wrong.zarr"
    xr.Dataset({"flux": (("star", "wave"), np.ones((2, 3), np.float32))}).to_zarr(
        wrong, zarr_format=3, consolidated=False
    )
    err = _fails_with_2(["--catalogue", str(wrong), "--out", str(tmp_path / "o.zarr")], capsys)
    assert "not a lamost2csst spectra catalogue" in err and "schema" in err
    err = _fails_with_2(
        ["--catalogue", str(tmp_path / "missing.zarr"), "--out", str(tmp_path / "o.zarr")], capsys
    )
    assert "does not exist" in err
    err = _fails_with_2(["--catalogue", str(wrong)], capsys)
    assert "--out is required" in err
    err = _fails_with_2(["--chunk-stars", "0"], capsys)
    assert "positive integer" in err
    assert not (tmp_path / "o.zarr").exists()


def test_existing_output_without_resume_exits_2(tmp_path, capsys):
    (tmp_path / "o.zarr").mkdir()
    cat = tmp_path / "c.zarr"
    write_spectra(toy_catalogue(5), cat)
    err = _fails_with_2(["--catalogue", str(cat), "--out", str(tmp_path / "o.zarr")], capsys)
    assert "already exists" in err and "--resume" in err


def test_demo_end_to_end_resume_and_overwrite(client, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # the demo catalogue goes to ./outputs/
    out = tmp_path / "demo_inputs.zarr"
    argv = ["--n-demo", str(N_DEMO), "--out", str(out), "--no-progress"]
    summary = job.run(job.parse_args(argv), client)

    captured = capsys.readouterr()
    lines = captured.out.strip().splitlines()
    assert len(lines) == 1 and json.loads(lines[0]) == summary
    assert "building the demo catalogue" in captured.err
    assert (tmp_path / "outputs" / "demo_catalogue.zarr").is_dir()
    assert summary["stars_in"] == summary["stars_written"] == N_DEMO
    assert summary["chunks_skipped"] == 0

    toy = round_pixels(toy_catalogue(N_DEMO))  # the demo catalogue's pixels as written (io.spectra)
    # the job masks LAMOST's trouble spots (observed frame) by default, as predict_catalogue does
    ivar, mask = treat_trouble_spots(toy.wave.values, toy.ivar.values, toy.mask.values, mode="mask")
    expected = prepare_inputs(toy.wave.values, toy.flux.values, ivar=ivar, z=toy.z.values, mask=mask)
    ds = xr.open_zarr(out, consolidated=False)
    np.testing.assert_array_equal(ds.flux.values, expected.flux)
    np.testing.assert_array_equal(ds.error.values, expected.error)
    np.testing.assert_array_equal(ds.obsid.values, np.arange(1, N_DEMO + 1))
    assert ds.attrs["summary"] == summary

    with pytest.raises(InputError, match="already exists"):
        job.run(job.parse_args(argv), client)
    again = job.run(job.parse_args([*argv, "--resume"]), client)
    assert "reusing the demo catalogue" in capsys.readouterr().err
    assert (again["chunks_done"], again["chunks_skipped"]) == (0, summary["chunks_total"])
    fresh = job.run(job.parse_args([*argv, "--overwrite", "--chunk-stars", "100"]), client)
    assert (fresh["chunks_done"], fresh["stars_written"]) == (3, N_DEMO)


def test_overwrite_never_removes_a_foreign_directory(client, tmp_path):
    cat, out = tmp_path / "c.zarr", tmp_path / "precious"
    write_spectra(toy_catalogue(5), cat)
    out.mkdir()
    (out / "thesis.tex").write_text("...")
    with pytest.raises(InputError, match="refusing to remove"):
        job.run(job.parse_args(["--catalogue", str(cat), "--out", str(out), "--overwrite"]), client)
    assert (out / "thesis.tex").exists()


def test_main_with_its_own_local_cluster_and_performance_report(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    cat = tmp_path / "c.zarr"
    write_spectra(toy_catalogue(50), cat, chunk_stars=25)
    report = tmp_path / "report.html"
    argv = ["--catalogue", str(cat), "--out", "o.zarr", "--workers", "1", "--performance-report", str(report)]
    summary = job.main([*argv, "--no-progress"])
    captured = capsys.readouterr()
    assert json.loads(captured.out.strip()) == summary
    assert "Dask dashboard: http://127.0.0.1:" in captured.err
    assert summary["stars_written"] == 50 and summary["chunks_done"] == 2
    assert report.stat().st_size > 0
