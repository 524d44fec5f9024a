"""build_flatcube: the tree-reduced fit equals a direct fit, recovers the injected flat of every band
within its stated error (orders 1-3; a flat off by 25 % of its error fails), counts bad input, marks
unfit wavelengths, resumes."""

import numpy as np
import pytest
import xarray as xr
import zarr

from lamost2csst.core import OUTPUT_WAVE
from lamost2csst.core.flatfield import design_matrix, normal_equations, ratios, solve
from lamost2csst.core.slitless import DETECTOR_SHAPE
from lamost2csst.errors import InputError
from lamost2csst.io.observations import simulate_observations, write_observations
from lamost2csst.io.simulated import grid_catalogue
from lamost2csst.parallel.chunks import marker_path, markers_group
from lamost2csst.parallel.flatcube import FLATCUBE_SCHEMA, build_flatcube
from lamost2csst.parallel.runtime import write_json

N_STAR, SIGMA_PRED = 1500, 0.01


@pytest.fixture(scope="module")
def stars():
    cat = grid_catalogue(N_STAR, seed=8)
    return cat.sed_true.values, cat.obsid.values


def write_predictions(path, sed_true, obsid, *, seed=0, flags=None):
    """A predictions store whose SEDs are the truth times (1 + N(0, SIGMA_PRED)), sigma = SIGMA_PRED."""
    rng = np.random.default_rng(seed)
    sed = (sed_true * (1 + rng.normal(0, SIGMA_PRED, sed_true.shape))).astype(np.float32)
    ds = xr.Dataset(
        {
            "sed": (("star", "wave_out"), sed),
            "sigma": (("star", "wave_out"), np.full(sed.shape, SIGMA_PRED, np.float32)),
            "flags": (("star",), np.zeros(len(obsid), np.uint16) if flags is None else flags),
        },
        coords={"obsid": ("star", obsid), "wave_out": ("wave_out", OUTPUT_WAVE)},
        attrs={"schema": "lamost2csst.predictions/2", "model_hash": "test"},
    )
    ds.to_zarr(path, zarr_format=3, consolidated=False)
    return path


def store_observations(path, obs, truth, chunk=2000):
    write_observations(obs, path, truth=truth, chunk_obs=chunk)
    return path


def truth_statistics(flat, flat_error, true, fit) -> dict:
    """Per band, the normalized residuals z = (flat - true) / flat_error over the fitted wavelengths:
    ``bias`` (mean z), ``offset`` (rms over wavelengths of each wavelength's mean z over the
    detector) and ``chi2`` (mean z^2). Arrays (band, detector, wave, gy, gx); fit (band, detector, wave)."""
    stats = {}
    for i, band in enumerate(("GU", "GV", "GI")):
        z = (flat[i][fit[i]] - true[i][fit[i]]) / flat_error[i][fit[i]]  # (fitted wavelengths, gy, gx)
        stats[band] = {
            "bias": float(z.mean()),
            "offset": float(np.sqrt(np.mean(z.mean(axis=(1, 2)) ** 2))),
            "chi2": float(np.mean(z**2)),
            "n": int(fit[i].sum()),
        }
    return stats


def assert_recovers_the_truth(flat, flat_error, true, fit):
    """The flat equals the injected truth within its stated error, in every band: no bias (a shift
    by 0.25 sigma gives bias 0.25 or offset 0.25), and residuals as large as the errors say.
    Measured on 9 simulations (orders 1-3): |bias| <= 0.005, offset <= 0.08, chi2 0.98-1.13 per band."""
    stats = truth_statistics(flat, flat_error, true, fit)
    for band, s in stats.items():
        assert s["n"] > 0, (band, s)
        assert abs(s["bias"]) < 0.05 and s["offset"] < 0.15, (band, s)
        assert 0.85 < s["chi2"] < 1.2, (band, s)
    return stats


@pytest.mark.parametrize("order", [1, 2, 3])
def test_recovers_the_injected_flat_within_the_predicted_precision(client, stars, tmp_path, order):
    sed, obsid = stars
    obs, truth = simulate_observations(sed, obsid, n_exposures=2, seed=order, max_order=order)
    o = store_observations(tmp_path / "obs.zarr", obs, truth)
    p = write_predictions(tmp_path / "pred.zarr", sed, obsid)
    summary = build_flatcube(o, p, tmp_path / "cube.zarr", client=client, order=order, progress=False)
    cube = xr.open_zarr(tmp_path / "cube.zarr", consolidated=False).load()
    assert cube.attrs["schema"] == FLATCUBE_SCHEMA and cube.attrs["order"] == order
    assert list(cube.band.values) == list(truth.band.values) == ["GU", "GV", "GI"]
    # every wavelength inside the three bands is fitted on every detector
    assert summary["wavelengths_unfit_in_band"] == 0 and summary["wavelengths_fit"] > 2000
    flat, error, fit, true = cube.flat.values, cube.flat_error.values, cube.fit.values, truth.flat.values
    assert_recovers_the_truth(flat, error, true, fit)
    # the check has teeth: the same flat off by 25 % of its stated error fails it, whether the
    # shift is common (bias) or of random sign per wavelength (offset)
    sign = np.random.default_rng(0).choice([-1.0, 1.0], fit.shape)[..., None, None]
    for shifted in (flat + 0.25 * error, flat - 0.25 * error, flat + 0.25 * error * sign):
        with pytest.raises(AssertionError):
            assert_recovers_the_truth(shifted, error, true, fit)
    # the job's own truth report says the same: every band, deviation as predicted by the covariance
    assert [row["band"] for row in summary["truth"]] == ["GU", "GV", "GI"]
    for row in summary["truth"]:
        assert row["rms_deviation_median"] == pytest.approx(row["predicted_rms_median"], rel=0.15), row
    assert summary["observations_used"] == summary["observations_in"] == obs.sizes["obs"]
    # the normalized flat has mean 1 per wavelength (Legendre constant term = detector mean)
    assert np.nanmean(flat[fit]) == pytest.approx(1.0, abs=1e-3)


def test_tree_reduction_equals_one_direct_fit(client, stars, tmp_path):
    sed, obsid = stars
    obs, truth = simulate_observations(sed[:600], obsid[:600], n_exposures=2, seed=1)
    o = store_observations(tmp_path / "obs.zarr", obs, truth, chunk=333)  # many chunks, a ragged one
    p = write_predictions(tmp_path / "pred.zarr", sed[:600], obsid[:600])
    build_flatcube(o, p, tmp_path / "cube.zarr", client=client, order=2, iterations=1, progress=False)
    cube = xr.open_zarr(tmp_path / "cube.zarr", consolidated=False)
    pred = xr.open_zarr(p, consolidated=False)
    sel = (obs.band.values == "GV") & (obs.detector.values == 1)
    rows = np.searchsorted(pred.obsid.values, obs.obsid.values[sel])
    r, w = ratios(
        obs.flux.values[sel],
        obs.error.values[sel],
        scale=obs.scale.values[sel],
        sed=pred.sed.values[rows],
        sigma=pred.sigma.values[rows],
    )
    direct = solve(
        normal_equations(
            design_matrix(obs.x.values[sel], obs.y.values[sel], order=2, shape=DETECTOR_SHAPE), r, w
        ),
        min_obs=20,
    )
    got = cube.coeffs.sel(band="GV", detector=1).values
    np.testing.assert_allclose(got[direct.fit], direct.coeffs[direct.fit], rtol=1e-9, atol=1e-12)


def test_bad_input_is_counted_and_sparse_bands_are_unfit(client, stars, tmp_path):
    sed, obsid = stars
    obs, truth = simulate_observations(sed[:400], obsid[:400], n_exposures=2, seed=2)
    flux, x = obs.flux.values.copy(), obs.x.values.copy()
    flux[0] = np.nan  # no finite flux
    x[1] = 1e6  # off the detector
    gu = np.flatnonzero(obs.band.values == "GU")
    obs = obs.assign(flux=(("obs", "wave_out"), flux)).assign_coords(x=("obs", x))
    obs = obs.isel(obs=np.r_[np.setdiff1d(np.arange(obs.sizes["obs"]), gu[10:]),])  # GU: 10 observations only
    o = store_observations(tmp_path / "obs.zarr", obs, truth)
    flags = np.zeros(400, np.uint16)
    flags[5] = 8  # LOW_SNR: not a flux standard
    keep = np.arange(400) != 7  # star 7 has no prediction
    p = write_predictions(tmp_path / "pred.zarr", sed[:400][keep], obsid[:400][keep], flags=flags[keep])
    summary = build_flatcube(o, p, tmp_path / "cube.zarr", client=client, order=2, progress=False)
    n7 = int((obs.obsid.values == obsid[7]).sum())
    n5 = int((obs.obsid.values == obsid[5]).sum())
    assert summary["rejected"]["no_prediction"] == n7
    assert summary["rejected"]["flagged_prediction"] == n5
    assert summary["rejected"]["off_detector"] == 1 and summary["rejected"]["no_finite_flux"] == 1
    assert summary["observations_used"] == obs.sizes["obs"] - n7 - n5 - 2
    cube = xr.open_zarr(tmp_path / "cube.zarr", consolidated=False)
    assert not cube.fit.sel(band="GU").values.any()
    assert np.isnan(cube.coeffs.sel(band="GU").values).all()
    assert summary["wavelengths_unfit_in_band"] > 0


def test_resume_reuses_saved_chunks_and_gives_the_same_cube(client, stars, tmp_path):
    sed, obsid = stars
    obs, truth = simulate_observations(sed[:300], obsid[:300], n_exposures=2, seed=4)
    o = store_observations(tmp_path / "obs.zarr", obs, truth, chunk=500)
    p = write_predictions(tmp_path / "pred.zarr", sed[:300], obsid[:300])
    first = build_flatcube(o, p, tmp_path / "a.zarr", client=client, progress=False)
    # a run that "died" after its first pass: its saved chunks are reused by --resume
    out = tmp_path / "b.zarr"
    build_flatcube(o, p, out, client=client, iterations=1, progress=False)
    saved = sorted((out / ".work" / "iter-0").glob("*.npz"))
    stamps = [f.stat().st_mtime_ns for f in saved]
    second = build_flatcube(o, p, out, client=client, resume=True, progress=False)
    assert [f.stat().st_mtime_ns for f in saved] == stamps
    a, b = xr.open_zarr(tmp_path / "a.zarr", consolidated=False), xr.open_zarr(out, consolidated=False)
    np.testing.assert_array_equal(a.coeffs.values, b.coeffs.values)
    assert first["truth"] == second["truth"]
    with pytest.raises(InputError, match="already exists"):
        build_flatcube(o, p, out, client=client, progress=False)


def test_one_log_line_per_chunk(client, stars, tmp_path, caplog):
    import json
    import logging

    sed, obsid = stars
    obs, truth = simulate_observations(sed[:100], obsid[:100], n_exposures=1)
    o = store_observations(tmp_path / "obs.zarr", obs, truth, chunk=100)  # 3 chunks
    p = write_predictions(tmp_path / "pred.zarr", sed[:100], obsid[:100])
    with caplog.at_level(logging.INFO, logger="lamost2csst.jobs"):
        build_flatcube(o, p, tmp_path / "c.zarr", client=client, iterations=2, min_stars=5, progress=False)
    events = [json.loads(r.getMessage()) for r in caplog.records if r.name == "lamost2csst.jobs"]
    assert len(events) == 6 and {e["event"] for e in events} == {"chunk_done"}


def test_inputs_are_checked(client, tmp_path, stars):
    with pytest.raises(InputError, match="does not exist"):
        build_flatcube(tmp_path / "no.zarr", tmp_path / "no2.zarr", tmp_path / "c.zarr", client=client)
    sed, obsid = stars
    obs, truth = simulate_observations(sed[:50], obsid[:50], n_exposures=1)
    o = store_observations(tmp_path / "obs.zarr", obs, truth)
    with pytest.raises(InputError, match="predictions"):
        build_flatcube(o, o, tmp_path / "c.zarr", client=client)


def test_unfinished_predictions_are_refused(client, tmp_path, stars):
    """A catalogue job's output with a chunk not marked done (killed mid-run) is not read."""
    sed, obsid = stars
    obs, truth = simulate_observations(sed[:50], obsid[:50], n_exposures=1)
    o = store_observations(tmp_path / "obs.zarr", obs, truth)
    p = str(write_predictions(tmp_path / "pred.zarr", sed[:50], obsid[:50]))
    zarr.open_group(p, mode="r+").attrs["chunk_stars"] = 20  # 3 chunks: 0-20, 20-40, 40-50
    markers_group(p)
    for index in (0, 2):
        write_json(marker_path(p, index), {"index": index})
    with pytest.raises(InputError, match=r"unfinished: 1 chunk\(s\) not written \(first: 1\).*--resume"):
        build_flatcube(o, p, tmp_path / "c.zarr", client=client, progress=False)
    write_json(marker_path(p, 1), {"index": 1})
    build_flatcube(o, p, tmp_path / "c.zarr", client=client, progress=False, min_stars=5)


def test_self_calibration_without_known_scales_matches_the_known_scale_fit(client, stars, tmp_path):
    sed, obsid = stars
    obs, truth = simulate_observations(sed[:800], obsid[:800], n_exposures=3, seed=5, max_order=2)
    known = store_observations(tmp_path / "known.zarr", obs, truth)
    unknown = store_observations(
        tmp_path / "unknown.zarr", obs.assign_coords(scale=("obs", np.full(obs.sizes["obs"], np.nan))), truth
    )
    p = write_predictions(tmp_path / "pred.zarr", sed[:800], obsid[:800])
    a = build_flatcube(known, p, tmp_path / "a.zarr", client=client, progress=False)
    b = build_flatcube(
        unknown, p, tmp_path / "b.zarr", client=client, self_calibrate=True, iterations=10, progress=False
    )
    assert a["rejected"]["no_scale"] == 0 and b["rejected"]["no_scale"] == 0
    for known_row, self_row in zip(a["truth"], b["truth"]):
        assert self_row["rms_deviation_median"] < 2 * known_row["rms_deviation_median"], (known_row, self_row)
    cube = xr.open_zarr(tmp_path / "b.zarr", consolidated=False)
    true_scale = dict(zip(obs.obsid.values, obs.scale_true.values))
    ratio = cube.star_scale.values / np.array([true_scale[i] for i in cube.star_obsid.values])
    assert np.std(ratio / np.median(ratio)) < 0.005  # every star's scale, up to the global factor
    # without known scales and without self-calibration, nothing can be fitted: all counted
    c = build_flatcube(unknown, p, tmp_path / "c.zarr", client=client, iterations=1, progress=False)
    assert c["rejected"]["no_scale"] == obs.sizes["obs"] and c["wavelengths_fit"] == 0


def test_predictions_read_per_task_or_once_per_worker_give_the_same_cube(
    client, stars, tmp_path, monkeypatch
):
    """Predictions too large for the workers' copy are read row by row in each task (the
    prediction_rows path): the cube is the same, bit for bit, with self-calibration too."""
    import lamost2csst.parallel.flatcube as module

    sed, obsid = stars
    obs, truth = simulate_observations(sed[:400], obsid[:400], n_exposures=2, seed=6)
    o = store_observations(tmp_path / "obs.zarr", obs, truth, chunk=700)
    p = write_predictions(tmp_path / "pred.zarr", sed[:500], obsid[:500])  # 100 stars never observed
    kw = dict(client=client, iterations=2, self_calibrate=True, progress=False)
    build_flatcube(o, p, tmp_path / "once.zarr", **kw)
    monkeypatch.setattr(module, "PREDICTIONS_CACHE_BYTES", 0)
    build_flatcube(o, p, tmp_path / "rows.zarr", **kw)
    a, b = (xr.open_zarr(tmp_path / f"{n}.zarr", consolidated=False) for n in ("once", "rows"))
    assert a.fit.values.any()
    for name in ("coeffs", "covariance", "n_obs", "star_scale"):
        np.testing.assert_array_equal(a[name].values, b[name].values)
