"""Deep-ensemble combination against hand-computed mixture moments."""

import numpy as np
import pytest

from lamost2csst.nn.uncertainty import combine_members


def test_mixture_moments_by_hand():
    seds = np.array([[[1.0, 2.0]], [[3.0, 2.0]]])  # M=2, n=1, m=2
    sigmas = np.array([[[0.1, 0.05]], [[0.1, 0.05]]])
    out = combine_members(seds, sigmas)
    # pixel 0: mu = 2, aleatoric^2 = (0.1^2 * 1 + 0.1^2 * 9)/2 = 0.05, epistemic^2 = 1
    np.testing.assert_allclose(out.sed, [[2.0, 2.0]])
    np.testing.assert_allclose(out.sigma_aleatoric[0, 0], np.sqrt(0.05) / 2, rtol=1e-6)
    np.testing.assert_allclose(out.sigma_epistemic[0, 0], 1.0 / 2, rtol=1e-6)
    np.testing.assert_allclose(out.sigma[0, 0], np.sqrt(1.05) / 2, rtol=1e-6)
    # pixel 1: members agree: no epistemic part, total = aleatoric = 0.05
    np.testing.assert_allclose(out.sigma_epistemic[0, 1], 0.0, atol=1e-7)
    np.testing.assert_allclose(out.sigma[0, 1], 0.05, rtol=1e-6)


def test_predict_ensemble_of_two_networks_with_known_outputs():
    pytest.importorskip("tensorflow")
    from lamost2csst.nn.model import build_uaranet
    from lamost2csst.nn.uncertainty import predict_ensemble

    a = build_uaranet(sed_bias=np.full(574, 1.0), sigma_init=0.02)
    b = build_uaranet(sed_bias=np.full(574, 1.2), sigma_init=0.02)
    out = predict_ensemble(np.ones((3, 2238)), np.full((3, 2238), 0.02), models=[a, b])
    np.testing.assert_allclose(out.sed, 1.1, rtol=1e-5)
    np.testing.assert_allclose(out.sigma_epistemic, 0.1 / 1.1, rtol=1e-4)
    with pytest.raises(ValueError, match="at least 2"):
        predict_ensemble(np.ones((1, 2238)), np.ones((1, 2238)), models=[a])


def test_shape_mismatch_refused():
    with pytest.raises(ValueError, match="must both be"):
        combine_members(np.ones((2, 1, 3)), np.ones((2, 1, 4)))
