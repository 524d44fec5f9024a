"""observe_spectra: Doppler shift, flux scale and Eq. 1 noise against analytic expectations."""

import numpy as np
import pytest

from lamost2csst.core import INPUT_WAVE, LAMOST_WAVE
from lamost2csst.core.inputs import prepare_inputs
from lamost2csst.core.simulate import (
    C_KMS,
    draw_radial_velocities,
    observe_spectra,
    observed_network_inputs,
)

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
    flux, ivar, mask = observe_spectra(
        _rest_spectra(3),
        wave=LAMOST_WAVE,
        z=z,
        snr=np.full(3, 1e9),
        scale=np.ones(3),
        rng=np.random.default_rng(0),
    )
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
    flux, ivar, mask = observe_spectra(
        rest, wave=LAMOST_WAVE, z=np.zeros(n), snr=snr, scale=scale, rng=np.random.default_rng(1)
    )
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


@pytest.mark.parametrize(
    "bad", [dict(scale=np.array([0.0])), dict(z=np.array([np.nan])), dict(flux_rest=np.ones((1, 10)))]
)
def test_bad_input_is_refused(bad):
    args = dict(
        flux_rest=_rest_spectra(1),
        wave=LAMOST_WAVE,
        z=np.array([0.0]),
        snr=np.array([20.0]),
        scale=np.array([1.0]),
        rng=np.random.default_rng(0),
    )
    args.update(bad)
    with pytest.raises(ValueError):
        observe_spectra(**args)


def test_radial_velocity_mixture_has_a_10_percent_halo():
    v = draw_radial_velocities(200_000, np.random.default_rng(3))
    # disc N(0, 40) and halo N(0, 150): |v| > 300 km/s happens only in the halo (2 sigma of it,
    # 4.55 % of 10 %), and the total variance is 0.9 * 40^2 + 0.1 * 150^2
    assert np.mean(np.abs(v) > 300) == pytest.approx(0.1 * 0.0455, rel=0.1)
    assert np.var(v) == pytest.approx(0.9 * 40**2 + 0.1 * 150**2, rel=0.03)
    np.testing.assert_array_equal(v, draw_radial_velocities(200_000, np.random.default_rng(3)))


def _smooth_spectra(n):
    return np.tile((LAMOST_WAVE / 5500.0) ** -2.0, (n, 1))


def test_observed_network_inputs_are_back_in_the_rest_frame():
    """Observed at z, shifted back by the job's path: the line sits at its rest wavelength again."""
    n = 3
    z = np.array([0.0, 2e-4, -4e-4])
    line_on_slope = _rest_spectra(n) * _smooth_spectra(n)
    net = observed_network_inputs(
        line_on_slope, wave=LAMOST_WAVE, z=z, snr=np.full(n, 1e9), rng=np.random.default_rng(0)
    )
    ref = prepare_inputs(LAMOST_WAVE, line_on_slope[:1], ivar=np.ones((1, LAMOST_WAVE.size)), z=0.0)
    assert net.flux.shape == (n, INPUT_WAVE.size)
    far = np.abs(INPUT_WAVE - LINE) > 50
    for i in range(n):
        assert not net.mask[i].any()  # INPUT_WAVE (4000-7000 A) stays inside LAMOST_WAVE after the shifts
        assert _line_centre(INPUT_WAVE, net.flux[i]) == pytest.approx(LINE, abs=0.05)  # 1.3 A pixels
        np.testing.assert_allclose(net.flux[i, far], ref.flux[0, far], rtol=1e-4)
    # The check above sees a missing shift back: the same observation taken in at z = 0 puts
    # the line of the z = -4e-4 star LINE * 4e-4 = 2.6 A blue of its rest wavelength.
    flux, ivar, uncovered = observe_spectra(
        line_on_slope[2:],
        wave=LAMOST_WAVE,
        z=z[2:],
        snr=np.full(1, 1e9),
        scale=np.ones(1),
        rng=np.random.default_rng(0),
    )
    unshifted = prepare_inputs(LAMOST_WAVE, flux, ivar=ivar, z=0.0, mask=uncovered)
    assert _line_centre(INPUT_WAVE, unshifted.flux[0]) == pytest.approx(LINE * (1 - 4e-4), abs=0.05)


def test_observed_network_inputs_errors_are_the_per_pixel_noise():
    """The stated error of every network pixel is the std of its noise (resampling correlates
    neighbours but must propagate each pixel's variance right)."""
    n, snr = 600, 50.0
    rng = np.random.default_rng(11)
    z = draw_radial_velocities(n, rng) / C_KMS
    net = observed_network_inputs(_smooth_spectra(n), wave=LAMOST_WAVE, z=z, snr=np.full(n, snr), rng=rng)
    clean = observed_network_inputs(
        _smooth_spectra(n), wave=LAMOST_WAVE, z=z, snr=np.full(n, 1e9), rng=np.random.default_rng(0)
    )
    good = ~net.mask & ~clean.mask
    pull = ((net.flux - clean.flux) / net.error)[good]
    assert np.std(pull) == pytest.approx(1.0, abs=0.03)
    # per network pixel the S/N is higher than per LAMOST pixel: each network pixel averages
    # parts of two or three LAMOST pixels (whose noise it then shares with its neighbours)
    gain = 1.0 / np.median(net.error[good]) / snr
    assert 1.1 < gain < 1.5
