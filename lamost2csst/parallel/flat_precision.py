"""The flat-cube demo's inputs and the Sect. 5 Monte Carlo of the flat precision, on Dask.

:func:`flatcube_demo_inputs` builds (once) what ``python -m jobs.build_flatcube`` fits
without inputs: a catalogue of LAMOST-like stars simulated from the shipped grid, their
predictions by the shipped network and CSST observations simulated with a known injected
flat. :func:`flat_precision_study` runs the paper's Monte Carlo
(:func:`lamost2csst.core.calibration.monte_carlo_flat_precision`) on the demo's predicted
SEDs, its realizations on the workers, and compares known scales with the self-calibration
through :func:`lamost2csst.parallel.flatcube.build_flatcube` itself.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable

import numpy as np

__all__ = ["PAPER_PRECISION", "flat_precision_study", "flatcube_demo_inputs"]

PAPER_PRECISION = {"GU": 0.005, "GV": 0.0003, "GI": 0.0005}  # the paper's flat precision at 400 stars


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def flatcube_demo_inputs(
    client, *, demo_dir: str, n_stars: int, progress: bool = True, log: Callable[[str], None] = _stderr
) -> tuple[str, str]:
    """Catalogue -> predictions -> observations of the demo, built once under ``demo_dir``.

    Returns the paths of the observations and the predictions; a complete earlier build
    (``demo_dir/complete`` exists) is reused, anything else in ``demo_dir`` is replaced.
    """
    import shutil

    from lamost2csst.io import write_spectra
    from lamost2csst.io.observations import simulate_observations, write_observations
    from lamost2csst.io.simulated import grid_catalogue
    from lamost2csst.parallel.predict import predict_catalogue

    obs_path = os.path.join(demo_dir, "observations.zarr")
    pred_path = os.path.join(demo_dir, "predictions.zarr")
    if os.path.exists(os.path.join(demo_dir, "complete")):
        log(f"reusing the demo inputs in {demo_dir}")
        return obs_path, pred_path
    shutil.rmtree(demo_dir, ignore_errors=True)
    os.makedirs(demo_dir)
    log(
        f"building the demo in {demo_dir}: {n_stars} stars from the grid, their predictions, "
        "CSST observations"
    )
    cat = grid_catalogue(n_stars, seed=3)
    cat_path = os.path.join(demo_dir, "catalogue.zarr")
    write_spectra(cat, cat_path, chunk_stars=1024)
    predict_catalogue(cat_path, pred_path, client=client, progress=progress)
    obs, truth = simulate_observations(cat["sed_true"].values, cat["obsid"].values, n_exposures=3, seed=3)
    write_observations(obs, obs_path, truth=truth)
    open(os.path.join(demo_dir, "complete"), "w").close()
    return obs_path, pred_path


def flat_precision_study(
    client,
    *,
    demo_dir: str,
    demo_stars: int,
    star_counts,
    realizations: int = 20,
    progress: bool = True,
    log: Callable[[str], None] = _stderr,
) -> dict:
    """The Sect. 5 Monte Carlo on the demo's predictions (stars with flags == 0 and S/N > 20).

    Precision per band at 400 stars and order 2 (``baseline``), against the number of stars
    (``star_counts``), the polynomial order, an order-2 fit of a cubic flat, a 1 % error of
    the known scales, and known scales vs self-calibration through the cube job. Each row is
    also written to stderr as one JSON line when done. Returns the summary.
    """
    import xarray as xr

    from lamost2csst.core.calibration import monte_carlo_flat_precision
    from lamost2csst.parallel.runtime import worker_mapper

    _, predictions = flatcube_demo_inputs(
        client, demo_dir=demo_dir, n_stars=demo_stars, progress=progress, log=log
    )
    pred = xr.open_zarr(predictions, consolidated=False)
    cat = xr.open_zarr(os.path.join(demo_dir, "catalogue.zarr"), consolidated=False)
    keep = (pred.flags.values == 0) & (cat.snr_g.values > 20)
    pool = (pred.sed.values[keep], pred.sigma.values[keep], cat.sed_true.values[keep])
    log(f"Monte Carlo: pool of {int(keep.sum())} demo stars with flags == 0 and S/N > 20")

    def case(**kw):
        res = monte_carlo_flat_precision(
            *pool,
            realizations=kw.pop("realizations", realizations),
            seed=0,
            mapper=worker_mapper(client),
            **kw,
        )
        row = {**kw, **{band: round(r["median"], 6) for band, r in res.items()}}
        _stderr(json.dumps(row))
        return row

    return {
        "job": "build_flatcube --monte-carlo",
        "pool_stars": int(keep.sum()),
        "paper": PAPER_PRECISION,
        "realizations": realizations,
        "baseline": case(n_stars=400, order=2),
        "vs_stars": [
            case(n_stars=n, order=2, realizations=max(2, realizations // (1 + n // 2000)))
            for n in star_counts
        ],
        "vs_order": [case(n_stars=400, order=o) for o in (1, 2, 3)],
        "order2_fit_of_cubic_flat": case(n_stars=400, order=2, max_order=3),
        "scale_error_1pct": case(n_stars=400, order=2, scale_error=0.01),
        "self_calibration": _self_calibration_case(client, predictions, keep, cat, realizations),
    }


def _self_calibration_case(
    client, predictions: str, keep, cat, realizations: int, n_stars: int = 400, exposures: int = 3
) -> dict:
    """Known scales vs self-calibration, through the job itself: ``n_stars`` stars observed
    ``exposures`` times per band (self-calibration needs repeats), order 2; median over
    realizations of the per-band precision the job reports against the injected flat."""
    import tempfile

    from lamost2csst.core.calibration import band_medians
    from lamost2csst.io.observations import simulate_observations, write_observations
    from lamost2csst.parallel.flatcube import build_flatcube

    pool = np.flatnonzero(keep)
    rows = {"known": [], "self": []}
    realizations = max(2, min(realizations, 5))
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(realizations):
            pick = np.random.default_rng(100 + r).choice(pool, n_stars, replace=False)
            obs, truth = simulate_observations(
                cat.sed_true.values[pick],
                cat.obsid.values[pick],
                n_exposures=exposures,
                seed=100 + r,
                max_order=2,
            )
            known_path, unknown_path = f"{tmp}/known-{r}.zarr", f"{tmp}/unknown-{r}.zarr"
            write_observations(obs, known_path, truth=truth)
            unknown = obs.assign_coords(scale=("obs", np.full(obs.sizes["obs"], np.nan)))
            write_observations(unknown, unknown_path, truth=truth)
            for name, path, kw in (
                ("known", known_path, {}),
                ("self", unknown_path, {"self_calibrate": True, "iterations": 10}),
            ):
                s = build_flatcube(
                    path,
                    predictions,
                    f"{tmp}/cube-{name}-{r}.zarr",
                    client=client,
                    order=2,
                    min_stars=10,
                    progress=False,
                    **kw,
                )
                rows[name].append({t["band"]: t["rms_deviation_median"] for t in s["truth"]})
    result = {"n_stars": n_stars, "exposures": exposures, "realizations": realizations}
    for name, values in rows.items():
        result[name] = {band: round(value, 6) for band, value in band_medians(values).items()}
    _stderr(json.dumps({"self_calibration": result}))
    return result
