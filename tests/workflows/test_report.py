"""The evaluation report: Markdown tables against the paper's numbers, and the figures."""

from types import SimpleNamespace

import numpy as np

from lamost2csst.core.grids import OUTPUT_WAVE
from lamost2csst.workflows.evaluation import GridArrays, GridEvaluation
from lamost2csst.workflows.report import evaluation_markdown, write_figures


def _row(snr, teff, error, **extra):
    row = {"snr": snr, "teff_bin": teff, "n_star": 6, "n_distinct": 2}
    for band in ("GU", "GV", "GI"):
        row |= {
            f"error_{band}": error,
            f"offset_{band}": -0.001,
            f"within1sigma_{band}": 0.7,
            f"std_z_{band}": 1.1,
            **{f"{k}_{band}": v for k, v in extra.items()},
        }
    return row


def _sigma_rows(snr, within):
    return [
        {
            "snr": snr,
            "band": b,
            "within1sigma": within,
            "within1sigma_aleatoric": 0.5,
            "median_sigma_aleatoric": 0.01,
            "median_sigma_epistemic": 0.002,
        }
        for b in ("GU", "GV", "GI")
    ]


CARD = {"sha256": "0123456789abcdef", "train_models": 12}


def test_markdown_sets_our_numbers_beside_the_papers():
    rows = [_row(20.0, 6000.0, 0.05, ridge_error=0.08), _row(20.0, 7000.0, 0.03, ridge_error=0.09)]
    results = SimpleNamespace(
        grid=GridEvaluation(rows, None, _sigma_rows(20.0, 0.66)), lamost=None, branch=None, miles=None
    )
    text = evaluation_markdown(CARD, results, model_label="m.keras", command="cmd", ensemble=False)
    lines = text.splitlines()
    assert lines[2] == "model: `m.keras` (sha256 0123456789ab), trained on 12 grid models; command: `cmd`"
    # the 6000 K / SNR 20 bin against the paper's 0.0425 0.0025 0.0029; ridge columns last
    assert (
        "| 6000 | 20 | 2 | 0.0500 | 0.0425 | 0.0500 | 0.0025 | 0.0500 | 0.0029 | 0.0800 | 0.0800 | 0.0800 |"
    ) in lines
    assert "| 8000 | 40 | 0 | – | 0.0064 | – | 0.0008 | – | 0.0014 |" in lines  # no such bin here
    assert "| 20 | 7000 | 2 | " + " | ".join(["0.0300 | -0.0010 | 0.700 | 1.10"] * 3) + " |" in lines
    assert "Ensemble" not in text and "MILES" not in text and "Uncertainty branch" not in text


def test_markdown_adds_the_lamost_path_branch_ensemble_and_miles_sections():
    direct = GridEvaluation([_row(20.0, 6000.0, 0.05)], None, _sigma_rows(20.0, 0.66))
    lamost = GridEvaluation([_row(20.0, 6000.0, 0.06)], None, _sigma_rows(20.0, 0.61))
    branch = {
        "snr": 30.0,
        "active_units": 3,
        "units": 16,
        "active_fraction": 0.1,
        "factor": 2.0,
        "sigma_ratio_median": 1.0,
        "sed_max_relative_change": 0.0,
    }
    miles = {
        "n_used": 200,
        "n_selected": 230,
        "n_screened_out": 30,
        "rmsae_threshold": 0.05,
        "snr": 100.0,
        "within1sigma": 0.5,
        "std_z": 1.5,
        "within1sigma_aleatoric_only": 0.4,
        "median_sigma_aleatoric": 0.01,
        "median_sigma_epistemic": 0.003,
        "errors": [
            {"wave": w, "error": 0.02, "offset": 0.001} for w in (3600.0, 4500.0, 5000.0, 6000.0, 7000.0)
        ],
    }
    results = SimpleNamespace(grid=direct, lamost=lamost, branch=branch, miles=miles)
    lines = evaluation_markdown(CARD, results, model_label="m", command="c", ensemble=True).splitlines()
    assert "| 6000 | 20 | 0.0500 | 0.0600 | 0.0500 | 0.0600 | 0.0500 | 0.0600 |" in lines  # direct | LAMOST
    assert "| 20 | 0.660 | 0.610 | 0.660 | 0.610 | 0.660 | 0.610 |" in lines
    assert any("3 of 16 units active" in line for line in lines)
    assert "| 20 | GV | 0.660 | 0.500 | 0.0100 | 0.0020 |" in lines  # ensemble table
    assert "| 3600 | 0.0200 | +0.0010 | 0.07 |" in lines  # MILES against the paper's 0.070 at 3600 A
    assert lines[-1].startswith("MILES, ensemble: fraction |r|/σ<1 0.500 with the total σ, 0.400")
    assert not any("In-sample" in line for line in lines)
    results.miles = {**miles, "in_sample": True}  # a model fine-tuned on these MILES stars
    text = evaluation_markdown(CARD, results, model_label="m", command="c", ensemble=True)
    assert "**In-sample:**" in text and "out-of-fold" in text


def test_figures_are_written(tmp_path):
    rng = np.random.default_rng(0)
    n = 12
    true = np.exp(rng.normal(0, 0.2, (n, OUTPUT_WAVE.size)))
    arrays = GridArrays(
        true,
        np.zeros(true.shape, bool),
        true * (1 + 0.01 * rng.standard_normal(true.shape)),
        np.full(true.shape, 0.01),
        np.repeat([6000.0, 8000.0], 6),
        np.tile([20.0, 40.0], 6),
        np.arange(n),
    )
    miles = (OUTPUT_WAVE, 0.01 * rng.standard_normal((5, OUTPUT_WAVE.size)), np.full(5, 6000.0))
    files = write_figures(tmp_path, grid_arrays=arrays, miles_arrays=miles)
    assert [f.name for f in files] == ["grid_residuals.png", "grid_calibration.png", "miles_residuals.png"]
    assert all(f.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for f in files)
    assert write_figures(tmp_path / "none") == []
