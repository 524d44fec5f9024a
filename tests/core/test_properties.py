"""Property tests (hypothesis): the per-block kernels never return silently wrong output.

Whatever the values (NaN, inf, negative, zero, huge) and shapes, each kernel either raises
a ValueError that says what is wrong, or returns output in which every value that is not
flagged or masked is finite and physically meaningful, and every star is accounted for.
"""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lamost2csst.core import INPUT_WAVE, LAMOST_WAVE, prepare_inputs
from lamost2csst.core.flags import (
    Flag,
    FlagThresholds,
    bad_redshift,
    input_flags,
    median_snr,
    sanitize_pixels,
)

SPECIAL = [np.nan, np.inf, -np.inf, 0.0, -1.0, 1e30, -1e30, 1e-30]


@st.composite
def spectra(draw, *, n_pixel=None):
    """(flux, ivar, mask) with random shapes and a random share of special values in each."""
    seed = draw(st.integers(0, 2**32 - 1))
    n_star = draw(st.integers(1, 6))
    n_pixel = n_pixel or draw(st.integers(1, 60))
    rng = np.random.default_rng(seed)
    flux = rng.normal(100.0, 30.0, (n_star, n_pixel))
    ivar = rng.uniform(0.0, 1.0, (n_star, n_pixel))
    for a in (flux, ivar):
        share = draw(st.sampled_from([0.0, 0.01, 0.3, 1.0]))
        hit = rng.random(a.shape) < share
        a[hit] = rng.choice(SPECIAL, size=int(hit.sum()))
    mask = rng.random((n_star, n_pixel)) < draw(st.sampled_from([0.0, 0.2, 1.0]))
    return flux, ivar, mask


@settings(max_examples=200, deadline=None)
@given(spectra())
def test_sanitize_pixels_leaves_only_usable_pixels_unmasked(arrays):
    flux, ivar, mask = arrays
    f, iv, m, nonfinite = sanitize_pixels(flux, ivar, mask)
    good = ~m
    assert np.isfinite(f[good]).all() and np.isfinite(iv[good]).all() and (iv[good] > 0).all()
    assert (m | ~mask).all()  # nothing that was masked becomes unmasked
    # NONFINITE_INPUT exactly for the stars that had a bad value on a pixel not marked bad;
    # a non-finite flux where ivar == 0 is "no data" (LAMOST's convention), not an anomaly
    with np.errstate(invalid="ignore"):
        bad_value = (~np.isfinite(flux) & (ivar != 0)) | ~np.isfinite(ivar) | (ivar < 0)
    np.testing.assert_array_equal(nonfinite, (bad_value & ~mask).any(axis=1))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spectra(n_pixel=LAMOST_WAVE.size), st.sampled_from([0.0, 1e-4, -3e-3, 0.02, 2.5, -0.9]))
def test_prepare_inputs_gives_finite_values_wherever_unmasked(arrays, z):
    flux, ivar, mask = arrays
    flux, ivar, mask, _ = sanitize_pixels(flux, ivar, mask)  # the jobs' order: sanitize, then prepare
    net = prepare_inputs(LAMOST_WAVE, flux, ivar=ivar, z=z, mask=mask)
    assert net.flux.shape == net.error.shape == net.mask.shape == (flux.shape[0], INPUT_WAVE.size)
    good = ~net.mask
    assert np.isfinite(net.flux[good]).all()
    assert np.isfinite(net.error[good]).all() and (net.error[good] > 0).all()


@settings(max_examples=50, deadline=None)
@given(spectra())
def test_prepare_inputs_refuses_what_it_cannot_use(arrays):
    """Unsanitized non-finite values or mismatched shapes: a ValueError, or masked pixels.

    Never NaN unmasked.
    """
    flux, ivar, mask = arrays
    wave = np.linspace(3700.0, 9100.0, flux.shape[1])
    for bad_shape in (ivar[:, :-1] if ivar.shape[1] > 1 else ivar[:0], ivar.T if ivar.shape[0] > 1 else None):
        if bad_shape is not None and bad_shape.shape != flux.shape:
            with pytest.raises(ValueError):
                prepare_inputs(wave, flux, ivar=bad_shape, z=0.0, mask=mask)
    try:
        net = prepare_inputs(wave, flux, ivar=ivar, z=0.0, mask=mask)
    except ValueError as err:
        assert str(err)  # refused, with a message
        return
    good = ~net.mask
    assert np.isfinite(net.flux[good]).all() and np.isfinite(net.error[good]).all()


@settings(max_examples=200, deadline=None)
@given(
    spectra(),
    st.lists(st.sampled_from([np.nan, 0.0, 1e-4, 0.01, -0.5, -1.0, -2.0, 5.0]), min_size=6, max_size=6),
)
def test_flags_account_for_every_star(arrays, zs):
    flux, ivar, mask = arrays
    n_star = flux.shape[0]
    z = np.array(zs[:n_star])
    f, iv, m, nonfinite = sanitize_pixels(flux, ivar, mask)
    thresholds = FlagThresholds()

    z_missing, z_implausible = bad_redshift(z, max_abs_z=thresholds.max_abs_z)
    net_mask = m[:, : min(m.shape[1], INPUT_WAVE.size)]
    net_mask = np.pad(net_mask, ((0, 0), (0, INPUT_WAVE.size - net_mask.shape[1])), constant_values=True)
    net_mask = net_mask | z_missing[:, None]
    flags = input_flags(
        net_mask,
        snr=median_snr(f, iv, m),
        nonfinite=nonfinite,
        z_missing=z_missing,
        z_implausible=z_implausible,
        teff=None,
        thresholds=thresholds,
    )
    assert flags.shape == (n_star,)
    np.testing.assert_array_equal((flags & Flag.NO_DATA) != 0, net_mask.all(axis=1))
    np.testing.assert_array_equal((flags & Flag.BAD_Z) != 0, z_missing | z_implausible)
    np.testing.assert_array_equal((flags & Flag.NONFINITE_INPUT) != 0, nonfinite)
    assert (z_missing <= ((flags & Flag.NO_DATA) != 0)).all()  # no rest frame -> no data


@pytest.mark.parametrize("shape", [(2, 100), (3,), (2, 2239), (2, 2238, 1)])
def test_predict_refuses_wrong_shapes(shape):
    pytest.importorskip("tensorflow")
    import lamost2csst

    with pytest.raises(ValueError, match="2238|shape|2-D"):
        lamost2csst.predict(np.ones(shape, np.float32), np.full(shape, 0.01, np.float32))


def test_predict_of_no_spectra_is_empty():
    pytest.importorskip("tensorflow")
    import lamost2csst

    sed, sigma = lamost2csst.predict(np.ones((0, 2238), np.float32), np.ones((0, 2238), np.float32))
    assert sed.shape == sigma.shape == (0, 574)


@settings(max_examples=15, deadline=None)
@given(st.integers(0, 2**32 - 1), st.sampled_from([np.nan, np.inf, -np.inf, -0.1, 0.0]))
def test_predict_refuses_non_finite_or_non_positive_errors(seed, value):
    pytest.importorskip("tensorflow")
    import lamost2csst

    rng = np.random.default_rng(seed)
    flux = rng.normal(1.0, 0.05, (2, INPUT_WAVE.size)).astype(np.float32)
    error = np.full_like(flux, 0.02)
    where = rng.integers(0, INPUT_WAVE.size)
    bad_flux, bad_error = flux.copy(), error.copy()
    bad_error[1, where] = value
    with pytest.raises(ValueError):
        lamost2csst.predict(flux, bad_error)
    if not np.isfinite(value):
        bad_flux[0, where] = value
        with pytest.raises(ValueError):
            lamost2csst.predict(bad_flux, error)
    # the same pixel masked is fine: it is handled as documented (flux 1, large error)
    mask = np.zeros(flux.shape, bool)
    mask[1, where] = True
    sed, sigma = lamost2csst.predict(flux, bad_error, mask=mask)
    assert np.isfinite(sed).all() and (sigma > 0).all()
