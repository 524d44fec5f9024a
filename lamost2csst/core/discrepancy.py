"""Model discrepancy: the part of a real star's SED error that the network's own sigma does not know.

The network's sigma is aleatoric: it describes the noise of the input and what the synthetic
library leaves undetermined, not how real stars differ from the synthetic ones. Like The
Cannon's per-pixel model variance, the total relative uncertainty of a predicted SED pixel is

    sigma_total(lambda)**2 = (a(lambda) * sigma_net)**2 + b(lambda)**2,    a >= 1, b >= 0,

with ``a`` and ``b`` fitted by maximum likelihood to out-of-fold residuals of real stars
(:func:`fit_discrepancy`). ``a >= 1`` means the network's sigma is never shrunk, so the added
part ``sigma_sys = sqrt(sigma_total**2 - sigma_net**2)`` is real: ``sigma_total = hypot(sigma_net,
sigma_sys)``. Where no real library covers a pixel, ``a`` and ``b`` are a stated, conservative
extrapolation (``fitted`` is False there).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from lamost2csst.core.grids import OUTPUT_WAVE

__all__ = ["ModelDiscrepancy"]


@dataclass(frozen=True)
class ModelDiscrepancy:
    """Per output pixel: the scale ``a`` of the network's sigma and the added floor ``b``.

    Attributes
    ----------
    scale : ndarray (n_pixel,)
        ``a(lambda) >= 1``.
    floor : ndarray (n_pixel,)
        ``b(lambda) >= 0`` (relative flux).
    fitted : ndarray of bool (n_pixel,)
        True where fitted on real-star residuals, False where extrapolated.
    provenance : dict
        How it was fitted (libraries, stars, folds, the extrapolation rule).
    """

    scale: np.ndarray
    floor: np.ndarray
    fitted: np.ndarray
    provenance: dict = field(default_factory=dict)

    def __post_init__(self):
        scale = np.asarray(self.scale, dtype=np.float64)
        floor = np.asarray(self.floor, dtype=np.float64)
        fitted = np.asarray(self.fitted, dtype=bool)
        if not (scale.ndim == 1 and scale.shape == floor.shape == fitted.shape):
            raise ValueError(
                f"scale {scale.shape}, floor {floor.shape}, fitted {fitted.shape}: need one 1-D shape"
            )
        if not (np.all(np.isfinite(scale)) and np.all(np.isfinite(floor))):
            raise ValueError("scale and floor must be finite at every pixel")
        if np.any(scale < 1) or np.any(floor < 0):
            raise ValueError("need scale >= 1 (the network's sigma is never shrunk) and floor >= 0")
        object.__setattr__(self, "scale", scale)
        object.__setattr__(self, "floor", floor)
        object.__setattr__(self, "fitted", fitted)

    @classmethod
    def none(cls, n_pixel: int = OUTPUT_WAVE.size) -> ModelDiscrepancy:
        """No discrepancy: ``sigma_total == sigma_net`` (a model without a fitted one)."""
        return cls(np.ones(n_pixel), np.zeros(n_pixel), np.zeros(n_pixel, bool), {"kind": "none"})

    def sigma_parts(self, sigma_net) -> tuple[np.ndarray, np.ndarray]:
        """``(sigma_total, sigma_sys)`` for network sigmas ``(n_star, n_pixel)``; float32 like the input.

        ``sigma_total = hypot(sigma_net, sigma_sys)``; NaN in ``sigma_net`` stays NaN.
        """
        sigma_net = np.asarray(sigma_net)
        if sigma_net.shape[-1] != self.scale.size:
            raise ValueError(f"sigma_net has {sigma_net.shape[-1]} pixels, the discrepancy {self.scale.size}")
        net = sigma_net.astype(np.float64)
        total = np.sqrt((self.scale * net) ** 2 + self.floor**2)
        sys = np.sqrt(np.maximum(total**2 - net**2, 0.0))
        dtype = sigma_net.dtype if np.issubdtype(sigma_net.dtype, np.floating) else np.float64
        return total.astype(dtype), sys.astype(dtype)

    def to_dict(self) -> dict:
        """JSON-ready: lists of floats (rounded to 6 significant digits) and the provenance."""
        return {
            "scale": [float(f"{v:.6g}") for v in self.scale],
            "floor": [float(f"{v:.6g}") for v in self.floor],
            "fitted": [bool(v) for v in self.fitted],
            "provenance": self.provenance,
        }

    @classmethod
    def from_dict(cls, d: dict) -> ModelDiscrepancy:
        """Inverse of :meth:`to_dict`; a clear error for a malformed entry."""
        missing = {"scale", "floor", "fitted"} - set(d)
        if missing:
            raise ValueError(f"model discrepancy entry lacks {sorted(missing)}")
        return cls(
            np.asarray(d["scale"]), np.asarray(d["floor"]), np.asarray(d["fitted"]), d.get("provenance", {})
        )
