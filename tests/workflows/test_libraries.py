"""Training libraries: the grid, a STELIB-like library (parameters, dereddening, screening), NGSL inputs."""

import sys
from pathlib import Path

import numpy as np
import pytest

from lamost2csst.core import LAMOST_WAVE
from lamost2csst.core.air_vacuum import air_to_vacuum
from lamost2csst.core.extinction import reddening_curve
from lamost2csst.errors import InputError
from lamost2csst.io.training import SKIP_REASONS
from lamost2csst.workflows.libraries import (
    GRID_COLUMNS,
    LibrarySpec,
    grid_library,
    miles_input_gpr,
    stelib_library,
    training_library,
)

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "io" / "readers"))
from reader_files import write_miles, write_stelib

#: Models of the shipped grid the STELIB-like stars are made of (log g 4; [Fe/H] -1 and 0):
#: Teff 5000, 6000, 7000, 8000 at [Fe/H] = -1 and 5000, 6000 at [Fe/H] = 0.
STAR_MODELS = (0, 1, 2, 3, 5, 6)
EBV = 0.1


@pytest.fixture(scope="module")
def grid_part(tmp_path_factory):
    """The first 24 models of the shipped grid as a grid part store, and that Dataset."""
    import lamost2csst

    ds = lamost2csst.load_grid().isel(model=slice(0, 24))
    path = tmp_path_factory.mktemp("grid") / "grid.zarr"
    ds.to_zarr(path, mode="w", consolidated=False)
    return str(path), ds


def _stelib_like(folder, ds, *, ebv=EBV, models=STAR_MODELS, headerless=(1,)):
    """STELIB-format files (air, 1 A/px) of grid models' LAMOST-range spectra, reddened by ``ebv``, read.

    Stars at the positions ``headerless`` carry no parameters ('-') in their headers.
    """
    from lamost2csst.io.readers import read_stelib

    return read_stelib(_stelib_like_files(folder, ds, ebv=ebv, models=models, headerless=headerless))


def _stelib_like_files(folder, ds, *, ebv=EBV, models=STAR_MODELS, headerless=(1,), defect=None):
    """The files of :func:`_stelib_like`; ``defect(flux, air)`` may alter each flux first."""
    air = 3701.0 + np.arange(5390.0)
    vac = air_to_vacuum(air)
    dim = 10 ** (-0.4 * ebv * reddening_curve(vac))
    paths = []
    for j, i in enumerate(models):
        flux = 1e-20 * np.interp(vac, LAMOST_WAVE, ds.flux_lamost.values[i].astype(float)) * dim
        header = {
            "TEFF": float(ds.teff[i]),
            "LOG_G": float(ds.logg[i]),
            "FE_H": float(ds.feh[i]),
            "STARIDEN": f"M{i}",
        }
        if j in headerless:
            header.update(TEFF="-", LOG_G="-", FE_H="-")
        if defect is not None:
            flux = defect(flux, air)
        paths.append(
            write_stelib(
                folder / f"star{i}.fits",
                n=flux.size,
                crval=3701.0,
                cdelt=1.0,
                flux=flux.astype(np.float32),
                **header,
            )
        )
    return paths


@pytest.fixture(scope="module")
def stelib_like(tmp_path_factory, grid_part):
    return _stelib_like(tmp_path_factory.mktemp("stelib"), grid_part[1])


def test_grid_library_is_the_grid_in_float32_with_its_parameters(grid_part):
    path, ds = grid_part
    lib, params = grid_library(paths=[path])
    assert len(lib) == 24 and lib.flux_in.dtype == lib.sed.dtype == lib.flux_lamost.dtype == np.float32
    np.testing.assert_array_equal(lib.flux_in, ds.flux_in.values)
    np.testing.assert_array_equal(lib.sed, ds.sed.values)
    np.testing.assert_array_equal(lib.teff, ds.teff.values)
    np.testing.assert_array_equal(params, np.stack([ds[k].values for k in GRID_COLUMNS], axis=1))
    # two parts concatenate along the model axis
    twice, params2 = grid_library(paths=[path, path])
    assert len(twice) == 48 and np.array_equal(params2[24:], params)
    spec = training_library(LibrarySpec(kind="grid", grid_paths=(path,)))
    assert spec.columns == list(GRID_COLUMNS) and spec.keys[5] == list(params[5]) and spec.info == {}


def test_stelib_like_library_dereddened_back_to_its_models(grid_part, stelib_like):
    """Round trip: grid spectra reddened by E(B-V) = 0.1 come back as the grid's SEDs."""
    path, ds = grid_part
    lib, names, info = stelib_library(stelib_like, grid_paths=[path], screen_rmsae=0)
    assert list(names) == [f"M{i}" for i in STAR_MODELS]
    assert info["stars_read"] == 6 and info["in_teff_range"] == 6
    assert set(info["skipped"]) == set(SKIP_REASONS) and not any(info["skipped"].values())
    assert info["params_from_header"] == 5 and info["params_from_chi2_fit"] == 1
    assert info["dropped_inconsistent_reddening"] == 0
    assert info["ebv_percentiles_10_50_90"] == [EBV, EBV, EBV]
    # the headerless star's Teff comes from the chi-square fit: its own model's
    np.testing.assert_array_equal(lib.teff, ds.teff.values[list(STAR_MODELS)])
    assert lib.flux_in.dtype == lib.sed.dtype == np.float32
    truth = ds.sed.values[list(STAR_MODELS)]
    covered = ~lib.target_mask
    assert covered[:, (ds.wave_out.values > 3800) & (ds.wave_out.values < 9000)].all()
    assert lib.target_mask[:, ds.wave_out.values < 3600].all()  # STELIB-like: no UV
    rel = np.abs(lib.sed[covered] / truth[covered] - 1)
    assert rel.max() < 0.01 and np.median(rel) < 2e-4  # measured 0.0068 and 5e-5
    # without dereddening the targets keep the reddening's tilt: 16 % off at the blue end
    red, _, info_red = stelib_library(stelib_like, grid_paths=[path], screen_rmsae=0, deredden=False)
    assert "ebv_percentiles_10_50_90" not in info_red
    assert np.abs(red.sed[covered] / truth[covered] - 1).max() > 0.15


def test_stars_outside_the_teff_range_or_with_nan_in_the_scaling_window_are_dropped(tmp_path, grid_part):
    path, ds = grid_part
    stars = _stelib_like(tmp_path, ds, models=(0, 1, 3), headerless=())
    flux = stars["flux"].values.copy()
    window = (stars["wave"].values > 5480) & (stars["wave"].values < 5630)
    flux[2, window] = np.nan  # the 8000 K star loses its scaling window to NaNs (masked)
    stars["flux"] = stars["flux"].copy(data=flux)
    stars["mask"] = stars["mask"].copy(data=~np.isfinite(flux))
    lib, names, info = stelib_library(stars, grid_paths=[path], teff_range=(5500.0, 9000.0), screen_rmsae=0)
    assert info["skipped"]["nan_flux"] == 1 and sum(info["skipped"].values()) == 1
    assert info["in_teff_range"] == 1 and list(names) == ["M1"]
    np.testing.assert_array_equal(lib.teff, [6000.0])


def _defect_files(folder, ds):
    """One STELIB-like file per defect (grid models 1, 2, 3, 5, 6; model 0 gives two good stars)."""

    def at(air, lo, hi):
        return (air >= lo) & (air < hi)

    defects = {
        "nan_flux": (1, lambda f, a: np.where(at(a, 4500, 4503), np.nan, f)),
        "nonpositive_flux": (2, lambda f, a: np.where(at(a, 5000, 5020), 0.0, f)),  # a STELIB gap
        "no_scale_window": (3, lambda f, a: f[a < 5400]),  # the file stops at 5400 A
        "constant_flux": (5, lambda f, a: np.full_like(f, 3e-20)),
        "missing_parameters": (6, lambda f, a: f),
    }
    paths = {}
    for reason, (model, change) in defects.items():
        sub = folder / reason
        sub.mkdir()
        headerless = (0,) if reason == "missing_parameters" else ()
        (paths[reason],) = _stelib_like_files(sub, ds, models=(model,), headerless=headerless, defect=change)
    unreadable = folder / "truncated.fits"
    unreadable.write_bytes(paths["constant_flux"].read_bytes()[:5000])
    paths["unreadable"] = unreadable
    return paths


def test_stelib_library_skips_each_defective_file_with_its_reason(tmp_path, grid_part):
    """2 good files and one file per defect: the 2 are kept, as read alone; the rest is counted."""
    from lamost2csst.io.readers import read_stelib

    path, ds = grid_part
    good = _stelib_like_files(tmp_path, ds, models=(0, 7), headerless=())
    bad = _defect_files(tmp_path, ds)
    wave = np.arange(3720.0, 9080.0, 1.0)  # the short file needs a common grid
    stars = read_stelib([good[0], *bad.values(), good[1]], wave=wave, on_error="skip")
    options = dict(grid_paths=[path], screen_rmsae=0, fit_missing_params=False)
    lib, names, info = stelib_library(stars, **options)
    assert list(names) == ["M0", "M7"] and info["stars_read"] == 7
    assert info["skipped"] == dict.fromkeys(SKIP_REASONS, 1) | {"input_gap": 0}
    assert info["unreadable_files"][0].startswith(str(bad["unreadable"]))
    alone, names_alone, info_alone = stelib_library(read_stelib(good, wave=wave), **options)
    assert list(names_alone) == ["M0", "M7"] and not any(info_alone["skipped"].values())
    for field in ("flux_in", "sed"):
        np.testing.assert_allclose(getattr(lib, field), getattr(alone, field), rtol=2e-6)
    for field in ("input_mask", "target_mask", "teff"):
        np.testing.assert_array_equal(getattr(lib, field), getattr(alone, field))
    # by default, the star without header parameters is fitted instead (and counted so)
    _, names_fit, info_fit = stelib_library(stars, grid_paths=[path], screen_rmsae=0)
    assert list(names_fit) == ["M0", "M6", "M7"] and info_fit["params_from_chi2_fit"] == 1
    assert info_fit["skipped"]["missing_parameters"] == 0


def test_miles_input_gpr_counts_the_stars_it_skips(tmp_path, grid_part):
    """MILES-format files of 16 grid models (5000-9250 K): the defective ones are counted, not fitted."""
    from lamost2csst.io.readers import read_miles

    _, ds = grid_part
    air = 3540.5 + 0.9 * np.arange(4300)
    vac = air_to_vacuum(air)
    paths, params = [], {}
    for n, i in enumerate(range(16), 1):
        flux = np.interp(vac, LAMOST_WAVE, ds.flux_lamost.values[i].astype(float))
        if n == 2:
            flux[1000:1003] = np.nan
        if n == 3:
            flux[2000:2010] = 0.0
        paths.append(write_miles(tmp_path / f"MILES_res2.50_star_m{n:04d}V.fits", flux=flux))
        params[n] = tuple(float(ds[k].values[i]) for k in ("teff", "logg", "feh"))
    del params[4]
    info = {}
    _, n_fitted = miles_input_gpr(read_miles(paths, params=params), seed=0, info=info)
    assert info["miles_stars_read"] == 16 and info["miles_in_teff_range"] == 13
    assert info["miles_skipped"] == dict.fromkeys(SKIP_REASONS, 0) | {
        "nan_flux": 1,
        "nonpositive_flux": 1,
        "missing_parameters": 1,
    }
    assert n_fitted == 13 - info["miles_screened_out"] >= 3


def test_screening_is_deterministic_for_a_seed(grid_part, stelib_like):
    path, _ = grid_part
    first = stelib_library(stelib_like, grid_paths=[path], screen_rmsae=0.05, seed=3)
    again = stelib_library(stelib_like, grid_paths=[path], screen_rmsae=0.05, seed=3)
    assert list(first[1]) == list(again[1]) and first[2] == again[2]
    np.testing.assert_array_equal(first[0].sed, again[0].sed)
    info = first[2]
    assert len(first[0]) == 6 - info["screened_out"] and info["screen_rmsae"] == 0.05
    assert len(info["gpr_hyperparameters"]) == 5  # one GPR per fold
    # what the screen keeps are the unscreened library's rows
    full, names, _ = stelib_library(stelib_like, grid_paths=[path], screen_rmsae=0)
    rows = [list(names).index(n) for n in first[1]]
    np.testing.assert_array_equal(first[0].sed, full.sed[rows])


def test_library_spec_and_ngsl_inputs_are_checked(tmp_path):
    with pytest.raises(InputError, match="'grid', 'stelib' or 'ngsl'"):
        LibrarySpec(kind="miles")
    with pytest.raises(InputError, match="--ngsl-params"):
        training_library(LibrarySpec(kind="ngsl", ngsl_files=(str(tmp_path),)))
    (tmp_path / "params.csv").write_text("name,teff,logg,feh\n")
    with pytest.raises(InputError, match="no h_stis_ngsl"):
        training_library(
            LibrarySpec(kind="ngsl", ngsl_files=(str(tmp_path),), ngsl_params=str(tmp_path / "params.csv"))
        )
