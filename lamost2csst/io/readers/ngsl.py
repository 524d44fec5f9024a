"""NGSL, the HST/STIS Next Generation Spectral Library, version 2 (Heap & Lindler 2016).

Layout: ``h_stis_ngsl_<star>_v2.fits``; HDU 1 a binary table with columns
``WAVELENGTH`` (A), ``FLUX``, ``STAT_ERR``, ``SYS_ERR`` (flux units, erg s-1 cm-2 A-1
unless the table's TUNIT says otherwise), one row per pixel (one row of array cells is
accepted too). About 0.18-1.02 micron from three STIS gratings (G230LB, G430L, G750L)
merged, resolving power ~1000 (500-1000 depending on grating and wavelength).

Assumptions:

* wavelengths are VACUUM: the spectra are calibrated by CALSTIS, whose wavelengths are
  vacuum, and the NGSL products do not convert them (users such as Koleva & Vazdekis
  2012 convert NGSL from vacuum to air themselves). ``medium="air"`` converts instead;
* the spectra are not shifted to the rest frame (radial velocities are not removed),
  so ``frame = "observed"``; the radial velocity is not in the file, so ``z = 0``.

``ivar = 1 / STAT_ERR**2`` (statistical error only); ``SYS_ERR`` is kept as data
variable ``sys_err``. Masked: flux not finite, STAT_ERR not finite or <= 0.
Stellar parameters are not in the files: pass ``params`` (star name -> dict with any of
teff, logg, feh, alpha). The star name is ``<star>`` of the file name (else the stem),
lower-cased; header TARGNAME, when present, goes to coordinate ``targname``.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import xarray as xr

from lamost2csst.io.readers._common import (
    MAX_BYTES,
    Headers,
    Star,
    air_attrs,
    as_paths,
    assemble,
    check_wave,
    file_stem,
    load_fits,
    table_columns,
    vacuum,
)
from lamost2csst.io.readers.miles import read_each, skip_other_grids, with_mask_reason

__all__ = ["NGSL_RESOLUTION", "ngsl_star_name", "read_ngsl"]

NGSL_RESOLUTION = 1000.0  #: approximate resolving power of the STIS low-resolution gratings
_COLUMNS = ("WAVELENGTH", "FLUX", "STAT_ERR", "SYS_ERR")
_NAME = re.compile(r"^h_stis_ngsl_(?P<star>.+)_v2$", re.IGNORECASE)


def ngsl_star_name(path) -> str:
    """``<star>`` of ``h_stis_ngsl_<star>_v2.fits`` (lower case), else the file stem."""
    stem = file_stem(path)
    m = _NAME.match(stem)
    return (m["star"] if m else stem).lower()


def _read_star(path: Path, medium: str, params, max_bytes: int) -> tuple[Star, str]:
    hdul = load_fits(path, max_bytes=max_bytes)
    cols = table_columns(hdul, 1, _COLUMNS, path, what="an NGSL v2 file")
    hdr = Headers(path, hdul[0].header, hdul[1].header)
    wave = check_wave(cols["WAVELENGTH"], path)
    if medium == "air":
        wave = vacuum(wave)
    flux, stat, sys_err = cols["FLUX"], cols["STAT_ERR"], cols["SYS_ERR"]
    good_err = np.isfinite(stat) & (stat > 0)
    mask = ~np.isfinite(flux) | ~good_err
    ivar = np.where(good_err & ~mask, 1.0 / np.where(good_err, stat, 1.0) ** 2, 0.0)
    name = ngsl_star_name(path)
    p = (params or {}).get(name, {})
    unit = ""
    columns = hdul[1].columns
    for c in columns:
        if c.name.upper() == "FLUX" and c.unit:
            unit = str(c.unit).strip()
    star = Star(
        path=path,
        wave=wave,
        flux=flux,
        mask=mask,
        ivar=ivar,
        coords={
            "name": name,
            "targname": hdr.str("TARGNAME"),
            **{k: float(p.get(k, math.nan)) for k in ("teff", "logg", "feh", "alpha")},
        },
        extra={"sys_err": sys_err},
    )
    return star, unit


def read_ngsl(
    path_or_paths,
    *,
    params=None,
    medium: str = "vacuum",
    wave=None,
    max_bytes: int = MAX_BYTES,
    on_error: str = "raise",
) -> xr.Dataset:
    """Read NGSL v2 spectra (one or many) into one catalogue Dataset.

    Parameters
    ----------
    path_or_paths : str, Path or iterable of them
        ``h_stis_ngsl_<star>_v2.fits`` files.
    params : mapping, optional
        Star name (as :func:`ngsl_star_name` gives it) -> mapping with any of teff,
        logg, feh, alpha; missing values are NaN.
    medium : {"vacuum", "air"}
        Medium of the files' wavelengths (vacuum assumed, see the module docstring).
    wave : array_like, optional
        Vacuum grid to resample onto (flux-conserving; ``ivar`` propagated, ``sys_err``
        rebinned like the flux). By default the native grid, which all files must share.
    max_bytes : int
        Largest decompressed data size accepted per file.
    on_error : {"raise", "skip"}
        "skip": a file that cannot be read (corrupt, missing columns, or, without ``wave``,
        a native grid other than the first file's) is left out and listed as
        ``"<path>: <problem>"`` in ``attrs["unreadable_files"]`` instead of raising.

    Returns
    -------
    xarray.Dataset
        Schema ``lamost2csst.spectra/1``, frame ``"observed"`` with z = 0 (radial
        velocity unknown), resolution 1000 (approximate), ``obsid`` = file order;
        coords name, targname, teff, logg, feh, alpha, file; data variables ``sys_err`` and
        ``mask_reason`` (why a pixel is masked: bits of :mod:`lamost2csst.io.readers.miles`;
        a bad STAT_ERR is ``MASK_NO_DATA``); ``attrs["unreadable_files"]`` as above.

    Raises
    ------
    ReaderError
        Corrupt/truncated file, no binary table or missing columns, non-monotonic
        wavelengths, grids that differ while ``wave`` is None (with ``on_error="skip"``:
        only when no file can be read).
    """
    if medium not in ("vacuum", "air"):
        raise ValueError(f"medium must be 'vacuum' or 'air', got {medium!r}")
    paths = as_paths(path_or_paths)
    read, skipped = read_each(paths, lambda p: _read_star(p, medium, params, max_bytes), on_error=on_error)
    stars = [r[0] for r in read]
    if wave is None and on_error == "skip":
        stars = skip_other_grids(stars, skipped)
    unit = next((u for _, u in read if u), "erg s-1 cm-2 A-1")
    attrs = {
        "format": "NGSL v2 FITS: HDU 1 binary table WAVELENGTH, FLUX, STAT_ERR, SYS_ERR",
        "format_version": "NGSL v2 (Heap & Lindler 2016)",
        "reader": "lamost2csst.io.readers.ngsl.read_ngsl",
        "medium_assumed": medium,
        "frame_note": "radial velocities are not removed in NGSL and not in the files: z = 0",
        "resolution_note": "STIS G230LB/G430L/G750L: R ~ 500-1000; attrs['resolution'] is nominal",
        "ivar_source": "1 / STAT_ERR**2 (statistical only); SYS_ERR in data variable sys_err",
        "mask_rule": "flux not finite, or STAT_ERR not finite or <= 0 (which: mask_reason)",
        "unreadable_files": skipped,
    }
    if medium == "air":
        attrs.update(air_attrs())
    ds = assemble(
        stars,
        wave=wave,
        resolution=NGSL_RESOLUTION,
        frame="observed",
        flux_unit=unit,
        source=f"NGSL v2, {len(paths)} file(s) (paths in coordinate 'file')",
        attrs=attrs,
        extra_attrs={"sys_err": {"long_name": "systematic flux error (NGSL SYS_ERR)", "units": unit}},
    )
    return with_mask_reason(ds, stars, resampled=wave is not None)
