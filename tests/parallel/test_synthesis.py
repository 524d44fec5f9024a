"""parallel.synthesis.synthesize_grid: one task per model, markers, resume (Synspec faked)."""

import json
import os
import types
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from lamost2csst.errors import InputError

KURUCZ_FIXTURE = Path(__file__).resolve().parent.parent / "data" / "synth" / "kurucz"
ZERO = ("list", [0.0])
TWO = {"teff": ("list", [5000.0, 5250.0]), "logg": ("list", [4.5]), "feh": ZERO, "alpha": ZERO}


@pytest.fixture(scope="module", autouse=True)
def kurucz_fixture():
    """The committed Castelli-Kurucz fixture (whole index, five model blocks; tests/data/synth)."""
    from lamost2csst.synth.atmospheres import grid

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LAMOST2CSST_KURUCZ_DIR", str(KURUCZ_FIXTURE))
        grid.cache_clear()
        yield
    grid.cache_clear()


def fake_spectrum(teff):
    wave = np.exp(np.linspace(np.log(2401.0), np.log(10702.0), 200_000))
    lam = wave * 1e-8
    return wave, 1 / lam**5 / np.expm1(1.4388 / (lam * teff))


@pytest.fixture()
def fake(monkeypatch):
    """Synspec replaced by a blackbody (4 s at 5000 K, 6 s at 5250 K); no build, no line lists."""
    import lamost2csst.parallel.synthesis as synthesis
    import lamost2csst.synth.build as build
    import lamost2csst.synth.linelists as linelists
    import lamost2csst.synth.synspec as synspec

    state = {"calls": [], "fail": set()}

    def run_synspec(model, *, step, nfreqs=None, workdir=None):
        state["calls"].append((model.teff, model.logg, model.feh, model.alpha, step, nfreqs))
        if model.teff in state["fail"]:
            raise synspec.SynthesisError("no convergence (fake)")
        wave, flux = fake_spectrum(model.teff)
        return types.SimpleNamespace(wave=wave, flux=flux, seconds={5000.0: 4.0, 5250.0: 6.0}[model.teff])

    monkeypatch.setattr(synspec, "run_synspec", run_synspec)
    monkeypatch.setattr(build, "ensure_synspec", lambda **kw: None)
    monkeypatch.setattr(linelists, "ensure_linelists", lambda **kw: None)
    monkeypatch.setattr(synthesis, "_versions", lambda: {"fake": True})
    return state


def run(client, out, **kw):
    from lamost2csst.parallel.synthesis import synthesize_grid

    return synthesize_grid(client=client, out=str(out), **{**TWO, "step": 0.05, "progress": False, **kw})


def markers(out):
    return sorted(os.listdir(Path(out) / ".markers"))


def test_rows_are_the_reduced_spectra_and_markers_are_the_chunks(client, fake, tmp_path):
    from lamost2csst.synth.synspec import reduce_model

    out = tmp_path / "grid.zarr"
    summary = run(client, out, nfreqs=40)
    assert sorted(fake["calls"]) == [(5000.0, 4.5, 0.0, 0.0, 0.05, 40), (5250.0, 4.5, 0.0, 0.0, 0.05, 40)]
    assert summary["models_total"] == 2 and summary["models_ok"] == 2 and summary["models_done_this_run"] == 2
    assert summary["not_in_grid"] == 0 and summary["seconds_per_model_median"] == 5.0
    ds = xr.open_zarr(out, consolidated=False)
    for i, teff in enumerate((5000.0, 5250.0)):
        expected = reduce_model(*fake_spectrum(teff))
        for name in ("flux_in", "flux_lamost", "sed"):
            np.testing.assert_array_equal(ds[name].values[i], expected[name].astype(np.float32))
    np.testing.assert_array_equal(ds["seconds"].values, np.array([4.0, 6.0], np.float32))
    assert ds["ok"].values.all() and ds.attrs["seconds_per_model"]["mean"] == 5.0
    assert ds.attrs["settings"]["step_A"] == "0.05" and ds.attrs["settings"]["nfreqs"] == 40
    assert ds.attrs["command"] == "lamost2csst.parallel.synthesis.synthesize_grid"
    assert ds.attrs["summary"] == summary and ds.attrs["versions"] == {"fake": True}
    assert markers(out) == ["chunk-0.done", "chunk-1.done", "zarr.json"]
    done = json.loads((out / ".markers" / "chunk-1.done").read_text())
    assert done["index"] == 1 and done["key"] == "t05250_g4.50_m+0.00_a+0.00" and done["seconds"] == 6.0


def test_a_failed_model_is_recorded_and_retried_on_resume(client, fake, tmp_path):
    out = tmp_path / "grid.zarr"
    fake["fail"] = {5250.0}
    summary = run(client, out)
    assert (summary["models_ok"], summary["models_failed"], summary["models_pending"]) == (1, 1, 0)
    assert summary["models_failed_this_run"] == 1
    assert markers(out) == ["chunk-0.done", "chunk-1.failed", "zarr.json"]
    ds = xr.open_zarr(out, consolidated=False)
    np.testing.assert_array_equal(ds["ok"].values, [True, False])
    assert np.isnan(ds["sed"].values[1]).all() and np.isnan(ds["seconds"].values[1])
    (failure,) = ds.attrs["failures"]
    assert failure["index"] == 1 and failure["teff"] == 5250.0
    assert failure["reason"] == "SynthesisError: no convergence (fake)"
    fake["fail"], fake["calls"] = set(), []
    summary = run(client, out, resume=True)
    assert [c[0] for c in fake["calls"]] == [5250.0]
    assert (summary["models_skipped"], summary["models_ok"], summary["models_failed"]) == (1, 2, 0)
    assert markers(out) == ["chunk-0.done", "chunk-1.done", "zarr.json"]
    assert xr.open_zarr(out, consolidated=False).attrs["failures"] == []


def test_markers_of_older_stores_are_adopted(client, fake, tmp_path):
    out = tmp_path / "grid.zarr"
    run(client, out)
    for i in (0, 1):
        os.replace(out / ".markers" / f"chunk-{i}.done", out / ".markers" / f"model-{i}.done")
    fake["calls"] = []
    summary = run(client, out, resume=True)
    assert fake["calls"] == [] and summary["models_skipped"] == 2 and summary["models_ok"] == 2
    assert markers(out) == ["chunk-0.done", "chunk-1.done", "zarr.json"]


def test_output_checks_and_overwrite(client, fake, tmp_path):
    out = tmp_path / "grid.zarr"
    run(client, out)
    with pytest.raises(InputError, match="already exists"):
        run(client, out)
    with pytest.raises(InputError, match="settings"):
        run(client, out, resume=True, step=0.1)
    fake["calls"] = []
    summary = run(client, out, overwrite=True, teff=("list", [5000.0]))
    assert len(fake["calls"]) == 1 and summary["models_total"] == 1 and summary["models_skipped"] == 0
    assert xr.open_zarr(out, consolidated=False).sizes["model"] == 1


def test_machine_info():
    from lamost2csst.parallel.synthesis import machine_info

    info = machine_info()
    assert set(info) == {"node", "platform", "cpu", "cpus"} and info["cpus"] == os.cpu_count()
    assert info["node"] and isinstance(info["cpu"], str)
