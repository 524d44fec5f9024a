"""The evaluate_model job on a tiny trained run: tables, JSON, figures, and its errors."""

import json
import re

import numpy as np
import pytest

pytest.importorskip("tensorflow")

from jobs import evaluate_model, train_model


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    import lamost2csst

    tmp = tmp_path_factory.mktemp("eval")
    ds = lamost2csst.load_grid().isel(model=slice(0, 16))
    grid = tmp / "grid.zarr"
    ds.to_zarr(grid, mode="w", consolidated=False)
    run_dir = tmp / "run"
    assert (
        train_model.main(
            [
                "pretrain",
                "--grid",
                str(grid),
                "--run-dir",
                str(run_dir),
                "--epochs",
                "2",
                "--batch-size",
                "16",
            ]
        )
        == 0
    )
    return grid, run_dir


def test_grid_evaluation_writes_tables_and_figures(run, tmp_path, capsys):
    grid, run_dir = run
    out = tmp_path / "out"
    assert (
        evaluate_model.main(
            [
                "--model",
                str(run_dir / "best.keras"),
                "--grid",
                str(grid),
                "--out",
                str(out),
                "--snrs",
                "20,40",
                "--realisations",
                "3",
                "--ridge-baseline",
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert "| Teff | SNR | models |" in printed and "0.0425" in printed  # paper column present
    assert "GV ridge" in printed
    result = json.loads((out / "evaluation.json").read_text())
    split = json.loads((run_dir / "split.json").read_text())
    n_test = len(split["test"])
    rows = result["grid"]
    assert {r["snr"] for r in rows} == {20.0, 40.0}
    # every test model appears in exactly one Teff bin per SNR, 3 realisations each
    for snr in (20.0, 40.0):
        in_snr = [r for r in rows if r["snr"] == snr]
        assert sum(r["n_distinct"] for r in in_snr) <= n_test
        assert all(r["n_star"] == 3 * r["n_distinct"] for r in in_snr)
    for r in rows:
        for band in ("GU", "GV", "GI"):
            # noise alone makes the errors of any model positive; the per-bin table prints the JSON's numbers
            assert r[f"error_{band}"] > 0 and r[f"ridge_error_{band}"] > 0
        assert f"| {r['snr']:g} | {r['teff_bin']:.0f} | {r['n_distinct']} | {r['error_GU']:.4f} | " in printed
    # the grid has no masked target pixels, so every star has the same pixels per band: the fraction
    # |r|/sigma < 1 over all stars of an SNR is the star-weighted mean of the per-bin fractions
    for s in result["grid_sigma_summary"]:
        in_snr = [r for r in rows if r["snr"] == s["snr"]]
        weighted = sum(r["n_star"] * r[f"within1sigma_{s['band']}"] for r in in_snr) / sum(
            r["n_star"] for r in in_snr
        )
        assert s["within1sigma"] == pytest.approx(weighted, rel=1e-12)
    for name in ("evaluation.md", "grid_residuals.png", "grid_calibration.png"):
        assert (out / name).stat().st_size > 0
    branch = result["error_branch"]  # the uncertainty branch's health, also in the Markdown
    assert branch["units"] == 16 and (branch["snr"], branch["factor"]) == (30.0, 2.0)
    # active unit-star pairs at SNR 30 (one star per test model): an integer, at least one pair per
    # active unit and at most one per active unit and star
    pairs = branch["active_fraction"] * branch["units"] * n_test
    assert pairs == pytest.approx(round(pairs), abs=1e-6)
    assert branch["active_units"] <= round(pairs) <= branch["active_units"] * n_test
    if branch["active_units"] == 0:  # a dead branch: sigma cannot follow the stated errors
        assert branch["sigma_ratio_median"] == 1.0
    assert branch["sed_max_relative_change"] == 0.0  # the SED never depends on the stated errors
    assert "Uncertainty branch" in printed
    # the same test models through the survey job's input path: same bins, all stars counted
    assert "through the survey job's input path" in printed
    lamost = result["grid_lamost_path"]
    assert [(r["snr"], r["teff_bin"], r["n_star"]) for r in lamost] == [
        (r["snr"], r["teff_bin"], r["n_star"]) for r in rows
    ]
    assert all(np.isfinite(r[f"error_{b}"]) for r in lamost for b in ("GU", "GV", "GI"))
    assert lamost != rows
    assert {(r["snr"], r["band"]) for r in result["grid_lamost_path_sigma_summary"]} == {
        (s, b) for s in (20.0, 40.0) for b in ("GU", "GV", "GI")
    }


def test_same_seed_same_numbers(run, tmp_path):
    grid, run_dir = run
    outs = []
    for name in ("a", "b"):
        evaluate_model.main(
            [
                "--model",
                str(run_dir / "best.keras"),
                "--grid",
                str(grid),
                "--out",
                str(tmp_path / name),
                "--snrs",
                "20",
                "--realisations",
                "2",
            ]
            + (["--no-lamost-path"] if name == "b" else [])
        )
        outs.append(json.loads((tmp_path / name / "evaluation.json").read_text()))
    # the direct path's numbers do not depend on whether the LAMOST path ran too
    assert outs[0]["grid"] == outs[1]["grid"]
    assert outs[0]["grid_lamost_path"] and outs[1]["grid_lamost_path"] is None


def test_missing_split_is_a_clear_error(run, tmp_path, capsys):
    grid, run_dir = run
    from lamost2csst.nn.inference import load_model, save_model

    bare = save_model(load_model(run_dir / "best.keras"), tmp_path / "bare.keras")  # card without a split
    with pytest.raises(SystemExit) as exit_info:
        evaluate_model.main(["--model", str(bare), "--grid", str(grid), "--out", str(tmp_path / "o")])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("python -m jobs.evaluate_model: error: ") and "no training split" in err


@pytest.mark.slow
def test_miles_verification_runs_on_the_mangadap_stars(run, tmp_path):
    pytest.importorskip("mangadap")
    grid, run_dir = run
    out = tmp_path / "m"
    evaluate_model.main(
        ["--model", str(run_dir / "best.keras"), "--out", str(out), "--no-grid-test", "--miles"]
    )
    miles = json.loads((out / "evaluation.json").read_text())["miles"]
    assert miles["n_used"] > 200 and miles["n_used"] + miles["n_screened_out"] <= miles["n_selected"]
    assert [e["wave"] for e in miles["errors"]] == [3600.0, 4500.0, 5000.0, 6000.0, 7000.0]
    assert (out / "miles_residuals.png").exists()


def test_ensemble_evaluation_reports_total_and_aleatoric_calibration(run, tmp_path):
    grid, run_dir = run
    out = tmp_path / "ens"
    # a second member: the checkpoint of the same run (different weights from best.keras only if
    # training moved on; the combination code is tested exactly in tests/nn/test_uncertainty.py)
    assert (
        evaluate_model.main(
            [
                "--model",
                str(run_dir / "best.keras"),
                "--ensemble",
                str(run_dir / "checkpoint.keras"),
                "--grid",
                str(grid),
                "--out",
                str(out),
                "--snrs",
                "20",
                "--realisations",
                "2",
            ]
        )
        == 0
    )
    result = json.loads((out / "evaluation.json").read_text())
    assert result["ensemble"] == [str(run_dir / "checkpoint.keras")]
    assert set(result["grid_within1sigma_aleatoric_only"]) == {"snr20_GU", "snr20_GV", "snr20_GI"}
    assert [(r["snr"], r["band"]) for r in result["grid_sigma_summary"]] == [
        (20.0, b) for b in ("GU", "GV", "GI")
    ]
    assert "median σ epistemic" in (out / "evaluation.md").read_text()


def test_an_ensemble_member_trained_on_test_models_is_refused(run, tmp_path, capsys):
    grid, run_dir = run
    other = tmp_path / "other"  # another split seed: some of run's test models are its training models
    assert (
        train_model.main(
            [
                "pretrain",
                "--grid",
                str(grid),
                "--run-dir",
                str(other),
                "--epochs",
                "1",
                "--batch-size",
                "16",
                "--seed",
                "7",
            ]
        )
        == 0
    )
    test = {tuple(p) for p in json.loads((run_dir / "split.json").read_text())["test"]}
    assert test & {tuple(p) for p in json.loads((other / "split.json").read_text())["train"]}
    with pytest.raises(SystemExit) as exit_info:
        evaluate_model.main(
            [
                "--model",
                str(run_dir / "best.keras"),
                "--ensemble",
                str(other / "best.keras"),
                "--grid",
                str(grid),
                "--out",
                str(tmp_path / "o"),
                "--snrs",
                "20",
            ]
        )
    assert exit_info.value.code == 2
    assert re.search("trained on .* of the test models", capsys.readouterr().err)
