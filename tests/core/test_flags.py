"""Quality flags: each bit set exactly when its documented condition holds (hand-made cases)."""

import numpy as np
import pytest

from lamost2csst.core.flags import (
    FLAG_MEANINGS,
    Flag,
    FlagThresholds,
    bad_redshift,
    describe_flags,
    domain_flags,
    input_flags,
    median_snr,
    output_flags,
    sanitize_pixels,
)


def test_bits_are_distinct_powers_of_two_and_all_documented():
    values = [int(f) for f in Flag]
    assert sorted(values) == [1 << i for i in range(len(values))]
    assert set(FLAG_MEANINGS) == set(Flag)
    assert describe_flags(Flag.NO_DATA | Flag.BAD_Z) == ["NO_DATA", "BAD_Z"]
    assert describe_flags(0) == []


def test_sanitize_masks_bad_pixels_and_reports_only_unannounced_ones():
    flux = np.array(
        [
            [1.0, np.nan, 3.0, 4.0],  # NaN flux with ivar > 0: an anomaly
            [1.0, np.nan, 3.0, 4.0],  # NaN flux with ivar = 0: LAMOST's "no data", fine
            [1.0, 2.0, 3.0, 4.0],  # negative ivar: an anomaly
            [1.0, np.inf, 3.0, 4.0],
        ],  # inf flux but masked: announced, fine
        np.float32,
    )
    ivar = np.array([[1, 1, 1, 1], [1, 0, 1, 1], [1, -1, 1, 1], [1, 1, 1, 1]], np.float32)
    mask = np.zeros((4, 4), bool)
    mask[3, 1] = True
    f, i, m, nonfinite = sanitize_pixels(flux, ivar, mask)
    np.testing.assert_array_equal(nonfinite, [True, False, True, False])
    np.testing.assert_array_equal(m[:, 1], [True, True, True, True])
    assert not m[:, [0, 2, 3]].any()
    assert i[2, 1] == 0 and (i[~m] == 1).all()  # the negative ivar is zeroed, good ones kept
    np.testing.assert_array_equal(ivar[2], [1, -1, 1, 1])  # inputs untouched
    clean_ivar = np.ones((2, 3), np.float32)
    assert sanitize_pixels(np.ones((2, 3)), clean_ivar)[1] is clean_ivar  # no copy when nothing to fix


def test_bad_redshift_separates_missing_from_implausible():
    missing, implausible = bad_redshift([0.0, np.nan, -9999.0, 0.004, -0.006, np.inf], max_abs_z=0.005)
    np.testing.assert_array_equal(missing, [False, True, True, False, False, True])
    np.testing.assert_array_equal(implausible, [False, False, False, False, True, False])


def test_median_snr_is_flux_times_sqrt_ivar_on_usable_pixels():
    flux = np.array([[10.0, 10.0, 10.0, 1000.0], [5.0, 5.0, 5.0, 5.0]])
    ivar = np.array([[0.25, 0.25, 0.25, 0.0], [1.0, 1.0, 1.0, 1.0]])
    mask = np.array([[False, False, False, True], [True, True, True, True]])
    snr = median_snr(flux, ivar, mask)
    assert snr[0] == pytest.approx(5.0)
    assert np.isnan(snr[1])


def test_input_flags_bit_by_bit():
    t = FlagThresholds(max_masked_fraction=0.25, min_snr=10.0, max_abs_z=0.005, teff_range=(5000.0, 9750.0))
    n_in = 8
    mask = np.zeros((6, n_in), bool)
    mask[0] = True  # star 0: nothing usable
    mask[1, :3] = True  # star 1: 3/8 = 37.5 % masked > 25 %
    mask[2, :2] = True  # star 2: 2/8 = 25 % masked, not above the threshold
    snr = np.array([np.nan, 50.0, 50.0, 9.9, 50.0, 50.0])
    flags = input_flags(
        mask,
        snr=snr,
        nonfinite=np.array([False, False, False, False, True, False]),
        z_missing=np.array([False, False, False, False, False, True]),
        z_implausible=np.zeros(6, bool),
        teff=np.array([np.nan, 4000.0, 6000.0, 6000.0, 6000.0, 9800.0]),
        thresholds=t,
    )
    assert [describe_flags(f) for f in flags] == [
        ["NO_DATA", "MASKED_PIXELS"],  # all masked; no LOW_SNR without data
        ["MASKED_PIXELS", "OUTSIDE_DOMAIN"],
        [],
        ["LOW_SNR"],
        ["NONFINITE_INPUT"],
        ["NO_DATA", "BAD_Z", "OUTSIDE_DOMAIN"],
    ]
    assert flags.dtype == np.uint16
    no_teff = input_flags(
        mask,
        snr=snr,
        nonfinite=np.zeros(6, bool),
        z_missing=np.zeros(6, bool),
        z_implausible=np.zeros(6, bool),
        thresholds=t,
    )
    assert not (no_teff & Flag.OUTSIDE_DOMAIN).any()


def test_output_flags_on_the_median_sigma():
    sigma = np.array([[0.05, 0.05, 0.5], [0.2, 0.2, 0.01]])
    flags = output_flags(sigma, thresholds=FlagThresholds(max_sigma=0.1))
    np.testing.assert_array_equal(flags, [0, int(Flag.UNCERTAIN)])


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_masked_fraction": 1.5},
        {"min_snr": -1.0},
        {"max_sigma": np.nan},
        {"teff_range": (9000.0, 5000.0)},
    ],
)
def test_bad_thresholds_are_refused(kwargs):
    with pytest.raises(ValueError):
        FlagThresholds(**kwargs)


def test_domain_flags_use_the_estimate_only_where_the_catalogue_teff_is_not_finite():
    thresholds = FlagThresholds(domain_teff_range=(4750.0, 10250.0), max_domain_chi2=3.0)
    estimate = np.array([4000.0, 6000.0, 6000.0, 12000.0, np.nan, 4000.0])
    chi2 = np.array([1.0, 1.0, 5.0, 1.0, np.nan, 1.0])
    flags = domain_flags(estimate, chi2, thresholds=thresholds)
    np.testing.assert_array_equal(flags & Flag.OUTSIDE_DOMAIN != 0, [True, False, True, True, False, True])
    # a finite catalogue teff decides for its star (input_flags), the estimate only for the NaN ones
    catalogue = np.array([6000.0, np.nan, np.nan, 7000.0, np.nan, np.nan])
    flags = domain_flags(estimate, chi2, teff=catalogue, thresholds=thresholds)
    np.testing.assert_array_equal(flags & Flag.OUTSIDE_DOMAIN != 0, [False, False, True, False, False, True])


def test_thresholds_check_and_round_trip_the_domain_settings():
    t = FlagThresholds(domain_teff_range=(4500.0, 11000.0), max_domain_chi2=2.5, domain_error_floor=0.02)
    assert FlagThresholds.from_dict(t.as_dict()) == t
    with pytest.raises(ValueError, match="domain_teff_range"):
        FlagThresholds(domain_teff_range=(9000.0, 5000.0))
    with pytest.raises(ValueError, match="max_domain_chi2"):
        FlagThresholds(max_domain_chi2=-1.0)
