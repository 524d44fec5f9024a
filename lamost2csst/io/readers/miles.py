"""MILES stellar library (Sanchez-Blazquez et al. 2006; v9.1 as distributed in FITS).

Layout: a 1-D primary image, linear AIR wavelengths ``CRVAL1 + CDELT1 (i + 1 - CRPIX1)``
(3540.5-7409.6 A, 0.9 A/px, 4300 px), flux in relative units, constant resolution
FWHM 2.5 A (header ``FWHM`` when present). Spectra are in the rest frame (checked on
the library: Balmer lines of the A/F stars sit at their rest air wavelengths within
~20 km/s). No per-pixel uncertainties.

The reader converts the wavelengths to vacuum (:func:`lamost2csst.core.air_to_vacuum`),
recording ``attrs["original_medium"] = "air"`` and ``attrs["wave_conversion"]``.
Because the schema's ``resolution`` is a resolving power, it holds lambda/FWHM at the
geometric centre of the grid (~2050); the constant FWHM itself is in
``attrs["fwhm_angstrom"]`` -- MILES' R runs from ~1400 (3540 A) to ~3000 (7410 A), so
use the FWHM, not R, to degrade it.

Stellar parameters are not in the files: pass ``params`` (a mapping MILES number ->
(teff, logg, feh)), e.g. from :func:`read_miles_params`. The MILES number comes from the
file name (``..._m0001V.fits`` or ``s0001.fits`` -> 1) and becomes ``obsid``.
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
    ReaderError,
    Star,
    air_attrs,
    as_paths,
    assemble,
    central_resolution,
    check_file,
    file_stem,
    hdu_array,
    linear_wave,
    load_fits,
    vacuum,
)

__all__ = ["MILES_FWHM", "miles_number", "read_miles", "read_miles_params"]

MILES_FWHM = 2.5  #: Angstrom, constant over the MILES range
_NUMBER = re.compile(r"(?:^|_)[ms](\d{4})V?$")
#: Entries of MILES_params.db / paramsMILES_v9.1.txt whose MILES number is misprinted.
#: ``022.`` is HD 044691A, the only entry without a spectrum of its own while
#: ``m0221V`` is the only spectrum without an entry; that spectrum is A-type as the
#: entry's 7950 K says. So ``022.`` is read as 221.
NUMBER_FIXES = {"022.": 221}


def miles_number(path) -> int | None:
    """MILES star number from a file name (``MILES_res2.50_star_m0001V.fits`` -> 1), or None."""
    m = _NUMBER.search(file_stem(path))
    return int(m.group(1)) if m else None


def read_miles_params(path) -> dict[int, tuple[float, float, float]]:
    """Parse MILES stellar parameters: MaNGA DAP's ``MILES_params.db`` format.

    Whitespace-separated text, ``#`` comment lines, four columns: MILES number (4
    digits), Teff (K), log g (dex), [Fe/H] (dex). Unknown values are 99999 (Teff) and
    9999 (log g, [Fe/H]) and become NaN. See :data:`NUMBER_FIXES` for misprinted numbers.

    Returns
    -------
    dict
        MILES number -> (teff, logg, feh).
    """
    path = check_file(path)
    try:
        lines = path.read_text(encoding="ascii").splitlines()
    except UnicodeDecodeError as err:
        raise ReaderError(path, f"not an ASCII parameter file ({err})") from err
    params: dict[int, tuple[float, float, float]] = {}
    for lineno, line in enumerate(lines, 1):
        text = line.split("#", 1)[0].strip()
        if not text:
            continue
        fields = text.split()
        if len(fields) != 4:
            raise ReaderError(
                path, f"line {lineno} has {len(fields)} columns, expected 4 (MILES Teff logg [Fe/H])"
            )
        key = fields[0]
        try:
            number = NUMBER_FIXES[key] if key in NUMBER_FIXES else int(key)
            teff, logg, feh = (float(x) for x in fields[1:])
        except ValueError:
            raise ReaderError(path, f"line {lineno} is not 'number Teff logg [Fe/H]': {line!r}") from None
        if number in params:
            raise ReaderError(path, f"line {lineno}: MILES number {number} appears twice")
        params[number] = (
            math.nan if teff >= 99999 else teff,
            math.nan if logg >= 9999 else logg,
            math.nan if feh >= 9999 else feh,
        )
    if not params:
        raise ReaderError(path, "no parameter lines")
    return params


def _read_star(path: Path, max_bytes: int, params) -> tuple[Star, int | None, float]:
    hdul = load_fits(path, max_bytes=max_bytes)
    data = hdu_array(hdul, 0, path)
    if data is None or data.size == 0:
        raise ReaderError(path, "the primary HDU has no data; a MILES file is a 1-D primary image")
    if data.ndim != 1:
        squeezed = data.squeeze()
        if squeezed.ndim != 1:
            raise ReaderError(path, f"primary image has shape {data.shape}; a MILES spectrum is 1-D")
        data = squeezed
    hdr = Headers(path, hdul[0].header)
    wave_air = linear_wave(hdr, data.size)
    flux = data.astype(np.float64)
    fwhm = hdr.float("FWHM")
    number = miles_number(path)
    unknown = (math.nan,) * 3
    teff, logg, feh = params.get(number, unknown) if params is not None and number is not None else unknown
    star = Star(
        path=path,
        wave=vacuum(wave_air),
        flux=flux,
        mask=~np.isfinite(flux) | (flux <= 0),
        coords={"name": file_stem(path), "teff": teff, "logg": logg, "feh": feh},
    )
    return star, number, MILES_FWHM if math.isnan(fwhm) else fwhm


def read_miles(
    path_or_paths,
    *,
    params=None,
    wave=None,
    max_bytes: int = MAX_BYTES,
    source: str = "MILES stellar library",
) -> xr.Dataset:
    """Read MILES FITS spectra (one or many) into one catalogue Dataset.

    Parameters
    ----------
    path_or_paths : str, Path or iterable of them
        MILES 1-D FITS files.
    params : mapping, optional
        MILES number -> (teff, logg, feh), e.g. :func:`read_miles_params`; stars absent
        from it get NaN.
    wave : array_like, optional
        Vacuum grid to resample onto (flux-conserving). By default each star stays on its
        native grid, and all files must then share it exactly (they do in MILES v9.1).
    max_bytes : int
        Largest decompressed data size accepted per file.
    source : str
        Free-text provenance stored in ``attrs["source"]``.

    Returns
    -------
    xarray.Dataset
        Schema ``lamost2csst.spectra/1``: vacuum wavelengths, frame ``"rest"``, ``z = 0``;
        ``obsid`` = MILES number (0, 1, ... in file order when a name has none or
        numbers repeat); coords name, teff, logg, feh, alpha (NaN), file. ``mask`` = flux <= 0 or
        not finite; ``ivar`` = 0 (no uncertainties, see ``attrs["ivar_note"]``).

    Raises
    ------
    ReaderError
        Unreadable, corrupt or truncated file; not a 1-D image; missing CRVAL1/CDELT1;
        non-monotonic wavelengths; grids that differ while ``wave`` is None.
    """
    paths = as_paths(path_or_paths)
    stars, numbers, fwhms = zip(*(_read_star(p, max_bytes, params) for p in paths))
    stars = list(stars)
    for path, f in zip(paths, fwhms):
        if f != fwhms[0]:
            raise ReaderError(
                path, f"FWHM {f} A differs from the {fwhms[0]} A of {paths[0]}; read them separately"
            )
    fwhm = fwhms[0]
    known = None not in numbers and len(set(numbers)) == len(numbers)
    obsid = np.array(numbers, dtype=np.int64) if known else None
    grid = stars[0].wave if wave is None else np.asarray(wave, dtype=np.float64)
    return assemble(
        stars,
        wave=wave,
        obsid=obsid,
        resolution=central_resolution(grid, fwhm),
        frame="rest",
        flux_unit="relative",
        source=source,
        attrs={
            **air_attrs(),
            "format": "MILES FITS: 1-D primary image, linear air wavelengths (CRVAL1/CDELT1/CRPIX1)",
            "format_version": "MILES v9.1",
            "reader": "lamost2csst.io.readers.miles.read_miles",
            "fwhm_angstrom": float(fwhm),
            "resolution_note": f"constant FWHM {fwhm} A; attrs['resolution'] is lambda/FWHM at the grid's "
            "geometric centre only",
            "mask_rule": "flux <= 0 or not finite",
        },
    )
