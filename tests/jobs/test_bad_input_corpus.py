"""The bad-input corpus (tests/data/bad_inputs, docs/reliability.md) through the jobs.

Every FITS file is either rejected by ingest_lamost with a reason naming its problem, or
ingested and then predicted with the documented flags; counts conserve:
files = ok + flagged + rejected. Hand-made catalogues with non-finite values are flagged;
an empty folder and a store of another schema stop the jobs with exit code 2.
"""

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from jobs import build_flatcube as flatcube_job
from jobs import ingest_lamost as ingest_job
from jobs import predict_catalogue as predict_job
from lamost2csst.core.flags import Flag
from lamost2csst.io.readers import read_lamost

DATA = Path(__file__).resolve().parents[1] / "data"
CORPUS = DATA / "bad_inputs"
MANIFEST = json.loads((CORPUS / "manifest.json").read_text())
REPO = DATA.parents[1]

sys.path.insert(0, str(DATA))
import make_bad_inputs  # noqa: E402 - the corpus generator lives beside its data


def _flags(names) -> int:
    value = 0
    for name in names:
        value |= Flag[name]
    return value


def test_the_committed_corpus_is_what_the_script_makes(tmp_path):
    made = make_bad_inputs.make(tmp_path / "corpus")
    assert made == MANIFEST
    for case in made["lamost"]:
        assert (CORPUS / "lamost" / case["file"]).read_bytes() == (
            tmp_path / "corpus" / "lamost" / case["file"]
        ).read_bytes()
    for store in ("bad_values.zarr", "wrong_schema.zarr"):
        committed = xr.open_zarr(CORPUS / store, consolidated=False).load()
        remade = xr.open_zarr(tmp_path / "corpus" / store, consolidated=False).load()
        # The wavelength coordinate is 10**x: its last bit depends on the CPU's SIMD path
        # (seen: 188 of 3909 values 1 ulp apart between two x86_64 machines).
        waves = [name for name in committed.coords if name.startswith("wave")]
        for name in waves:
            np.testing.assert_allclose(remade[name].values, committed[name].values, rtol=4e-16, atol=0)
        xr.testing.assert_identical(committed.drop_vars(waves), remade.drop_vars(waves))


@pytest.fixture(scope="module")
def through_the_jobs(client, tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus")
    catalogue, predictions = root / "catalogue.zarr", root / "predictions.zarr"
    ingest = ingest_job.run(
        ingest_job.parse_args([str(CORPUS / "lamost"), "--out", str(catalogue), "--no-progress"]), client
    )
    predict = predict_job.run(
        predict_job.parse_args(["--catalogue", str(catalogue), "--out", str(predictions), "--no-progress"]),
        client,
    )
    return (
        ingest,
        predict,
        xr.open_zarr(catalogue, consolidated=False),
        xr.open_zarr(predictions, consolidated=False),
    )


def test_rejected_files_are_recorded_with_their_reason(through_the_jobs):
    _, _, catalogue, _ = through_the_jobs
    rejects = {Path(r["path"]).name: r["reason"] for r in catalogue.attrs["rejects"]}
    expected = {c["file"]: c["words"] for c in MANIFEST["lamost"] if c["outcome"] == "reject"}
    assert set(rejects) == set(expected)
    for name, words in expected.items():
        assert words in rejects[name], (name, rejects[name])
        assert name in rejects[name]  # the reason names the file


def test_ingested_stars_carry_the_documented_flags(through_the_jobs):
    _, _, catalogue, predictions = through_the_jobs
    cases = {c["file"]: c for c in MANIFEST["lamost"] if c["outcome"] != "reject"}
    files = [Path(f).name for f in catalogue["file"].values]
    assert sorted(files) == sorted(cases)  # each ingested file exactly once
    np.testing.assert_array_equal(predictions["obsid"].values, catalogue["obsid"].values)
    flags = predictions["flags"].values
    sed = predictions["sed"].values
    for i, name in enumerate(files):
        case = cases[name]
        assert predictions["obsid"].values[i] == case["obsid"]
        have = int(flags[i])
        assert have & _flags(case["required"]) == _flags(case["required"]), (name, Flag(have))
        assert have & _flags(case["forbidden"]) == 0, (name, Flag(have))
        # a star without usable data has NaN predictions; every other one is finite
        assert np.isfinite(sed[i]).all() == (not have & Flag.NO_DATA), name


def test_non_finite_pixels_of_a_file_are_masked_by_the_reader():
    ds = read_lamost(CORPUS / "lamost" / "nan_inf_flux.fits")
    from astropy.io import fits

    raw = fits.getdata(CORPUS / "lamost" / "nan_inf_flux.fits")[0]
    bad = ~np.isfinite(raw)
    assert 0.02 < bad.mean() < 0.04
    assert ds["mask"].values[0][bad].all()
    assert np.isfinite(ds["flux"].values[0][~ds["mask"].values[0]]).all()


def test_counts_conserve_files_equal_ok_plus_flagged_plus_rejected(through_the_jobs):
    ingest, predict, _, predictions = through_the_jobs
    n_files = len(MANIFEST["lamost"])
    assert ingest["files_found"] == n_files
    assert ingest["stars_added"] + ingest["rejected"] == n_files
    assert predict["stars_in"] == ingest["stars_added"] == predict["ok"] + predict["flagged"]
    n_ok = sum(c["outcome"] == "ok" for c in MANIFEST["lamost"])
    # the clean files get no INPUT flag; UNCERTAIN and OUTSIDE_DOMAIN depend on the model (the
    # corpus's clean spectra are smooth test spectra, which the domain check may call non-stellar)
    input_bits = sum(int(Flag[name]) for name in MANIFEST["input_flags"])
    assert int(((predictions["flags"].values & input_bits) == 0).sum()) >= n_ok


def test_hand_made_catalogue_with_non_finite_values_is_flagged(client, tmp_path):
    summary = predict_job.run(
        predict_job.parse_args(
            [
                "--catalogue",
                str(CORPUS / "bad_values.zarr"),
                "--out",
                str(tmp_path / "p.zarr"),
                "--no-progress",
            ]
        ),
        client,
    )
    ds = xr.open_zarr(tmp_path / "p.zarr", consolidated=False)
    rows = MANIFEST["bad_values"]
    assert summary["stars_in"] == len(rows) == summary["ok"] + summary["flagged"]
    for row, flag, sed in zip(rows, ds["flags"].values, ds["sed"].values):
        have = int(flag)
        assert have & _flags(row["required"]) == _flags(row["required"]), (row["case"], Flag(have))
        assert have & _flags(row["forbidden"]) == 0, (row["case"], Flag(have))
        assert np.isfinite(sed).all() == (not have & Flag.NO_DATA), row["case"]


def _exit_2(main, argv, capsys) -> str:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    return capsys.readouterr().err


def test_empty_folder_and_wrong_schema_stop_the_jobs(tmp_path, capsys):
    err = _exit_2(ingest_job.main, [str(CORPUS / "empty_folder"), "--out", str(tmp_path / "c.zarr")], capsys)
    assert "no FITS files" in err and "Traceback" not in err
    err = _exit_2(
        predict_job.main,
        ["--catalogue", str(CORPUS / "wrong_schema.zarr"), "--out", str(tmp_path / "p.zarr")],
        capsys,
    )
    assert "wrong_schema.zarr" in err and "schema" in err and "Traceback" not in err
    err = _exit_2(
        flatcube_job.main,
        [
            "--observations",
            str(CORPUS / "wrong_schema.zarr"),
            "--predictions",
            str(CORPUS / "wrong_schema.zarr"),
            "--out",
            str(tmp_path / "cube.zarr"),
        ],
        capsys,
    )
    assert "wrong_schema.zarr" in err and "Traceback" not in err
    assert not (tmp_path / "c.zarr").exists() and not (tmp_path / "p.zarr").exists()


def test_the_reliability_doc_lists_every_case():
    text = (REPO / "docs" / "reliability.md").read_text()
    for case in MANIFEST["lamost"]:
        assert f"lamost/{case['file']}" in text, case["file"]
    for row in MANIFEST["bad_values"]:
        assert f"`{row['case']}`" in text, row["case"]


def test_every_test_the_reliability_doc_cites_exists():
    import re

    text = (REPO / "docs" / "reliability.md").read_text()
    cited = []
    for path, first, more in re.findall(r"`(tests/[\w/]+\.py)::(\w+)`((?:, `::\w+`)*)", text):
        cited += [(path, name) for name in [first, *re.findall(r"::(\w+)", more)]]
    assert len(cited) > 40
    for path, name in cited:
        assert f"def {name}(" in (REPO / path).read_text(), f"{path}::{name} is cited but does not exist"
