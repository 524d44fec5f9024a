"""observe_spectra: Doppler shift, flux scale and Eq. 1 noise against analytic expectations."""

import numpy as np
import pytest

from lamost2csst.core import LAMOST_WAVE
from lamost2csst.core.simulate import observe_spectra

LINE = 6564.61  # a Gaussian absorption line at H-alpha (vacuum)


def _rest_spectra(n):
    profile = 1.0 - 0.5 * np.exp(-0.5 * ((LAMOST_WAVE - LINE) / 3.0) ** 2)
    return np.tile(profile, (n, 1))


def _line_centre(wave, flux):
    depth = np.clip(1.0 - flux, 0, None)
    sel = np.abs(wave - LINE) < 40
    return np.sum(wave[sel] * depth[sel]) / np.sum(depth[sel])


def test_doppler_shift_moves_the_line_to_lambda_times_1_plus_z():
    z = np.array([0.0, 3e-4, -5e-4])
    flux, ivar, mask = observe_spectra(_rest_spectra(3), wave=LAMOST_WAVE, z=z, snr=np.full(3, 1e9),
                                       scale=np.ones(3), rng=np.random.default_rng(0))
    for i in range(3):
        assert _line_centre(LAMOST_WAVE, flux[i]) == pytest.approx(LINE * (1 + z[i]), abs=0.01)
    # a redshift moves the blue end out of the model's range: those pixels are masked
    assert not mask[0].any()
    assert mask[1, 0] and not mask[1, -1]
    assert mask[2, -1] and not mask[2, 0]
    assert np.isnan(flux[mask]).all() and (ivar[mask] == 0).all()


def test_noise_follows_eq1_and_ivar_is_snr_over_flux_squared():
    n, snr = 400, np.full(400, 25.0)
    rest = _rest_spectra(n)
    scale = np.full(n, 300.0)
    flux, ivar, mask = observe_spectra(rest, wave=LAMOST_WAVE, z=np.zeros(n), snr=snr, scale=scale,
                                       rng=np.random.default_rng(1))
    clean = rest * 300.0
    r = flux / clean - 1.0
    assert np.std(r) == pytest.approx(1 / 25.0, rel=0.01)
    assert abs(np.mean(r)) < 1e-4
    np.testing.assert_allclose(ivar, (25.0 / clean) ** 2, rtol=1e-5)


def test_the_generator_alone_decides_the_noise():
    args = dict(wave=LAMOST_WAVE, z=np.array([1e-4]), snr=np.array([20.0]), scale=np.array([2.0]))
    a = observe_spectra(_rest_spectra(1), rng=np.random.default_rng(5), **args)
    b = observe_spectra(_rest_spectra(1), rng=np.random.default_rng(5), **args)
    np.testing.assert_array_equal(a[0], b[0])


@pytest.mark.parametrize("bad", [dict(scale=np.array([0.0])), dict(z=np.array([np.nan])),
                                 dict(flux_rest=np.ones((1, 10)))])
def test_bad_input_is_refused(bad):
    args = dict(flux_rest=_rest_spectra(1), wave=LAMOST_WAVE, z=np.array([0.0]), snr=np.array([20.0]),
                scale=np.array([1.0]), rng=np.random.default_rng(0))
    args.update(bad)
    with pytest.raises(ValueError):
        observe_spectra(**args)
