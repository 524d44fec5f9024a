"""Training pairs of UaRA-net: normalized noisy inputs on INPUT_WAVE, scaled SEDs on OUTPUT_WAVE.

One code path for every library (paper Sects. 2.1-2.3):

1. :func:`library_to_grids` takes spectra at their own resolution and sampling to the two
   grids of the network: the clean input at R=2000 on ``INPUT_WAVE`` and the target at
   R=200 on ``OUTPUT_WAVE``, scaled at 5526-5586 A. Pixels where the library does not
   cover the line-spread kernel (coverage below :data:`MIN_COVERAGE`) are masked: a
   library that does not span 2500-10500 A gets a target mask.
2. :func:`make_pairs` adds Eq. 1 noise at a given SNR to the clean input (before the
   normalization, as in the paper) and normalizes it (Sect. 2.1).

The synthetic grid ships ``flux_in`` and ``sed`` already on the two grids and goes
straight to step 2.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from lamost2csst.core.grids import INPUT_WAVE, OUTPUT_WAVE
from lamost2csst.core.lsf import degradation_operator, degrade
from lamost2csst.core.noise import add_noise
from lamost2csst.core.normalization import normalize
from lamost2csst.core.sed import SCALE_PIXELS, scale_sed

__all__ = ["MIN_COVERAGE", "GriddedLibrary", "TrainingPairs", "library_to_grids", "make_pairs"]

#: Output pixels whose Gaussian kernel lies less than this fraction inside the library's
#: coverage are masked (0.997 = the kernel's +-3 sigma core).
MIN_COVERAGE = 0.997
INPUT_RESOLUTION = 2000.0
OUTPUT_RESOLUTION = 200.0


class GriddedLibrary(NamedTuple):
    """Clean library spectra on the network's grids, one row per star; masks True where undefined.

    The one type of a training or evaluation library (``lamost2csst.nn.training.LibraryArrays``
    is this class): :func:`library_to_grids` fills the arrays and ``input_coarser``; a
    training library adds each star's ``teff`` and, for training through the LAMOST input
    path, its clean spectrum on ``LAMOST_WAVE``. ``len(lib)`` counts stars and
    :meth:`take` selects stars (``input_coarser``, one value per input pixel, is kept).
    """

    flux_in: np.ndarray  # (n, 2238) at R=2000 on INPUT_WAVE, not normalized
    input_mask: np.ndarray
    sed: np.ndarray  # (n, 574) at R=200 on OUTPUT_WAVE, scaled
    target_mask: np.ndarray
    teff: np.ndarray | None = None  # (n,)
    flux_lamost: np.ndarray | None = None  # (n, 3909) clean on LAMOST_WAVE (training input_path="lamost")
    input_coarser: np.ndarray | None = None  # (2238,) the library is coarser than R=2000 there (not masked)

    def take(self, index) -> GriddedLibrary:
        """The stars ``index`` (an index array, a boolean mask or a slice) of this library."""
        return GriddedLibrary(
            **{
                name: value if value is None or name == "input_coarser" else value[index]
                for name, value in zip(self._fields, self)
            }
        )

    def replace(self, **changes) -> GriddedLibrary:
        """A copy with the fields ``changes`` replaced (the tuple's ``_replace`` fails: len() is n_star)."""
        return GriddedLibrary(**{**dict(zip(self._fields, self)), **changes})

    def __len__(self) -> int:
        return self.flux_in.shape[0]


class TrainingPairs(NamedTuple):
    """What UaRA-net consumes: normalized noisy input with its error, and the target."""

    flux: np.ndarray  # (n, 2238) normalized, NaN where input_mask
    error: np.ndarray  # (n, 2238) normalized 1-sigma error, NaN where input_mask
    input_mask: np.ndarray
    sed: np.ndarray  # (n, 574) scaled target, NaN where target_mask
    target_mask: np.ndarray


def library_to_grids(
    wave, flux, *, mask=None, input_resolution=None, input_fwhm=None, inputs: bool = True
) -> GriddedLibrary:
    """Degrade library spectra (n, n_pixel) on ``wave`` to the network's input and target grids.

    Parameters
    ----------
    wave : array_like, (n_pixel,)
        Rest-frame vacuum wavelengths of the library (A).
    flux : array_like, (n, n_pixel)
        Flux densities (any units: the target is scaled, the input normalized).
    mask : array_like of bool, optional
        True where the library has no usable value.
    input_resolution, input_fwhm : float, optional
        The library's resolving power, or its constant line-spread FWHM in A (MILES
        2.5 A); neither for model spectra. See :func:`~lamost2csst.core.lsf.degrade`.
    inputs : bool
        False: make the targets only (a library coarser than R=2000, such as NGSL, whose
        inputs come from elsewhere): ``flux_in`` is NaN and ``input_mask`` True everywhere.

    Raises
    ------
    ValueError
        If a spectrum's scaling window (5526-5586 A) is not covered: its SED cannot be
        scaled as the paper's targets are.
    """
    flux = np.asarray(flux)
    options = dict(input_resolution=input_resolution, input_fwhm=input_fwhm)
    op_out = degradation_operator(wave, resolution=OUTPUT_RESOLUTION, wave_out=OUTPUT_WAVE, **options)
    sed = degrade(wave, flux, resolution=OUTPUT_RESOLUTION, wave_out=OUTPUT_WAVE, mask=mask, **options)
    if inputs:
        op_in = degradation_operator(wave, resolution=INPUT_RESOLUTION, wave_out=INPUT_WAVE, **options)
        flux_in = degrade(wave, flux, resolution=INPUT_RESOLUTION, wave_out=INPUT_WAVE, mask=mask, **options)
        input_mask = ~np.isfinite(flux_in) | (op_in.coverage < MIN_COVERAGE)
        coarser = op_in.coarser.copy()
    else:
        dtype = np.result_type(flux, np.float32)
        flux_in = np.full(flux.shape[:-1] + (INPUT_WAVE.size,), np.nan, dtype=dtype)
        input_mask = np.ones(flux_in.shape, bool)
        coarser = np.ones(INPUT_WAVE.size, bool)
    target_mask = ~np.isfinite(sed) | (op_out.coverage < MIN_COVERAGE)
    window_bad = target_mask[..., SCALE_PIXELS].any(axis=-1)
    if np.any(window_bad):
        raise ValueError(
            f"{int(np.sum(window_bad))} spectra do not cover the SED scaling window 5526-5586 A "
            "(or have masked pixels there); drop them before making training pairs"
        )
    sed = scale_sed(np.where(target_mask, 0.0, sed))
    sed = np.where(target_mask, np.nan, sed)
    flux_in = np.where(input_mask, np.nan, flux_in)
    return GriddedLibrary(flux_in, input_mask, sed, target_mask, input_coarser=coarser)


def make_pairs(
    flux_in, sed, *, snr, rng: np.random.Generator, input_mask=None, target_mask=None
) -> TrainingPairs:
    """Noisy normalized inputs and their targets (paper Eq. 1, then Sect. 2.1 normalization).

    Parameters
    ----------
    flux_in : array_like, (n, 2238)
        Clean input spectra at R=2000 on ``INPUT_WAVE`` (not normalized).
    sed : array_like, (n, 574)
        Scaled target SEDs on ``OUTPUT_WAVE``.
    snr : float or array_like (n,)
        Signal-to-noise ratio of each noisy input.
    rng : numpy.random.Generator
        The noise realisation (draw a fresh one per epoch for training).
    input_mask, target_mask : array_like of bool, optional
        Undefined pixels (NaN in ``flux_in`` / ``sed`` must be masked).
    """
    flux_in = np.asarray(flux_in)
    sed = np.asarray(sed)
    finite_in, finite_sed = np.isfinite(flux_in), np.isfinite(sed)
    input_mask = ~finite_in if input_mask is None else np.asarray(input_mask, bool) | ~finite_in
    target_mask = ~finite_sed if target_mask is None else np.asarray(target_mask, bool) | ~finite_sed
    noisy, error = add_noise(np.where(input_mask, 1.0, flux_in).astype(flux_in.dtype), snr=snr, rng=rng)
    norm_flux, norm_error = normalize(noisy, error, mask=input_mask)
    unusable = ~np.isfinite(norm_flux) | ~np.isfinite(norm_error)
    return TrainingPairs(norm_flux, norm_error, unusable, np.where(target_mask, np.nan, sed), target_mask)
