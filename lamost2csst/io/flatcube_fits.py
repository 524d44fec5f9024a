"""aXe-style FITS export of a flat-field cube (one detector per file).

aXe (and its successors for HST grisms) describe a slitless flat cube as coefficient images
``a_i(x, y)`` of a polynomial in normalized wavelength::

    flat(x, y, lambda) = sum_i a_i(x, y) w^i,    w = (lambda - WMIN) / (WMAX - WMIN)

stored as one image per FITS extension (``a_0`` in the primary HDU, ``a_1`` in extension 1,
...), with ``WMIN`` and ``WMAX`` in the primary header. This module evaluates the cube's
normalized flat (per-wavelength 2D Legendre polynomials) on a pixel grid and fits the
wavelength polynomial per pixel by least squares over the fitted wavelengths of the band.

Full-resolution images of a 9232 x 9216 detector take 340 MB each; ``binning`` writes every
``binning``-th pixel (header ``BINNING``; pixel (j, i) of the image is detector pixel
(j * binning, i * binning)).
"""

from __future__ import annotations

import os

import numpy as np
import xarray as xr
from astropy.io import fits

from lamost2csst.core.flatfield import design_matrix

__all__ = ["export_axe_fits", "export_cube_fits", "read_axe_flat"]


def export_axe_fits(
    cube: xr.Dataset,
    path,
    *,
    band: str,
    detector: int,
    wave_order: int = 3,
    binning: int = 64,
    overwrite: bool = False,
) -> dict:
    """Write the flat of one (band, detector) of ``cube`` as an aXe-style FITS file.

    Returns the header values written and the largest absolute difference between the
    wavelength polynomial and the cube's flat at the fitted wavelengths (the export's own
    approximation error, also in the header as ``MAXDEV``).
    """
    sel = cube.sel(band=band, detector=detector)
    fit = sel["fit"].values
    if fit.sum() < wave_order + 2:
        raise ValueError(
            f"{band} detector {detector}: only {int(fit.sum())} fitted wavelengths; cannot export"
        )
    wave = cube["wave_out"].values[fit]
    coeffs = sel["coeffs"].values[fit]  # (n_wave, n_terms)
    ny, nx = cube.attrs["detector_shape"]
    order = int(cube.attrs["order"])
    ys, xs = np.arange(0, ny, binning), np.arange(0, nx, binning)
    yy, xx = np.meshgrid(ys, xs, indexing="ij")
    a = design_matrix(xx.ravel().astype(float), yy.ravel().astype(float), order=order, shape=(ny, nx))
    flat = (a @ coeffs.T) / coeffs[:, 0][None, :]  # (n_pix, n_wave), mean 1 per wavelength
    wmin, wmax = float(wave.min()), float(wave.max())
    w = (wave - wmin) / (wmax - wmin)
    vander = np.vander(w, wave_order + 1, increasing=True)  # (n_wave, k)
    solution, *_ = np.linalg.lstsq(vander, flat.T, rcond=None)  # (k, n_pix)
    maxdev = float(np.max(np.abs(vander @ solution - flat.T)))
    images = solution.reshape(wave_order + 1, ys.size, xs.size).astype(np.float32)
    header = {
        "WMIN": wmin,
        "WMAX": wmax,
        "BAND": band,
        "DETECTOR": int(detector),
        "BINNING": int(binning),
        "DETNY": int(ny),
        "DETNX": int(nx),
        "WORDER": int(wave_order),
        "MAXDEV": maxdev,
        "ORIGIN": "lamost2csst build_flatcube",
        "FLATNORM": "mean 1 per wavelength over the detector",
    }
    primary = fits.PrimaryHDU(images[0])
    for key, value in header.items():
        primary.header[key] = value
    hdus = [primary] + [fits.ImageHDU(images[i], name=f"COEF{i}") for i in range(1, wave_order + 1)]
    fits.HDUList(hdus).writeto(path, overwrite=overwrite)
    return header


def export_cube_fits(cube_path, fits_dir, *, binning: int = 64, log=None) -> list[str]:
    """Every (band, detector) of the cube at ``cube_path`` as ``fits_dir/flat_<band>_<detector>.fits``.

    A detector that cannot be exported (too few fitted wavelengths) is skipped and reported
    through ``log(message)``, as is the number written. Returns the paths written.
    """
    from lamost2csst.io.flatcube import open_flatcube

    log = log or _quiet
    cube = open_flatcube(cube_path)
    os.makedirs(fits_dir, exist_ok=True)
    written = []
    for band in cube.band.values:
        for det in cube.detector.values:
            path = os.path.join(fits_dir, f"flat_{band}_{int(det)}.fits")
            try:
                export_axe_fits(
                    cube, path, band=str(band), detector=int(det), binning=binning, overwrite=True
                )
            except ValueError as err:
                log(f"no FITS for {band} detector {int(det)}: {err}")
                continue
            written.append(path)
    log(f"{len(written)} aXe-style FITS flats in {fits_dir}")
    return written


def _quiet(message: str) -> None:
    del message


def read_axe_flat(path, x, y, wavelength) -> np.ndarray:
    """The flat of an aXe-style file at detector pixels (x, y) and wavelengths (A): (n_pix, n_wave).

    Pixels are taken from the nearest stored (binned) pixel.
    """
    with fits.open(path) as hdul:
        header = hdul[0].header
        images = [h.data.astype(np.float64) for h in hdul]
    binning = int(header.get("BINNING", 1))
    j = np.clip(np.rint(np.asarray(y) / binning).astype(int), 0, images[0].shape[0] - 1)
    i = np.clip(np.rint(np.asarray(x) / binning).astype(int), 0, images[0].shape[1] - 1)
    w = (np.asarray(wavelength, dtype=np.float64) - header["WMIN"]) / (header["WMAX"] - header["WMIN"])
    return sum(img[j, i][:, None] * w[None, :] ** k for k, img in enumerate(images))
