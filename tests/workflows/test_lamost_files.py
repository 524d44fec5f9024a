"""MILES through LAMOST-like FITS files: the files, their noise and injected trouble, the job's path."""

import numpy as np
import pytest

pytest.importorskip("mangadap")

from lamost2csst.core import LAMOST_WAVE, OUTPUT_WAVE
from lamost2csst.core.inputs import LAMOST_SKY_LINES
from lamost2csst.errors import InputError
from lamost2csst.io.lamost_export import export_lamost
from lamost2csst.io.readers import read_lamost
from lamost2csst.workflows.lamost_files import LAMOST_RESOLUTION, lamost_observations, miles_through_files

# MILES numbers (obsid) of three stars of the test's Teff range (5775, 8140 and 5808 K); their file
# names sort as spec-13, spec-3, spec-6, so the catalogue's order differs from the library's
OBSIDS = (3, 6, 13)
MILES_LO, MILES_HI = 3541.5, 7411.6  # vacuum coverage of the MILES files (3540.5-7409.6 A air)


@pytest.fixture(scope="module")
def three():
    from lamost2csst.io.readers.mangadap import mangadap_template_dir
    from lamost2csst.io.readers.miles import read_miles, read_miles_params

    folder = mangadap_template_dir("miles")
    files = [folder / f"MILES_res2.50_star_m{n:04d}V.fits" for n in OBSIDS]
    return read_miles(files, params=read_miles_params(folder / "MILES_params.db"))


def _by_obsid(ds, obsid):
    return ds.isel(star=[int(np.flatnonzero(ds.obsid.values == o)[0]) for o in obsid])


def test_the_files_read_back_to_the_same_pixels(three, tmp_path):
    obs = lamost_observations(three, snr=100.0, seed=1)
    back = _by_obsid(read_lamost(export_lamost(obs, tmp_path / "fits")), obs.obsid.values)
    good = ~obs["mask"].values
    np.testing.assert_array_equal(back["mask"].values, obs["mask"].values)
    np.testing.assert_array_equal(back.flux.values[good], obs.flux.values[good])
    np.testing.assert_array_equal(back.ivar.values, obs.ivar.values)
    np.testing.assert_allclose(back.z.values, obs.z.values, rtol=1e-6)  # the header's float
    assert np.all(back.ivar.values[~good] == 0)


def test_only_what_miles_covers_in_the_rest_frame_is_unmasked(three):
    obs = lamost_observations(three, snr=100.0, seed=1)
    z = obs.z.values
    assert np.all(np.abs(z) > 0) and np.all(np.abs(z) < 0.002)  # radial velocities of a few 10 km/s
    rest = LAMOST_WAVE[None, :] / (1.0 + z[:, None])
    mask = obs["mask"].values
    # 10 A: the R=1800 kernel and a pixel; LAMOST_WAVE starts at 3700 A: a star at z > 0 has no rest
    # flux for its first observed pixel
    inside = (rest > max(MILES_LO + 10, LAMOST_WAVE[0] + 2)) & (rest < MILES_HI - 10)
    outside = (rest < MILES_LO) | (rest > MILES_HI)
    assert not mask[inside].any() and mask[outside].all()
    assert np.all(np.isnan(obs.flux.values[mask])) and np.all(obs.ivar.values[mask] == 0)


def test_eq1_noise_and_the_injected_sky_residuals_are_as_stated(three):
    clean = lamost_observations(three, snr=1e9, seed=1)  # same draws, noise 1e-9 of the flux
    noisy = lamost_observations(three, snr=100.0, seed=1)
    good = ~noisy["mask"].values
    f0 = clean.flux.values.astype(float)
    np.testing.assert_allclose(noisy.ivar.values[good], (100.0 / f0[good]) ** 2, rtol=1e-5)
    pull = (noisy.flux.values - f0)[good] * np.sqrt(noisy.ivar.values[good])
    assert abs(pull.mean()) < 0.03 and abs(pull.std() - 1.0) < 0.03  # ~8,000 pixels
    spiked = lamost_observations(three, snr=100.0, seed=1, sky_residual=5.0)
    np.testing.assert_array_equal(spiked.ivar.values, noisy.ivar.values)  # ivar does not know
    error = 1.0 / np.sqrt(np.where(good, noisy.ivar.values, np.nan).astype(float))
    for line in LAMOST_SKY_LINES:
        j = int(np.argmin(np.abs(LAMOST_WAVE - line)))
        sigma = line / LAMOST_RESOLUTION / 2.3548
        profile = np.exp(-0.5 * ((LAMOST_WAVE[j] - line) / sigma) ** 2)
        step = (spiked.flux.values[:, j].astype(float) - noisy.flux.values[:, j]) / error[:, j]
        np.testing.assert_allclose(np.abs(step), 5.0 * profile, rtol=2e-3)
    far = np.all([np.abs(LAMOST_WAVE - line) > 10.0 for line in LAMOST_SKY_LINES], axis=0)
    np.testing.assert_array_equal(spiked.flux.values[:, far], noisy.flux.values[:, far])


def test_refuses_to_overwrite_an_earlier_run(three, tmp_path):
    (tmp_path / "catalogue.zarr").mkdir()
    with pytest.raises(InputError, match="overwrite"):
        miles_through_files(None, three, out_dir=tmp_path)


@pytest.mark.slow  # ingest, two predict_catalogue runs on a LocalCluster, the direct path: ~12 s
def test_three_stars_through_the_job_match_the_direct_path(three, tmp_path):
    pytest.importorskip("tensorflow")
    from lamost2csst.workflows.lamost_files import miles_direct

    got = miles_through_files(None, three, out_dir=tmp_path, snr=100.0, seed=1, trouble=("keep", "mask"))
    assert got["ingest"]["stars_added"] == 3 and got["ingest"]["rejected"] == 0
    np.testing.assert_array_equal(got["obsid"], three.obsid.values)
    covered = (OUTPUT_WAVE > MILES_LO + 100) & (OUTPUT_WAVE < MILES_HI - 100)
    beyond = (OUTPUT_WAVE < MILES_LO) | (OUTPUT_WAVE > MILES_HI)
    for mode in ("keep", "mask"):
        run = got["modes"][mode]
        np.testing.assert_array_equal(run["flags"], 0)
        np.testing.assert_array_equal(np.isfinite(run["residual"]), np.isfinite(got["target"]))
        assert np.isfinite(run["residual"][:, covered]).all() and np.isnan(run["residual"][:, beyond]).all()
        assert np.isfinite(run["sigma"]).all()
    direct = miles_direct(None, three, snr=100.0, seed=1)
    # the same stars, two noise draws and input paths: each star's residuals agree to a few per cent
    # (80 stars: median 0.005, at most 0.047 rms); a star matched to another's SED is off by > 0.1
    diff = got["residual"] - direct["residual"]
    assert np.all(np.sqrt(np.nanmean(diff**2, axis=1)) < 0.06)
    for a, b in zip(got["errors"], direct["errors"]):
        assert a["error"] < 2.0 * b["error"] + 0.01
