"""The flat-cube command lines: help, bad input exit 2, simulate -> build end to end."""

import json
import os

import numpy as np
import pytest
import xarray as xr

from jobs import build_flatcube as job
from jobs import simulate_observations as sim
from lamost2csst.core import OUTPUT_WAVE
from lamost2csst.io import write_spectra
from lamost2csst.io.simulated import grid_catalogue


def test_help_texts(capsys):
    for module, words in (
        (
            job,
            (
                "--observations",
                "--predictions",
                "--order",
                "--kappa",
                "--min-stars",
                "--resume",
                "tree reduction",
                "no_prediction",
                "truth",
                "outputs/flatcube_demo",
            ),
        ),
        (sim, ("--catalogue", "--exposures", "--scale-error", "--throughput", "--max-order", "truth")),
    ):
        with pytest.raises(SystemExit) as exc:
            module.main(["--help"])
        assert exc.value.code == 0
        text = capsys.readouterr().out
        for w in words:
            assert w in text, (module.__name__, w)


def test_bad_input_exits_2(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        job.main(["--observations", str(tmp_path / "o.zarr")])  # --predictions missing
    assert exc.value.code == 2
    with pytest.raises(SystemExit) as exc:
        job.main(
            [
                "--observations",
                str(tmp_path / "o.zarr"),
                "--predictions",
                str(tmp_path / "p.zarr"),
                "--out",
                str(tmp_path / "c.zarr"),
            ]
        )
    assert exc.value.code == 2
    assert "does not exist" in capsys.readouterr().err
    cat = tmp_path / "cat.zarr"
    write_spectra(grid_catalogue(5, seed=1).drop_vars("sed_true"), cat)
    with pytest.raises(SystemExit) as exc:
        sim.main(["--catalogue", str(cat), "--out", str(tmp_path / "o.zarr")])
    assert exc.value.code == 2
    assert "sed_true" in capsys.readouterr().err


def test_simulate_then_build(client, tmp_path, capsys):
    demo = grid_catalogue(300, seed=2)
    cat = tmp_path / "cat.zarr"
    write_spectra(demo, cat)
    obs = tmp_path / "obs.zarr"
    s = sim.main(["--catalogue", str(cat), "--out", str(obs), "--exposures", "2", "--max-order", "2"])
    assert s["stars"] == int(np.isfinite(demo.z.values).sum()) and s["observations"] == s["stars"] * 2 * 3
    pred = tmp_path / "pred.zarr"  # the true SEDs stand in for predictions (issue 6 allows it)
    xr.Dataset(
        {
            "sed": (("star", "wave_out"), demo.sed_true.values),
            "sigma": (("star", "wave_out"), np.full(demo.sed_true.shape, 0.005, np.float32)),
            "flags": (("star",), np.zeros(300, np.uint16)),
        },
        coords={"obsid": ("star", demo.obsid.values), "wave_out": ("wave_out", OUTPUT_WAVE)},
        attrs={"schema": "lamost2csst.predictions/2"},
    ).to_zarr(pred, zarr_format=3, consolidated=False)
    capsys.readouterr()
    summary = job.run(
        job.parse_args(
            [
                "--observations",
                str(obs),
                "--predictions",
                str(pred),
                "--out",
                str(tmp_path / "cube.zarr"),
                "--no-progress",
                "--fits-dir",
                str(tmp_path / "fits"),
                "--fits-binning",
                "1024",
            ]
        ),
        client,
    )
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1]) == summary
    assert summary["observations_used"] == s["observations"]
    assert {row["band"] for row in summary["truth"]} == {"GU", "GV", "GI"}
    assert len(summary["fits"]) == 12 and all(os.path.exists(p) for p in summary["fits"])
    # the cube recovers the flat injected by the simulation job, in every band, within its stated
    # errors (here overstated: the predictions are the true SEDs, sigma 0.005; measured z^2 0.73-0.86)
    cube = xr.open_zarr(tmp_path / "cube.zarr", consolidated=False).load()
    truth = xr.open_zarr(obs, group="truth", consolidated=False).load()
    assert summary["wavelengths_unfit_in_band"] == 0
    report = {row["band"]: row for row in summary["truth"]}
    for band in ("GU", "GV", "GI"):
        fit = cube.fit.sel(band=band).values
        flat, error = cube.flat.sel(band=band).values[fit], cube.flat_error.sel(band=band).values[fit]
        true = truth.flat.sel(band=band).values[fit]
        z = (flat - true) / error  # a flat off by 0.25 of its error would give |mean z| >= 0.25
        assert abs(z.mean()) < 0.05 and 0.6 < np.mean(z**2) < 1.1, (band, z.mean(), np.mean(z**2))
        # the job's truth report is the median over wavelengths of the rms over the detector
        rms = np.sqrt(np.mean((flat / true - 1.0) ** 2, axis=(1, 2)))
        assert report[band]["rms_deviation_median"] == pytest.approx(np.median(rms), abs=1e-6)
        assert report[band]["wavelengths_fit"] == fit.sum()


def test_monte_carlo_end_to_end(client, tmp_path, monkeypatch, capsys):
    """--monte-carlo on a small demo: every section present, precision falls with the stars, plot written."""
    monkeypatch.setattr(job, "DEMO_DIR", str(tmp_path / "demo"))
    monkeypatch.setattr(job, "DEMO_STARS", 800)
    monkeypatch.setattr(job, "MC_STAR_COUNTS", (100, 1600))
    plot = tmp_path / "mc.png"
    summary = job.run(
        job.parse_args(["--monte-carlo", "--realizations", "4", "--plot", str(plot), "--no-progress"]), client
    )
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1]) == summary
    assert summary["pool_stars"] > 100 and summary["paper"] == job.PAPER_PRECISION
    bands = ("GU", "GV", "GI")
    for row in [summary["baseline"], *summary["vs_stars"], *summary["vs_order"], summary["scale_error_1pct"]]:
        assert all(np.isfinite(row[b]) and row[b] > 0 for b in bands), row
    few, many = summary["vs_stars"]
    for b in bands:  # 16x the stars: ~1/4 of the scatter (1/sqrt(N)); far below 1/2 in any case
        assert many[b] < 0.5 * few[b], (b, few[b], many[b])
    assert [r["order"] for r in summary["vs_order"]] == [1, 2, 3]
    assert summary["scale_error_1pct"]["GV"] > summary["baseline"]["GV"]  # a 1 % scale error can only hurt
    selfcal = summary["self_calibration"]
    assert all(np.isfinite(selfcal[k][b]) for k in ("known", "self") for b in bands)
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
