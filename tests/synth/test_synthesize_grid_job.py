"""jobs.synthesize_grid: template, per-model writes, failure records, resume (Synspec faked).

The ATLAS9 grid is the committed fixture of tests/synth/conftest.py (no download).
"""

import json
import types

import numpy as np
import pytest
import xarray as xr

from lamost2csst.errors import InputError


def fake_spectrum(teff):
    wave = np.exp(np.linspace(np.log(2401.0), np.log(10702.0), 200_000))
    lam = wave * 1e-8
    flux = 1 / lam**5 / np.expm1(1.4388 / (lam * teff))
    return wave, flux * (1 - 0.5 * np.exp(-0.5 * ((wave - 6564.61) / 2.0) ** 2))


@pytest.fixture()
def job(monkeypatch):
    from distributed import Client

    import jobs.synthesize_grid as sg
    import lamost2csst.parallel.synthesis as synthesis
    import lamost2csst.synth.build as build
    import lamost2csst.synth.linelists as linelists
    import lamost2csst.synth.synspec as synspec

    calls = []
    state = {"fail_teff": 5250.0}

    def fake_run_synspec(model, *, step, nfreqs=None, workdir=None):
        calls.append(model.teff)
        if model.teff == state["fail_teff"]:
            raise synspec.SynthesisError("synspec54 failed (fake)")
        wave, flux = fake_spectrum(model.teff)
        return types.SimpleNamespace(wave=wave, flux=flux, seconds=0.5)

    monkeypatch.setattr(synspec, "run_synspec", fake_run_synspec)
    monkeypatch.setattr(build, "ensure_synspec", lambda **kw: None)
    monkeypatch.setattr(linelists, "ensure_linelists", lambda **kw: None)
    monkeypatch.setattr(synthesis, "_versions", lambda: {"fake": True})
    with Client(processes=False, n_workers=1, threads_per_worker=2, dashboard_address=":0") as client:
        yield sg, client, calls, state


def test_run_resume_and_failures(job, tmp_path, capsys):
    sg, client, calls, state = job
    out = str(tmp_path / "grid" / "part-000.zarr")
    argv = [
        "--out",
        out,
        "--teff",
        "5000:5500",
        "--logg",
        "4.5,9.0",
        "--feh",
        "0",
        "--alpha",
        "0",
        "--no-progress",
    ]
    summary = sg.run(sg.parse_args(argv), client)
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1]) == summary
    assert summary["models_total"] == 3 and summary["not_in_grid"] == 3  # log g 9 is no node
    assert summary["models_ok"] == 2 and summary["models_failed"] == 1
    ds = xr.open_zarr(out, consolidated=False)
    assert ds.attrs["schema"] == "lamost2csst.synthetic_grid/1"
    assert ds.attrs["command"].startswith("python -m jobs.synthesize_grid --out")
    np.testing.assert_array_equal(ds["teff"].values, [5000.0, 5250.0, 5500.0])
    np.testing.assert_array_equal(ds["ok"].values, [True, False, True])
    (fail,) = ds.attrs["failures"]
    assert fail["teff"] == 5250.0 and "SynthesisError: synspec54 failed (fake)" in fail["reason"]
    sed = ds["sed"].values
    assert np.isnan(sed[1]).all() and np.isfinite(sed[[0, 2]]).all()
    assert ds["flux_in"].dtype == np.float32 and ds["flux_in"].shape == (3, 2238)
    assert ds["flux_lamost"].shape == (3, 3909)
    # resume: only the failed model runs again, and now succeeds
    state["fail_teff"] = None
    calls.clear()
    summary = sg.run(sg.parse_args(argv + ["--resume"]), client)
    assert calls == [5250.0]
    assert summary["models_skipped"] == 2 and summary["models_ok"] == 3 and summary["models_failed"] == 0
    ds = xr.open_zarr(out, consolidated=False)
    assert ds["ok"].values.all() and ds.attrs["failures"] == []
    # another selection cannot resume into this store
    with pytest.raises(InputError, match="other models"):
        other = ["--out", out, "--teff", "5000", "--logg", "4.5", "--feh", "0", "--alpha", "0", "--resume"]
        sg.run(sg.parse_args(other), client)
    with pytest.raises(InputError, match="already exists"):
        sg.run(sg.parse_args(argv), client)


def test_random_subset_is_reproducible():
    import jobs.synthesize_grid as sg

    args = sg.parse_args(["--out", "x.zarr", "--n-random", "5", "--seed", "3"])
    a, _ = sg.select_models(args)
    b, _ = sg.select_models(args)
    np.testing.assert_array_equal(a, b)
    assert a.size == 5 and np.all((a["teff"] >= 5000) & (a["teff"] <= 9750) & (a["logg"] >= 2.0))
    with pytest.raises(InputError, match="only"):
        sg.select_models(
            sg.parse_args(
                ["--out", "x.zarr", "--teff", "5000", "--logg", "4.5", "--feh", "0", "--n-random", "9"]
            )
        )


def test_bad_specs_exit_2(capsys):
    import jobs.synthesize_grid as sg

    with pytest.raises(SystemExit) as exc:
        sg.parse_args(["--out", "x.zarr", "--teff", "6000:5000"])
    assert exc.value.code == 2
    with pytest.raises(SystemExit) as exc:
        sg.main(["--out", "x.zarr", "--teff", "100", "--logg", "4.5"])
    assert exc.value.code == 2 and "no model" in capsys.readouterr().err


@pytest.mark.slow
def test_one_real_model(tmp_path, synspec_ready):
    from distributed import Client

    import jobs.synthesize_grid as sg

    out = str(tmp_path / "real.zarr")
    argv = [
        "--out",
        out,
        "--teff",
        "9000",
        "--logg",
        "4.0",
        "--feh",
        "0",
        "--alpha",
        "0",
        "--step",
        "0.1",
        "--no-progress",
    ]
    with Client(processes=False, n_workers=1, threads_per_worker=1, dashboard_address=":0") as client:
        summary = sg.run(sg.parse_args(argv), client)
        assert summary["models_ok"] == 1
        again = sg.run(sg.parse_args(argv + ["--resume"]), client)
        assert again["models_skipped"] == 1 and again["models_done_this_run"] == 0
    ds = xr.open_zarr(out, consolidated=False)
    assert ds["seconds"].values[0] > 0 and ds.attrs["seconds_per_model"]["median"] > 0
    assert ds.attrs["versions"]["synspec"]["synspec_version"] == "1.0.3"


def test_step_option():
    import jobs.synthesize_grid as sg
    from lamost2csst.synth.synspec import step_text

    assert sg.parse_args(["--out", "x", "--step", "0.02"]).step == 0.02
    sched = sg.parse_args(["--out", "x", "--step", "3000:0.005,4000:0.01,0.05"]).step
    assert sched == ((3000.0, 0.005), (4000.0, 0.01), (None, 0.05))
    assert step_text(sched) == "3000:0.005,4000:0.01,0.05"
    sched = sg.parse_args(["--out", "x", "--step", "3300:0.01:40,4500:0.02:40,0.05"]).step
    assert sched == ((3300.0, 0.01, 40), (4500.0, 0.02, 40), (None, 0.05))
    assert step_text(sched) == "3300:0.01:40,4500:0.02:40,0.05"
    for bad in ("0", "3000:0.01", "4000:0.01,3000:0.02,0.05", "x", "3000:0.01:1,0.05"):
        with pytest.raises(SystemExit):
            sg.parse_args(["--out", "x", "--step", bad])


def test_parts_are_disjoint_and_make_the_whole_selection():
    import jobs.synthesize_grid as sg

    base = ["--out", "x.zarr", "--teff", "5000:6000", "--logg", "4.0:4.5", "--feh=-1.0:0.0", "--alpha", "0"]
    whole, _ = sg.select_models(sg.parse_args(base))
    parts = [sg.select_models(sg.parse_args([*base, "--part", f"{k}/3", "--seed", "7"]))[0] for k in range(3)]
    keys = [set(zip(p["teff"], p["logg"], p["feh"], p["alpha"])) for p in parts]
    assert sum(len(k) for k in keys) == whole.size
    assert set().union(*keys) == set(zip(whole["teff"], whole["logg"], whole["feh"], whole["alpha"]))
    assert all(len(keys[i] & keys[j]) == 0 for i in range(3) for j in range(i + 1, 3))
    assert 1 <= min(len(k) for k in keys)
    with pytest.raises(SystemExit):
        sg.parse_args([*base, "--part", "3/3"])


def test_skip_shipped_leaves_out_models_of_the_shipped_grid():
    import jobs.synthesize_grid as sg
    from lamost2csst.io.grid import GRID_DIR, load_grid

    if not any(GRID_DIR.glob("*.zarr")):
        pytest.skip("no grid shipped")
    grid = load_grid()
    first = grid.isel(model=0)
    base = [
        "--out",
        "x.zarr",
        "--teff",
        str(first.teff.item()),
        "--logg",
        str(first.logg.item()),
        f"--feh={first.feh.item()}",
        "--alpha",
        str(first.alpha.item()),
    ]
    rows, _ = sg.select_models(sg.parse_args(base))
    assert rows.size == 1
    with pytest.raises(InputError, match="no model"):
        sg.select_models(sg.parse_args([*base, "--skip-shipped"]))


def test_a_store_another_job_writes_is_refused(job, tmp_path):
    import subprocess
    import sys

    from lamost2csst.errors import InputError

    sg, client, calls, _ = job
    out = str(tmp_path / "part.zarr")
    from tests.parallel.test_locking import HOLDER

    proc = subprocess.Popen([sys.executable, "-c", HOLDER, out], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "locked"
        for flag in ("--resume", "--overwrite"):
            argv = [
                "--out",
                out,
                "--teff",
                "5000",
                "--logg",
                "4.5",
                "--feh",
                "0",
                "--alpha",
                "0",
                "--no-progress",
                flag,
            ]
            with pytest.raises(InputError, match="being written by holder"):
                sg.run(sg.parse_args(argv), client)
        assert calls == []  # nothing synthesized
    finally:
        proc.kill()
        proc.wait()
    argv = [
        "--out",
        out,
        "--teff",
        "5000",
        "--logg",
        "4.5",
        "--feh",
        "0",
        "--alpha",
        "0",
        "--no-progress",
        "--resume",
    ]
    summary = sg.run(sg.parse_args(argv), client)  # the killed holder's lock is taken over
    assert summary["models_ok"] == 1
