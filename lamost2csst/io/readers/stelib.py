"""STELIB stellar library (Le Borgne et al. 2003; v3.2 FITS as distributed).

Layout: a 1-D float32 primary image with a linear AIR wavelength WCS (``CRVAL1``,
``CDELT1`` or ``CD1_1``, ``CRPIX1``): 6700 px of ~1 A from ~3200 A, but **each star has
its own CRVAL1 (3196-3204 A) and CDELT1 (0.9988-1.0013 A)** in the 255 files of the
MaNGA DAP copy. Flux in ``BUNIT`` (erg/s/cm2/A); pixels without data are exactly 0
(ends of the range, gaps) and are masked. Spectra are in the rest frame (checked:
line positions do not follow the header RADVEL, which reaches +-360 km/s). Resolution
~3.4 A FWHM (the MaNGA DAP's value for this library). No per-pixel uncertainties.

Header keys read into per-star coords (``'-'`` or blank = unknown -> NaN; magnitudes
-99 -> NaN): TEFF, LOG_G, FE_H, SPECTYPE, U, B, V, R (Johnson/Cousins), RADVEL (km/s),
STARIDEN (star name; the file stem is used when absent). A combined ``UBVR`` key is not
present in these files.

Because the native grids differ, several stars can be returned together only on a
common grid: pass ``wave=`` (flux-conserving rebinning) or get a :class:`ReaderError`
naming the first file whose grid differs. One file alone is returned on its native grid.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import xarray as xr

from lamost2csst.io.readers._common import (
    MAX_BYTES,
    Headers,
    ReaderError,
    Star,
    air_attrs,
    as_paths,
    assemble,
    central_resolution,
    file_stem,
    hdu_array,
    linear_wave,
    load_fits,
    vacuum,
)
from lamost2csst.io.readers.miles import read_each, skip_other_grids, with_mask_reason

__all__ = ["STELIB_FWHM", "STELIB_WAVE", "read_stelib"]

STELIB_FWHM = 3.4  #: Angstrom (MaNGA DAP ``stelib.ini``; Le Borgne et al. quote ~3 A)
#: A common vacuum grid for all STELIB stars: 3201-9900 A, 1 A/px (the nominal 3200-9899 A
#: air range of STELIB, in vacuum).
STELIB_WAVE = 3201.0 + np.arange(6700, dtype=np.float64)
STELIB_WAVE.setflags(write=False)
_MAGS = {"mag_u": "U", "mag_b": "B", "mag_v": "V", "mag_r": "R"}


def _magnitude(hdr: Headers, key: str) -> float:
    value = hdr.float(key)
    return math.nan if value <= -90 else value  # -99 = unknown


def _read_star(path: Path, max_bytes: int) -> tuple[Star, str]:
    hdul = load_fits(path, max_bytes=max_bytes)
    data = hdu_array(hdul, 0, path)
    if data is None or data.size == 0:
        raise ReaderError(path, "the primary HDU has no data; a STELIB file is a 1-D primary image")
    if data.squeeze().ndim != 1:
        raise ReaderError(path, f"primary image has shape {data.shape}; a STELIB spectrum is 1-D")
    data = data.squeeze()
    hdr = Headers(path, hdul[0].header)
    wave_air = linear_wave(hdr, data.size)
    flux = data.astype(np.float64)
    coords = {
        "name": hdr.str("STARIDEN", "OBJECT") or file_stem(path),
        "spectype": hdr.str("SPECTYPE"),
        "teff": hdr.float("TEFF"),
        "logg": hdr.float("LOG_G"),
        "feh": hdr.float("FE_H"),
        "radvel": hdr.float("RADVEL"),
    }
    mags = {name: _magnitude(hdr, key) for name, key in _MAGS.items()}
    if all(v == 0.0 for v in mags.values()):  # 58 files carry U = B = V = R = 0.0: unknown
        mags = dict.fromkeys(mags, math.nan)
    coords.update(mags)
    return Star(
        path=path,
        wave=vacuum(wave_air),
        flux=flux,
        mask=~np.isfinite(flux) | (flux <= 0),
        coords=coords,
    ), hdr.str("BUNIT")


def read_stelib(
    path_or_paths,
    *,
    wave=None,
    max_bytes: int = MAX_BYTES,
    source: str = "STELIB stellar library",
    on_error: str = "raise",
) -> xr.Dataset:
    """Read STELIB FITS spectra (one or many) into one catalogue Dataset.

    Parameters
    ----------
    path_or_paths : str, Path or iterable of them
        STELIB 1-D FITS files.
    wave : array_like, optional
        Vacuum grid to resample onto (flux-conserving), e.g. :data:`STELIB_WAVE`. Needed
        for several files whose native grids differ (all of STELIB v3.2).
    max_bytes : int
        Largest decompressed data size accepted per file.
    source : str
        Free-text provenance stored in ``attrs["source"]``.
    on_error : {"raise", "skip"}
        "skip": a file that cannot be read (corrupt, truncated, not a STELIB file, a
        non-numeric TEFF, or, without ``wave``, a native grid other than the first file's)
        is left out and listed as ``"<path>: <problem>"`` in ``attrs["unreadable_files"]``.

    Returns
    -------
    xarray.Dataset
        Schema ``lamost2csst.spectra/1``: vacuum wavelengths, frame ``"rest"``, z = 0,
        ``obsid`` = file order (0, 1, ...); coords name, spectype, teff, logg, feh,
        alpha (NaN), radvel, mag_u, mag_b, mag_v, mag_r, file. ``mask`` = flux <= 0 or not
        finite in the file (or, resampled, not covered), ``mask_reason`` says which (bits
        of :mod:`lamost2csst.io.readers.miles`); ``ivar`` = 0 (no uncertainties, see
        ``attrs["ivar_note"]``); ``attrs["unreadable_files"]`` as above.

    Raises
    ------
    ReaderError
        Unreadable, corrupt or truncated file; not a 1-D image; missing CRVAL1/CDELT1;
        non-monotonic wavelengths; non-numeric TEFF/LOG_G/FE_H other than '-'; grids
        that differ while ``wave`` is None (with ``on_error="skip"``: only when no file
        can be read).
    """
    paths = as_paths(path_or_paths)
    read, skipped = read_each(paths, lambda p: _read_star(p, max_bytes), on_error=on_error)
    stars = [r[0] for r in read]
    if wave is None and on_error == "skip":
        stars = skip_other_grids(stars, skipped)
    grid = stars[0].wave if wave is None else np.asarray(wave, dtype=np.float64)
    flux_unit = read[0][1] or "erg s-1 cm-2 A-1"
    ds = assemble(
        stars,
        wave=wave,
        resolution=central_resolution(grid, STELIB_FWHM),
        frame="rest",
        flux_unit=flux_unit,
        source=source,
        attrs={
            **air_attrs(),
            "format": (
                "STELIB FITS: 1-D primary image, linear air wavelengths (CRVAL1/CDELT1/CRPIX1) per star"
            ),
            "format_version": "STELIB v3.2",
            "reader": "lamost2csst.io.readers.stelib.read_stelib",
            "fwhm_angstrom": STELIB_FWHM,
            "resolution_note": f"FWHM ~{STELIB_FWHM} A; attrs['resolution'] is lambda/FWHM at the grid's "
            "geometric centre only",
            "mask_rule": "flux <= 0 (no data) or not finite (which: mask_reason)",
            "unreadable_files": skipped,
        },
    )
    return with_mask_reason(ds, stars, resampled=wave is not None)
