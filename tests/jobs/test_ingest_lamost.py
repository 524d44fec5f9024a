"""The ingest_lamost command line: help, bad input exit 2, a run with a reject."""

import json

import pytest
import xarray as xr

from jobs import ingest_lamost as job
from lamost2csst.io.lamost_export import export_lamost
from lamost2csst.io.simulated import grid_catalogue


def test_help_explains_steps_and_outputs(capsys):
    with pytest.raises(SystemExit) as exc:
        job.main(["--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    for words in (
        "--out",
        "--chunk-stars",
        "--files-per-task",
        "--scheduler",
        "--workers",
        "rejects",
        "image layout",
        "binary-table",
        "adds nothing twice",
        "JSON",
    ):
        assert words in text


def test_missing_input_exits_2(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        job.main([str(tmp_path / "nope"), "--out", str(tmp_path / "o.zarr")])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "neither a file nor a folder" in err and "Traceback" not in err


def test_run_prints_the_summary_and_records_the_reject(client, tmp_path, capsys):
    export_lamost(grid_catalogue(12, seed=1), tmp_path / "fits", layout="mixed")
    (tmp_path / "fits" / "bad.fits").write_bytes(b"junk")
    out = tmp_path / "c.zarr"
    summary = job.run(job.parse_args([str(tmp_path / "fits"), "--out", str(out), "--no-progress"]), client)
    captured = capsys.readouterr()
    assert json.loads(captured.out.strip().splitlines()[-1]) == summary
    assert (summary["stars_added"], summary["rejected"]) == (12, 1)
    assert "1 file(s) rejected" in captured.err
    assert xr.open_zarr(out, consolidated=False).attrs["rejects"][0]["path"].endswith("bad.fits")
