"""Wavelength grids, bands and pixel geometry (all wavelengths vacuum Angstrom).

The grids are the normative ones of ``DESIGN.md``:

* ``INPUT_WAVE``: 2238 px, ``4000 * exp(i / 4000)``, the LAMOST-like R=2000 input of
  UaRA-net (2 px per resolution element);
* ``OUTPUT_WAVE``: 574 px, ``2500 * exp(j / 400)``, the CSST-like R=200 output;
* ``LAMOST_WAVE``: the LAMOST LRS grid, ``log10(lambda) = 3.5682 + 1e-4 * i``, 3909 px
  (3700-9100 A), as in LAMOST DR files (header COEFF0 / COEFF1).
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "BANDS",
    "INPUT_WAVE",
    "LAMOST_WAVE",
    "OUTPUT_WAVE",
    "SCALE_WINDOW",
    "band_pixels",
    "ln_step",
    "log_wave_grid",
    "pixel_edges",
]


def log_wave_grid(start: float, n_pixel: int, *, ln_step: float) -> np.ndarray:
    """Logarithmic grid ``start * exp(i * ln_step)``, ``i = 0 .. n_pixel - 1`` (float64)."""
    if start <= 0 or n_pixel < 2 or ln_step <= 0:
        raise ValueError(
            f"log_wave_grid needs start > 0, n_pixel >= 2, ln_step > 0; got {start}, {n_pixel}, {ln_step}"
        )
    return start * np.exp(np.arange(n_pixel) * ln_step)


def _read_only(a: np.ndarray) -> np.ndarray:
    a.setflags(write=False)
    return a


INPUT_WAVE = _read_only(log_wave_grid(4000.0, 2238, ln_step=1.0 / 4000.0))
OUTPUT_WAVE = _read_only(log_wave_grid(2500.0, 574, ln_step=1.0 / 400.0))
LAMOST_WAVE = _read_only(10.0 ** (3.5682 + 1e-4 * np.arange(3909)))

#: Window (vacuum A, inclusive) whose mean output flux scales every SED (paper Sect. 2.1).
SCALE_WINDOW = (5526.0, 5586.0)

#: CSST slitless bands (vacuum A, inclusive, overlapping as in paper Sect. 1).
BANDS = {"GU": (2550.0, 4200.0), "GV": (4000.0, 6500.0), "GI": (6200.0, 10000.0)}


def band_pixels(wave: np.ndarray, band: str | tuple[float, float]) -> np.ndarray:
    """Boolean selection of the pixels of ``wave`` inside a band (name or (lo, hi) in A)."""
    lo, hi = BANDS[band] if isinstance(band, str) else band
    wave = np.asarray(wave)
    return (wave >= lo) & (wave <= hi)


def ln_step(wave: np.ndarray, *, rtol: float = 1e-6) -> float | None:
    """The constant ``d ln(lambda)`` of a log-uniform 1-D grid, or ``None`` if it is not one."""
    wave = np.asarray(wave, dtype=np.float64)
    if wave.ndim != 1 or wave.size < 2:
        return None
    d = np.diff(np.log(wave))
    step = float(np.mean(d))
    if step > 0 and np.all(np.abs(d - step) <= rtol * step):
        return step
    return None


def pixel_edges(wave: np.ndarray) -> np.ndarray:
    """Pixel edges (..., n + 1) from pixel centres (..., n).

    Inner edges are the geometric means of neighbouring centres (midpoints in ln lambda,
    exact for logarithmic grids); the outer edges extend the first and last half-pixel.
    """
    lw = np.log(np.asarray(wave, dtype=np.float64))
    mid = 0.5 * (lw[..., 1:] + lw[..., :-1])
    first = 2.0 * lw[..., :1] - mid[..., :1]
    last = 2.0 * lw[..., -1:] - mid[..., -1:]
    return np.exp(np.concatenate([first, mid, last], axis=-1))
