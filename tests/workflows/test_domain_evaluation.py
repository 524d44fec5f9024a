"""The domain check's evaluation: the threshold scan on hand-made estimates, the report's tables."""

import numpy as np
import pytest

from lamost2csst.workflows.domain_evaluation import SCAN_HIGH, SCAN_LOW, _scan, domain_markdown


def test_the_scan_counts_flagged_stars_per_candidate_range():
    raw = {
        # in-domain estimates: one at 4800 K (flagged only by low = 4875), one at 9950 K (by high < 9950)
        ("domain", 20.0): (np.array([4800.0, 6000.0, 9950.0, 7000.0]), np.ones(4)),
        ("domain", 10.0): (np.array([3000.0, 3000.0]), np.ones(2)),  # S/N 10: not in the in-domain rate
        # must-flag stars: one at 10100 K escapes every high >= 10125; one fits badly (chi2 5 > 3)
        ("outside", 20.0): (np.array([4000.0, 10100.0, 13000.0, 7000.0]), np.array([1.0, 1.0, 1.0, 5.0])),
        ("outside", 50.0): (np.array([4000.0, 12000.0]), np.ones(2)),
    }
    rows = {(r["low"], r["high"]): r for r in _scan(raw, max_chi2=3.0)}
    assert set(rows) == {(lo, hi) for lo in SCAN_LOW for hi in SCAN_HIGH}
    assert rows[4875.0, 9875.0]["flagged_domain_worst"] == pytest.approx(0.5)
    assert rows[4750.0, 10000.0]["flagged_domain_worst"] == pytest.approx(0.0)
    assert rows[4750.0, 9875.0]["flagged_domain_worst"] == pytest.approx(0.25)
    assert rows[4950.0, 9800.0]["flagged_domain_worst"] == pytest.approx(0.5)
    assert rows[4750.0, 10000.0]["flagged_outside_worst"] == pytest.approx(1.0)
    assert rows[4750.0, 10250.0]["flagged_outside_worst"] == pytest.approx(0.75)


def test_the_report_names_the_thresholds_and_every_table():
    per_teff = {"4000": {"n": 10, "flagged": 1.0, "teff_median": 4010.0, "chi2_median": 0.7}}
    result = {
        "thresholds": {
            "domain_teff_range": [4750, 10000],
            "max_domain_chi2": 3.0,
            "domain_error_floor": 0.01,
        },
        "templates": {"grid_models": 1518},
        "grid_test": {
            "20": {
                "n_domain": 880,
                "flagged_domain": 0.003,
                "teff_domain": {"bias": 0.0001, "scatter": 0.009, "rms": 0.02},
                "within_1sigma_domain": 0.7,
                "flagged_4750": 0.9,
            }
        },
        "outside_test": {"20": {"n_must": 280, "flagged_must": 0.97, "per_teff": per_teff}},
        "scan": [
            {"low": 4750.0, "high": 10000.0, "flagged_domain_worst": 0.004, "flagged_outside_worst": 0.96}
        ],
    }
    text = domain_markdown(result)
    assert "outside 4750-10000 K" in text and "> 3" in text
    assert "| 20 | 880 | 0.3 % | +0.0001 | 0.0090 | 0.0200 | 0.70 | 90.0 % | – |" in text
    assert "| 4000 | 100.0 % (4010 K) |" in text and "**97.0 %**" in text
    assert "| 4750 | 10000 | 0.4 % | 96.0 % |" in text
