"""The predict_catalogue Dask job: equals the numpy path, every star once, flags, truth, resume."""

import json
import shutil

import numpy as np
import pytest
import xarray as xr
import zarr

import lamost2csst
from lamost2csst.core import BANDS, OUTPUT_WAVE, band_pixels, prepare_inputs
from lamost2csst.core.discrepancy import ModelDiscrepancy
from lamost2csst.core.flags import Flag, FlagThresholds, sanitize_pixels
from lamost2csst.errors import InputError
from lamost2csst.io import write_spectra
from lamost2csst.io.simulated import grid_catalogue
from lamost2csst.io.spectra import round_pixels
from lamost2csst.nn.inference import default_model_path, load_model, model_card, model_discrepancy
from lamost2csst.parallel.predict import PREDICTIONS_SCHEMA, predict_block, predict_catalogue

N_STAR, CHUNK = 600, 128  # 5 chunks, the last one ragged (88 stars)


@pytest.fixture(scope="module")
def demo():
    return grid_catalogue(N_STAR, seed=5)


@pytest.fixture(scope="module")
def catalogue(demo, tmp_path_factory):
    path = tmp_path_factory.mktemp("cat") / "catalogue.zarr"
    write_spectra(demo, path, chunk_stars=CHUNK)
    return path


@pytest.fixture(scope="module")
def by_hand(demo):
    """The documented steps written out with the public functions, on the whole catalogue."""
    from lamost2csst.core.inputs import treat_trouble_spots

    stored = round_pixels(demo)  # the catalogue's pixels as written (within 1e-5 of sigma)
    flux, ivar, mask, _ = sanitize_pixels(stored.flux.values, stored.ivar.values, stored.mask.values)
    ivar, mask = treat_trouble_spots(demo.wave.values, ivar, mask, mode="mask")  # the job's default
    z = demo.z.values
    has_z = np.isfinite(z)
    net = prepare_inputs(demo.wave.values, flux[has_z], ivar=ivar[has_z], z=z[has_z], mask=mask[has_z])
    parts = {name: np.full((N_STAR, OUTPUT_WAVE.size), np.nan, np.float32) for name in PARTS}
    # the catalogue is simulated from the grid (spectra_kind "synthetic"): the job asks for that SED
    got = lamost2csst.predict(net.flux, net.error, mask=net.mask, return_parts=True, domain="synthetic")
    for name in PARTS:
        parts[name][has_z] = getattr(got, name)
    return parts


PARTS = ("sed", "sigma", "sigma_net", "sigma_sys")


OPENED = []  # the stores xarray opened during the `finished` run


@pytest.fixture(scope="module")
def finished(client, catalogue, tmp_path_factory):
    out = tmp_path_factory.mktemp("out") / "predictions.zarr"
    real = xr.open_zarr

    def counting(store, *args, **kwargs):
        OPENED.append(str(store))
        return real(store, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(xr, "open_zarr", counting)
        summary = predict_catalogue(catalogue, out, client=client, progress=False)
    return out, summary


def test_the_catalogue_is_opened_once_per_run(finished, catalogue):
    """One xarray open of the input per job: the tasks read their rows with plain Zarr."""
    assert OPENED.count(str(catalogue)) == 1


def test_job_equals_the_hand_made_pipeline(finished, by_hand, demo):
    out, summary = finished
    ds = xr.open_zarr(out, consolidated=False)
    # batches differ between the job (per chunk) and the hand run: float32 round-off only
    for name in PARTS:
        np.testing.assert_allclose(ds[name].values, by_hand[name], rtol=2e-5, atol=1e-7, equal_nan=True)
    np.testing.assert_array_equal(np.isnan(ds.sed.values).all(axis=1), np.isnan(demo.z.values))
    # the shipped model's discrepancy (its card's), by the formula: a and b of each star's colour class
    from lamost2csst.core.discrepancy import sed_color

    d = model_discrepancy()
    net = ds.sigma_net.values.astype(np.float64)
    a, b = d.scale, d.floor
    if d.color_edges:
        cls = np.searchsorted(d.color_edges, np.nan_to_num(sed_color(ds.sed.values)), side="right")
        a, b = a[cls], b[cls]
    np.testing.assert_allclose(ds.sigma.values, np.sqrt((a * net) ** 2 + b**2), rtol=1e-6)
    np.testing.assert_allclose(ds.sigma.values, np.hypot(net, ds.sigma_sys.values), rtol=1e-6)


def test_every_star_once_in_order_with_its_coordinates(finished, demo):
    out, summary = finished
    ds = xr.open_zarr(out, consolidated=False)
    assert ds.attrs["schema"] == PREDICTIONS_SCHEMA
    assert ds.sizes == {"star": N_STAR, "wave_out": OUTPUT_WAVE.size}
    assert (ds.sed.dtype, ds.sigma.dtype, ds.flags.dtype) == (np.float32, np.float32, np.uint16)
    assert ds.sigma_net.dtype == ds.sigma_sys.dtype == np.float32
    assert ds.attrs["sigma_sys"]["provenance"] == model_discrepancy().provenance
    for name in ("obsid", "ra", "dec", "z", "teff", "snr_g", "grid_model"):
        np.testing.assert_array_equal(ds[name].values, demo[name].values)
    assert "sed_true" not in ds
    assert (
        ds.attrs["model_hash"]
        == summary["model_hash"]
        == lamost2csst.nn.inference.model_hash(default_model_path())
    )
    assert summary["stars_in"] == summary["stars_written"] == N_STAR
    assert (summary["chunks_total"], summary["chunks_done"]) == (5, 5)


def test_task_times_add_up_and_the_summary_sums_the_markers(finished):
    import json

    from lamost2csst.parallel.chunks import marker_path

    out, summary = finished
    markers = [json.loads(open(marker_path(str(out), i)).read()) for i in range(5)]
    for m in markers:
        parts = [m[f"seconds_{p}"] for p in ("read", "prepare", "network", "domain", "write")]
        assert min(parts) >= 0
        inner = m["seconds_prepare"] + m["seconds_network"] + m["seconds_domain"]
        assert inner <= m["seconds_compute"] + 1e-3
        assert m["seconds_read"] + m["seconds_compute"] + m["seconds_write"] <= m["seconds"] + 1e-3
        assert m["seconds_network"] > 0  # every chunk of the demo has stars to predict
    for part in ("read", "compute", "prepare", "network", "domain", "write"):
        assert summary[f"task_seconds_{part}"] == pytest.approx(
            sum(m[f"seconds_{part}"] for m in markers), abs=2e-3
        )


def test_flags_match_their_conditions_and_the_summary(finished, demo):
    out, summary = finished
    ds = xr.open_zarr(out, consolidated=False)
    flags = ds.flags.values
    no_z = np.isnan(demo.z.values)
    assert no_z.any()
    np.testing.assert_array_equal((flags & Flag.NO_DATA) != 0, no_z)
    assert ((flags[no_z] & Flag.BAD_Z) != 0).all()
    _, _, _, nonfinite = sanitize_pixels(demo.flux.values, demo.ivar.values, demo.mask.values)
    np.testing.assert_array_equal((flags & Flag.NONFINITE_INPUT) != 0, nonfinite)
    low = (flags & Flag.LOW_SNR) != 0
    assert low.any()
    assert np.all(demo.snr_g.values[low & ~no_z] < 10.5) and np.all(demo.snr_g.values[~low & ~no_z] > 9.5)
    assert summary["ok"] == int((flags == 0).sum())
    assert summary["flagged"] == N_STAR - summary["ok"]
    for f in Flag:
        assert summary["flag_counts"][f.name] == int(((flags & f) != 0).sum())
    assert ds.attrs["flag_thresholds"] == FlagThresholds().as_dict()


def test_with_a_catalogue_teff_the_flag_follows_it_and_the_estimate_is_stored(finished, demo):
    """The demo has a teff column: OUTSIDE_DOMAIN as before; the spectrum's estimate agrees with it."""
    out, _ = finished
    ds = xr.open_zarr(out, consolidated=False)
    teff = demo.teff.values
    outside = (ds.flags.values & Flag.OUTSIDE_DOMAIN) != 0
    np.testing.assert_array_equal(outside, (teff < 5000) | (teff > 9750))
    est = ds.teff_estimate.values
    no_data = (ds.flags.values & Flag.NO_DATA) != 0
    assert np.isnan(est[no_data]).all() and np.isnan(ds.domain_chi2.values[no_data]).all()
    good = (ds.flags.values & (Flag.NO_DATA | Flag.MASKED_PIXELS)) == 0
    assert np.isfinite(est[good]).all() and (ds.teff_estimate_error.values[good] > 0).all()
    bright = good & (demo.snr_g.values > 30)
    assert np.median(np.abs(np.log(est[bright] / teff[bright]))) < 0.02
    assert ds.attrs["domain_templates"]["grid_models_from"] == "model card split['train']"


def test_without_a_catalogue_teff_the_spectrum_decides(demo):
    """Out-of-domain synthetic stars are flagged from their spectra; a finite catalogue teff still decides."""
    from lamost2csst.core import LAMOST_WAVE
    from lamost2csst.core.simulate import observe_spectra
    from lamost2csst.io.domain import load_domain_test_set
    from lamost2csst.parallel.predict_tasks import domain_templates_for
    from lamost2csst.workflows.evaluation import split_models

    outside = load_domain_test_set()
    outside = outside.isel(model=np.flatnonzero(np.isin(outside.teff.values, [4000.0, 15000.0])))
    test, _ = split_models(model_card(default_model_path()))
    inside = test.isel(model=np.flatnonzero(np.isin(test.teff.values, [6000.0, 8000.0]))[:6])
    clean = np.vstack([outside.flux_lamost.values, inside.flux_lamost.values])
    n_out, n = outside.sizes["model"], clean.shape[0]
    rng = np.random.default_rng(8)
    flux, ivar, mask = observe_spectra(
        clean, wave=LAMOST_WAVE, z=np.zeros(n), snr=np.full(n, 50.0), scale=np.ones(n), rng=rng
    )
    kwargs = {"model": load_model(), "domain": domain_templates_for(str(default_model_path()))}
    args = (LAMOST_WAVE, flux, ivar, mask, np.zeros(n))
    expected = np.arange(n) < n_out
    for teff in (None, np.full(n, np.nan)):
        res = predict_block(*args, teff=teff, **kwargs)
        np.testing.assert_array_equal((res["flags"] & Flag.OUTSIDE_DOMAIN) != 0, expected)
    res = predict_block(*args, teff=np.full(n, 6000.0), **kwargs)  # the catalogue's teff wins
    assert not (res["flags"] & Flag.OUTSIDE_DOMAIN).any()
    res = predict_block(*args, teff=np.full(n, 3000.0), **kwargs)
    assert ((res["flags"] & Flag.OUTSIDE_DOMAIN) != 0).all()
    np.testing.assert_array_equal(np.isfinite(res["teff_estimate"]), np.ones(n, bool))


def test_truth_summary_equals_a_direct_computation(finished, demo):
    out, summary = finished
    ds = xr.open_zarr(out, consolidated=False)
    ok = ds.flags.values == 0
    r = ds.sed.values[ok].astype(np.float64) / demo.sed_true.values[ok] - 1.0
    std = np.std(r, axis=0, ddof=1)
    row = next(r for r in summary["truth"] if r["snr"] == "all ok")
    assert row["n_star"] == ok.sum()
    for band, lo_hi in BANDS.items():
        sel = band_pixels(OUTPUT_WAVE, lo_hi)
        assert row[f"error_{band}"] == pytest.approx(np.median(std[sel]), abs=1e-5)
        assert row[f"offset_{band}"] == pytest.approx(np.median(r.mean(axis=0)[sel]), abs=1e-5)
    assert xr.open_zarr(out, consolidated=False).attrs["summary"] == summary


def test_heldout_truth_covers_only_models_outside_the_training_split(finished, demo):
    out, summary = finished
    train = {tuple(np.round(r, 3)) for r in model_card()["split"]["train"]}
    params = np.round(np.stack([demo[p].values for p in ("teff", "logg", "feh", "alpha")], axis=1), 3)
    held = np.array([tuple(p) not in train for p in params])
    assert 0 < held.sum() < N_STAR  # the demo draws training and test models of the network
    ds = xr.open_zarr(out, consolidated=False)
    ok = (ds.flags.values == 0) & held
    r = ds.sed.values[ok].astype(np.float64) / demo.sed_true.values[ok] - 1.0
    row = next(r for r in summary["truth_heldout"] if r["snr"] == "all ok")
    assert row["n_star"] == ok.sum()
    sel = band_pixels(OUTPUT_WAVE, BANDS["GV"])
    assert row["error_GV"] == pytest.approx(np.median(np.std(r, axis=0, ddof=1)[sel]), abs=1e-5)


def _chunk_files(out):
    root = out / "sed" / "c"
    return {p: p.stat().st_mtime_ns for p in sorted(root.rglob("*")) if p.is_file()}


def test_resume_recomputes_only_the_chunk_without_marker(client, catalogue, finished, tmp_path):
    reference, _ = finished
    out = tmp_path / "p.zarr"
    shutil.copytree(reference, out)
    (out / ".markers" / "chunk-2.done").unlink()
    zarr.open_array(out / "sed", mode="r+")[2 * CHUNK : 3 * CHUNK] = 0.0
    before = _chunk_files(out)
    summary = predict_catalogue(catalogue, out, client=client, resume=True, progress=False)
    assert (summary["chunks_done"], summary["chunks_skipped"], summary["stars_written"]) == (1, 4, CHUNK)
    after = _chunk_files(out)
    assert [p.relative_to(out).as_posix() for p in after if after[p] != before[p]] == ["sed/c/2/0"]
    a, b = xr.open_zarr(out, consolidated=False), xr.open_zarr(reference, consolidated=False)
    for name in (*PARTS, "flags"):
        np.testing.assert_array_equal(a[name].values, b[name].values)


def test_resume_refuses_another_model_and_existing_output_needs_resume(client, catalogue, finished, tmp_path):
    reference, _ = finished
    out = tmp_path / "p.zarr"
    shutil.copytree(reference, out)
    other = tmp_path / "other.keras"
    other.write_bytes(default_model_path().read_bytes() + b"\0")
    with pytest.raises(InputError, match="cannot resume.*model"):
        predict_catalogue(catalogue, out, client=client, model=other, resume=True, progress=False)
    with pytest.raises(InputError, match="already exists"):
        predict_catalogue(catalogue, out, client=client, progress=False)
    with pytest.raises(InputError, match="cannot resume.*thresholds"):
        predict_catalogue(
            catalogue, out, client=client, resume=True, progress=False, thresholds=FlagThresholds(min_snr=5.0)
        )
    # an output whose chunks were made with another resampling onto INPUT_WAVE is not continued
    assert zarr.open_group(out, mode="r").attrs["input_resampling"] == "cubic"
    zarr.open_group(out, mode="r+").attrs["input_resampling"] = "flux"
    with pytest.raises(InputError, match="cannot resume.*input_resampling"):
        predict_catalogue(catalogue, out, client=client, resume=True, progress=False)


def _model_with_discrepancy(tmp_path, discrepancy):
    """A copy of the shipped model (same bytes, same hash) whose card carries ``discrepancy``."""
    path = tmp_path / "with_sigma_sys.keras"
    shutil.copy(default_model_path(), path)
    card = {**model_card(), "sigma_sys": discrepancy.to_dict()}
    path.with_suffix(".json").write_text(json.dumps(card))
    return path


def _discrepancy(a=2.0, b=0.01):
    n = OUTPUT_WAVE.size
    return ModelDiscrepancy(np.full(n, a), np.full(n, b), np.ones(n, bool), {"kind": "test", "a": a, "b": b})


def test_the_cards_discrepancy_gives_sigma_sys_and_leaves_sed_and_flags(
    client, catalogue, finished, tmp_path
):
    """A card with a discrepancy: sigma = sqrt((a s)^2 + b^2) of the network's s; sed, flags as before."""
    reference, _ = finished
    model = _model_with_discrepancy(tmp_path, _discrepancy(2.0, 0.01))
    out = tmp_path / "p.zarr"
    summary = predict_catalogue(catalogue, out, client=client, model=model, progress=False)
    a, b = xr.open_zarr(out, consolidated=False), xr.open_zarr(reference, consolidated=False)
    np.testing.assert_array_equal(a.sed.values, b.sed.values)
    np.testing.assert_array_equal(a.sigma_net.values, b.sigma_net.values)
    np.testing.assert_array_equal(a.flags.values, b.flags.values)  # UNCERTAIN is set on sigma_net
    s = a.sigma_net.values.astype(np.float64)
    np.testing.assert_allclose(a.sigma.values, np.sqrt((2 * s) ** 2 + 0.01**2), rtol=1e-6)
    np.testing.assert_allclose(a.sigma_sys.values, np.sqrt(3 * s**2 + 0.01**2), rtol=1e-6)
    assert a.attrs["sigma_sys"]["provenance"] == {"kind": "test", "a": 2.0, "b": 0.01}
    assert a.attrs["sigma_sys_sha256"] != b.attrs["sigma_sys_sha256"]
    assert summary["model_hash"] == b.attrs["model_hash"]  # same network file
    # the same network file with another discrepancy does not continue this output
    with pytest.raises(InputError, match="cannot resume.*sigma_sys_sha256"):
        predict_catalogue(catalogue, out, client=client, resume=True, progress=False)
    bad = tmp_path / "bad.keras"
    shutil.copy(model, bad)
    bad.with_suffix(".json").write_text(json.dumps({"sigma_sys": {"scale": [0.5] * OUTPUT_WAVE.size}}))
    with pytest.raises(InputError, match="bad.json: malformed 'sigma_sys'"):
        predict_catalogue(catalogue, tmp_path / "q.zarr", client=client, model=bad, progress=False)


def _version_1_store(path, demo):
    """A store as lamost2csst wrote it before schema 2: sed, sigma (the network's), flags."""
    n = demo.sizes["star"]
    xr.Dataset(
        {
            "sed": (("star", "wave_out"), np.ones((n, OUTPUT_WAVE.size), np.float32)),
            "sigma": (("star", "wave_out"), np.full((n, OUTPUT_WAVE.size), 0.01, np.float32)),
            "flags": (("star",), np.zeros(n, np.uint16)),
        },
        coords={"obsid": ("star", demo.obsid.values), "wave_out": ("wave_out", OUTPUT_WAVE)},
        attrs={"schema": "lamost2csst.predictions/1", "model_hash": "x"},
    ).chunk({"star": CHUNK}).to_zarr(path, zarr_format=3, consolidated=False)


def test_resume_into_a_version_1_store_is_refused_and_overwrite_replaces_it(
    client, catalogue, demo, tmp_path
):
    out = tmp_path / "old.zarr"
    _version_1_store(out, demo)
    with pytest.raises(
        InputError,
        match=r"(?s)lamost2csst.predictions/1.*lamost2csst.predictions/3.*new store.*without --resume",
    ):
        predict_catalogue(catalogue, out, client=client, resume=True, progress=False)
    assert xr.open_zarr(out, consolidated=False).attrs["schema"] == "lamost2csst.predictions/1"  # untouched
    with pytest.raises(InputError, match="already exists"):
        predict_catalogue(catalogue, out, client=client, progress=False)
    summary = predict_catalogue(catalogue, out, client=client, overwrite=True, progress=False)
    assert summary["stars_written"] == N_STAR
    assert xr.open_zarr(out, consolidated=False).attrs["schema"] == PREDICTIONS_SCHEMA


def test_flags_use_the_networks_sigma_not_the_total(demo):
    """A discrepancy that puts every total sigma above max_sigma flags nothing more."""
    sl = slice(0, 60)
    args = (demo.wave.values, demo.flux.values[sl], demo.ivar.values[sl], demo.mask.values[sl])
    z = demo.z.values[sl]
    assert np.isnan(z).any()  # NO_DATA rows: NaN in all three sigmas
    model = load_model(default_model_path())
    plain = predict_block(*args, z, model=model, discrepancy=ModelDiscrepancy.none())
    big = predict_block(*args, z, model=model, discrepancy=_discrepancy(1.0, 0.5))
    ok = np.isfinite(big["sigma"]).all(axis=1)
    assert ok.sum() > 40 and np.all(big["sigma"][ok] > FlagThresholds().max_sigma)
    np.testing.assert_array_equal(big["flags"], plain["flags"])
    np.testing.assert_array_equal(big["sigma_net"], plain["sigma"])
    np.testing.assert_array_equal(big["sed"], plain["sed"])
    for name in PARTS:
        np.testing.assert_array_equal(np.isnan(big[name]).all(axis=1), ~ok)
    np.testing.assert_array_equal(plain["sigma_sys"][ok], 0.0)


def test_bad_inputs_raise_job_input_error(client, catalogue, tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        predict_catalogue(tmp_path / "nope.zarr", tmp_path / "o.zarr", client=client)
    with pytest.raises(InputError, match="model file"):
        predict_catalogue(catalogue, tmp_path / "o.zarr", client=client, model=tmp_path / "m.h5")
    with pytest.raises(InputError, match="batch_size"):
        predict_catalogue(catalogue, tmp_path / "o.zarr", client=client, batch_size=0)
    assert not (tmp_path / "o.zarr").exists()


def test_predict_block_on_rest_frame_input_ignores_z(demo):
    sl = slice(0, 40)
    wave = demo.wave.values
    flux, ivar, mask = demo.flux.values[sl], demo.ivar.values[sl], demo.mask.values[sl]
    z = np.nan_to_num(demo.z.values[sl], nan=0.0)
    a = predict_block(wave, flux, ivar, mask, z, model=default_model_path(), observed=False)
    # rest-frame spectra have no observed-frame trouble spots: they are never masked
    b = predict_block(wave, flux, ivar, mask, np.zeros_like(z), model=default_model_path(), trouble="keep")
    np.testing.assert_array_equal(a["sed"], b["sed"])
    np.testing.assert_array_equal(a["flags"], b["flags"])


def _gpu_available():
    try:
        import dask_cuda  # noqa: F401
        import tensorflow as tf
    except ImportError:
        return False
    return bool(tf.config.list_physical_devices("GPU"))


@pytest.mark.skipif(not _gpu_available(), reason="needs an NVIDIA GPU, TensorFlow with CUDA and dask-cuda")
def test_gpu_cluster_gives_the_cpu_result(catalogue, finished, tmp_path):
    from lamost2csst.parallel.runtime import dask_client

    reference, _ = finished
    with dask_client(gpus=True) as gpu_client:
        predict_catalogue(catalogue, tmp_path / "gpu.zarr", client=gpu_client, progress=False)
    a, b = (
        xr.open_zarr(tmp_path / "gpu.zarr", consolidated=False),
        xr.open_zarr(reference, consolidated=False),
    )
    np.testing.assert_allclose(a.sed.values, b.sed.values, rtol=1e-3, equal_nan=True)
    np.testing.assert_array_equal(a.flags.values, b.flags.values)


def test_one_log_line_per_chunk(client, catalogue, tmp_path, caplog):
    import json
    import logging

    with caplog.at_level(logging.INFO, logger="lamost2csst.jobs"):
        predict_catalogue(catalogue, tmp_path / "p.zarr", client=client, progress=False)
    events = [json.loads(r.getMessage()) for r in caplog.records if r.name == "lamost2csst.jobs"]
    assert sorted(e["index"] for e in events) == list(range(5))
    assert {e["event"] for e in events} == {"chunk_done"} and sum(e["stars"] for e in events) == N_STAR


def test_worker_setup_compiles_the_forward_pass_the_tasks_then_reuse(tmp_path):
    """TensorFlowSetup(warm_batch=B) traces the network once.

    Predictions in batches of B then trace nothing more.
    """
    from lamost2csst.nn.inference import N_INPUT, _compiled_forward, load_model
    from lamost2csst.parallel.predict import TensorFlowSetup

    path = tmp_path / "copy.keras"  # a path of its own: a model object (and compiled forward) of its own
    shutil.copy(default_model_path(), path)
    TensorFlowSetup(str(path), warm_batch=8).setup(worker=None)
    traced = _compiled_forward(load_model(str(path))).compiled
    assert traced.experimental_get_tracing_count() == 1
    rng = np.random.default_rng(0)
    flux = 1 + 0.01 * rng.standard_normal((24, N_INPUT)).astype(np.float32)
    lamost2csst.predict(flux, np.full_like(flux, 0.01), model=load_model(str(path)), batch_size=8)
    assert traced.experimental_get_tracing_count() == 1


def test_worker_setup_under_jax_leaves_nothing_to_compile_for_full_batches(tmp_path):
    import os
    import subprocess
    import sys

    pytest.importorskip("jax")
    code = (
        "import numpy as np; from lamost2csst.nn.inference import N_INPUT, _compiled_forward, load_model, "
        "predict, default_model_path; from lamost2csst.parallel.predict import TensorFlowSetup; "
        "TensorFlowSetup(default_model_path(), warm_batch=100).setup(worker=None); "
        "f = _compiled_forward(load_model(default_model_path())).compiled; assert f._cache_size() == 1; "
        "x = np.ones((300, N_INPUT), np.float32); predict(x, 0.01 * x, batch_size=100); "
        # a survey's last, short chunk: its ragged last batch is padded to the same shape
        "predict(x[:130], 0.01 * x[:130], batch_size=100); "
        "assert f._cache_size() == 1, f._cache_size()"
    )
    subprocess.run(
        [sys.executable, "-c", code], env={**os.environ, "KERAS_BACKEND": "jax"}, check=True, timeout=300
    )


def test_trouble_spots_are_treated_in_the_observed_frame_before_the_shift(demo):
    """Default "mask": treat_trouble_spots on the observed pixels, then the usual steps; "keep": without."""
    from lamost2csst.core.inputs import treat_trouble_spots

    rows = np.flatnonzero(np.isfinite(demo.z.values))[:40]
    wave, z = demo.wave.values, demo.z.values[rows]
    flux, ivar, mask = (demo[name].values[rows] for name in ("flux", "ivar", "mask"))
    model = load_model(default_model_path())
    default = predict_block(wave, flux, ivar, mask, z, model=model)
    masked = predict_block(wave, flux, ivar, mask, z, model=model, trouble="mask")
    keep = predict_block(wave, flux, ivar, mask, z, model=model, trouble="keep")
    for name in (*PARTS, "flags", "input_masked_fraction"):
        np.testing.assert_array_equal(default[name], masked[name])
    f, iv, m, _ = sanitize_pixels(flux, ivar, mask)
    for got, treat in ((masked, True), (keep, False)):
        iv_t, m_t = treat_trouble_spots(wave, iv, m, mode="mask") if treat else (iv, m)
        net = prepare_inputs(wave, f, ivar=iv_t, z=z, mask=m_t)
        by_hand = lamost2csst.predict(net.flux, net.error, mask=net.mask, model=model)
        np.testing.assert_allclose(got["sed"], by_hand[0], rtol=2e-5, atol=1e-7)
        np.testing.assert_allclose(got["input_masked_fraction"], net.mask.mean(axis=1), rtol=1e-6)
    gain = masked["input_masked_fraction"] - keep["input_masked_fraction"]
    assert np.all(gain >= 0) and np.median(gain) > 0.06  # ~7 % of INPUT_WAVE (less where already masked)
    rest = predict_block(wave, flux, ivar, mask, z, model=model, observed=False)
    rest_keep = predict_block(wave, flux, ivar, mask, z, model=model, observed=False, trouble="keep")
    np.testing.assert_array_equal(rest["sed"], rest_keep["sed"])  # no observed frame: nothing treated


def test_lamost_trouble_is_recorded_and_must_match_on_resume(client, demo, tmp_path):
    small = tmp_path / "small.zarr"
    write_spectra(demo.isel(star=slice(0, 40)), small, chunk_stars=40)
    out = tmp_path / "p.zarr"
    predict_catalogue(small, out, client=client, progress=False)
    assert zarr.open_group(out, mode="r").attrs["input_trouble"] == "mask"  # the default
    with pytest.raises(InputError, match="cannot resume.*input_trouble"):
        predict_catalogue(small, out, client=client, resume=True, progress=False, lamost_trouble="keep")
    summary = predict_catalogue(small, out, client=client, resume=True, progress=False)
    assert summary["chunks_skipped"] == 1
    keep = tmp_path / "keep.zarr"
    predict_catalogue(small, keep, client=client, progress=False, lamost_trouble="keep")
    assert "input_trouble" not in zarr.open_group(keep, mode="r").attrs  # as stores made before the option
    with pytest.raises(InputError, match="lamost_trouble must be one of"):
        predict_catalogue(small, tmp_path / "q.zarr", client=client, lamost_trouble="drop")
    assert not (tmp_path / "q.zarr").exists()


def _model_with_real_branch(tmp_path, shift=0.1):
    """The shipped network with a real-star branch whose correction is +``shift`` in ln(SED) everywhere."""
    from lamost2csst.nn.inference import save_model
    from lamost2csst.nn.model import ModelConfig, add_domain_input, grid_network

    card = model_card()
    config = ModelConfig.from_dict({**card["model_config"], "domain_input": False})
    model = add_domain_input(grid_network(load_model(), config), config)  # the shipped grid network
    kernel, bias = model.get_layer("fc_real_2").get_weights()
    model.get_layer("fc_real_2").set_weights([kernel, np.full_like(bias, shift)])
    config = {**card["model_config"], "domain_input": True}
    return save_model(model, tmp_path / "branch.keras", card={**card, "model_config": config})


def _grid_network_file(tmp_path):
    """The shipped model's grid network alone (no real-star branch), with its card."""
    from lamost2csst.nn.inference import save_model
    from lamost2csst.nn.model import ModelConfig, grid_network

    card = model_card()
    config = {**card["model_config"], "domain_input": False}
    model = grid_network(load_model(), ModelConfig.from_dict(config))
    return save_model(model, tmp_path / "grid.keras", card={**card, "model_config": config})


def test_spectra_kind_chooses_the_synthetic_or_the_real_sed_and_must_match_on_resume(
    client, demo, finished, tmp_path
):
    small = tmp_path / "small.zarr"
    write_spectra(demo.isel(star=slice(0, 40)), small, chunk_stars=40)  # simulated: spectra_kind synthetic
    model = _model_with_real_branch(tmp_path)
    reference = xr.open_zarr(finished[0], consolidated=False).isel(star=slice(0, 40))
    auto = tmp_path / "auto.zarr"
    predict_catalogue(small, auto, client=client, model=model, progress=False)
    synthetic = xr.open_zarr(auto, consolidated=False)
    assert synthetic.attrs["input_spectra"] == "synthetic"
    # the grid-trained SED (to float32 rounding: the reference ran in batches of another size)
    np.testing.assert_allclose(synthetic.sed.values, reference.sed.values, rtol=1e-5)
    real_out = tmp_path / "real.zarr"
    predict_catalogue(small, real_out, client=client, model=model, progress=False, spectra="real")
    real = xr.open_zarr(real_out, consolidated=False)
    assert real.attrs["input_spectra"] == "real"
    ok = np.isfinite(reference.sed.values)
    np.testing.assert_allclose(real.sed.values[ok] / reference.sed.values[ok], np.exp(0.1), rtol=1e-5)
    np.testing.assert_allclose(real.sigma_net.values, reference.sigma_net.values, rtol=1e-5)
    with pytest.raises(InputError, match="cannot resume.*input_spectra"):
        predict_catalogue(small, real_out, client=client, model=model, resume=True, progress=False)
    assert (
        xr.open_zarr(finished[0], consolidated=False).attrs["input_spectra"] == "synthetic"
    )  # shipped: auto
    odd = tmp_path / "odd.zarr"
    write_spectra(demo.isel(star=slice(0, 40)).assign_attrs(spectra_kind="simulated"), odd, chunk_stars=40)
    with pytest.raises(InputError, match="spectra_kind attr is 'simulated'"):
        predict_catalogue(odd, tmp_path / "q.zarr", client=client, model=model, progress=False)
    with pytest.raises(InputError, match="spectra must be one of"):
        predict_catalogue(small, tmp_path / "q.zarr", client=client, model=model, spectra="grid")


REAL_FILES = {  # LAMOST's own SUBCLASS and the Teff of that type on the main sequence (an outside check)
    "spec-57287-KP193637N444141V03_sp10-161.fits.gz": ("F5", 6500.0),
    "spec-58397-EG014118N254444M01_sp03-031.fits.gz": ("G3", 5800.0),
}
REAL_DIR = __import__("pathlib").Path(__file__).resolve().parents[2].parent / "shared" / "data" / "lamost"


@pytest.mark.skipif(not REAL_DIR.exists(), reason=f"{REAL_DIR} (the real LAMOST files) not present")
def test_the_real_lamost_files_stay_in_the_domain():
    from lamost2csst.io import read_lamost
    from lamost2csst.parallel.predict_tasks import domain_templates_for

    kwargs = {"model": load_model(), "domain": domain_templates_for(str(default_model_path()))}
    for name, (subclass, teff) in REAL_FILES.items():
        ds = read_lamost(REAL_DIR / name)
        assert ds.subclass.item() == subclass
        res = predict_block(
            ds.wave.values, ds.flux.values, ds.ivar.values, ds.mask.values, ds.z.values, **kwargs
        )
        assert not res["flags"][0] & Flag.OUTSIDE_DOMAIN, (name, res["teff_estimate"], res["domain_chi2"])
        assert abs(res["teff_estimate"][0] - teff) < 500.0, (name, res["teff_estimate"][0])
