"""The slitless observation model: throughput, injected flat, noise."""

import numpy as np
import pytest

from lamost2csst.core import BANDS, OUTPUT_WAVE
from lamost2csst.core.slitless import (
    DETECTOR_SHAPE,
    default_throughput,
    injected_response,
    observe_slitless,
    read_throughput,
)


@pytest.mark.parametrize("band", list(BANDS))
def test_default_throughput_lives_inside_its_band(band):
    t = default_throughput(band)
    lo, hi = BANDS[band]
    inside = (OUTPUT_WAVE >= lo) & (OUTPUT_WAVE <= hi)
    assert (t[~inside] == 0).all() and (t[inside] > 0).all() and t.max() <= 0.5


def test_injected_flat_has_mean_one_and_respects_max_order():
    ny, nx = DETECTOR_SHAPE
    g = np.linspace(0, 1, 201)
    yy, xx = np.meshgrid(g * (ny - 1), g * (nx - 1), indexing="ij")
    flat = injected_response(xx.ravel(), yy.ravel(), band="GV", detector=2)
    # the mean over the detector (a fine grid; trapezoid weights) is 1 at every wavelength
    w = np.outer(np.r_[0.5, np.ones(199), 0.5], np.r_[0.5, np.ones(199), 0.5]).ravel()
    np.testing.assert_allclose((w @ flat) / w.sum(), 1.0, atol=1e-4)
    assert 0.005 < np.std(flat) < 0.05
    plane = injected_response(xx.ravel(), yy.ravel(), band="GV", detector=2, max_order=1)
    # a plane: the centre is exactly 1 and the corners mirror each other
    centre = injected_response([(nx - 1) / 2], [(ny - 1) / 2], band="GV", detector=2, max_order=1)
    np.testing.assert_allclose(centre, 1.0)
    np.testing.assert_allclose(plane[0] + plane[-1], 2.0)
    other = injected_response(xx.ravel()[:5], yy.ravel()[:5], band="GV", detector=3)
    assert not np.allclose(other, flat[:5])


def test_noise_is_photon_plus_read_noise():
    n = 4000
    sed = np.ones((n, OUTPUT_WAVE.size))
    t = default_throughput("GV")
    flux, error = observe_slitless(
        sed,
        scale=np.full(n, 10.0),
        throughput=t,
        flat=np.ones_like(sed),
        exposure=np.full(n, 100.0),
        read_noise=5.0,
        n_read=10,
        rng=np.random.default_rng(0),
    )
    inside = t > 0
    counts = 10.0 * t[inside] * 100.0
    np.testing.assert_allclose(error[0, inside], np.sqrt(counts + 250.0) / 100.0, rtol=1e-5)
    pull = (flux[:, inside] - counts / 100.0) / error[:, inside]
    assert np.std(pull) == pytest.approx(1.0, abs=0.01) and abs(np.mean(pull)) < 0.01
    assert np.isnan(flux[:, ~inside]).all() and np.isnan(error[:, ~inside]).all()


def test_throughput_file(tmp_path):
    path = tmp_path / "t.txt"
    np.savetxt(path, [[4000.0, 0.1], [6500.0, 0.3]])
    t = read_throughput(path)
    assert t[OUTPUT_WAVE < 4000].max() == 0 and t[OUTPUT_WAVE > 6500].max() == 0
    np.testing.assert_allclose(t[(OUTPUT_WAVE > 4000) & (OUTPUT_WAVE < 6500)].max(), 0.3, atol=0.01)
    np.savetxt(path, [[4000.0, 0.1], [3000.0, 0.3]])
    with pytest.raises(ValueError, match="increase"):
        read_throughput(path)
