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

from lamost2csst.core import resample
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

__all__ = [
    "MASK_NONFINITE",
    "MASK_NONPOSITIVE",
    "MASK_NO_DATA",
    "MILES_FWHM",
    "miles_number",
    "read_miles",
    "read_miles_params",
]

MILES_FWHM = 2.5  #: Angstrom, constant over the MILES range
_NUMBER = re.compile(r"(?:^|_)[ms](\d{4})V?$")
#: Entries of MILES_params.db / paramsMILES_v9.1.txt whose MILES number is misprinted.
#: ``022.`` is HD 044691A, the only entry without a spectrum of its own while
#: ``m0221V`` is the only spectrum without an entry; that spectrum is A-type as the
#: entry's 7950 K says. So ``022.`` is read as 221.
NUMBER_FIXES = {"022.": 221}

# --------------------------------------------- shared by the library readers (MILES, STELIB, NGSL)

#: Bits of the ``mask_reason`` data variable of the library readers: why a pixel is masked
#: (0 on unmasked pixels). The value in the file was not finite ...
MASK_NONFINITE = 1
#: ... or <= 0 (STELIB marks pixels without data by 0) ...
MASK_NONPOSITIVE = 2
#: ... or there is no value: outside the file's wavelength grid after resampling, or flagged
#: bad by the file itself (NGSL: STAT_ERR not finite or <= 0).
MASK_NO_DATA = 4
MASK_REASON_ATTRS = {
    "long_name": "why a pixel is masked (bits; 0 = not masked)",
    "flag_masks": [MASK_NONFINITE, MASK_NONPOSITIVE, MASK_NO_DATA],
    "flag_meanings": "nonfinite_in_file nonpositive_in_file no_data",
}
ON_ERROR = ("raise", "skip")


def read_each(paths, read_one, *, on_error: str) -> tuple[list, list[str]]:
    """``read_one(path)`` for every path; with ``on_error="skip"`` unreadable files are listed, not raised.

    Parameters
    ----------
    paths : list of Path
        The files.
    read_one : callable
        Reads one file; raises :class:`ReaderError` when it cannot.
    on_error : {"raise", "skip"}
        "raise": the first :class:`ReaderError` propagates. "skip": it is recorded as
        ``"<path>: <problem>"`` and the next file is read.

    Returns
    -------
    results : list
        ``read_one``'s results of the files read, in file order.
    skipped : list of str
        ``"<path>: <problem>"`` of each file skipped.

    Raises
    ------
    ReaderError
        With "skip", when no file at all could be read.
    """
    if on_error not in ON_ERROR:
        raise ValueError(f"on_error must be one of {ON_ERROR}, got {on_error!r}")
    results, skipped = [], []
    for path in paths:
        try:
            results.append(read_one(path))
        except ReaderError as err:
            if on_error == "raise":
                raise
            skipped.append(str(err))
    if not results:
        raise ReaderError(paths[0], f"none of the {len(paths)} files can be read: " + "; ".join(skipped[:3]))
    return results, skipped


def skip_other_grids(stars: list[Star], skipped: list[str]) -> list[Star]:
    """The stars on the native grid most of them share; the others are added to ``skipped``.

    Raises
    ------
    ReaderError
        No grid is shared by more than half of the stars: they need ``wave=`` (a common grid).
    """
    keys = [(s.wave.size, s.wave.tobytes()) for s in stars]
    common = max(keys, key=keys.count)  # the first of the most frequent
    if 2 * keys.count(common) <= len(stars) and len(stars) > 1:
        other = next(s for s, k in zip(stars, keys) if k != keys[0])
        raise ReaderError(
            other.path,
            f"its wavelength grid differs from that of {stars[0].path}, and no grid is shared by most of "
            f"the {len(stars)} files: pass wave=<common vacuum grid> to resample them (flux-conserving)",
        )
    keep = []
    for star, key in zip(stars, keys):
        if key == common:
            keep.append(star)
        else:
            skipped.append(
                f"{star.path}: its wavelength grid ({star.wave.size} px, {star.wave[0]:.3f}-"
                f"{star.wave[-1]:.3f} A) differs from that of the other files; pass wave=<common vacuum grid>"
            )
    return keep


def _native_reasons(star: Star) -> np.ndarray:
    """``mask_reason`` bits of one star on its native grid (from the file's values and mask)."""
    flux = star.flux
    code = np.where(np.isfinite(flux), np.where(flux <= 0, MASK_NONPOSITIVE, 0), MASK_NONFINITE)
    code = np.where(star.mask, code, 0).astype(np.uint8)
    code[star.mask & (code == 0)] = MASK_NO_DATA
    return code


def with_mask_reason(ds: xr.Dataset, stars: list[Star], *, resampled: bool) -> xr.Dataset:
    """``ds`` (assembled from ``stars``) with data variable ``mask_reason`` (uint8 bits, star x wave).

    On a resampled grid an output pixel gets a bit when it overlaps a native pixel with
    that bit; masked output pixels without any (not covered by the star's grid) get
    :data:`MASK_NO_DATA`. Unmasked pixels are 0.
    """
    mask = ds["mask"].values
    if not resampled:
        code = np.stack([_native_reasons(s) for s in stars])
    else:
        grid = ds["wave"].values
        code = np.zeros(mask.shape, np.uint8)
        for i, star in enumerate(stars):
            native = _native_reasons(star)
            for bit in (MASK_NONFINITE, MASK_NONPOSITIVE, MASK_NO_DATA):
                hit = (native & bit) != 0
                if hit.any():
                    overlap = resample(star.wave, hit.astype(np.float64), wave_out=grid, method="flux").flux
                    code[i] |= np.where(overlap > 0, bit, 0).astype(np.uint8)
        code = np.where(mask, code, 0).astype(np.uint8)
        code[mask & (code == 0)] = MASK_NO_DATA
    ds["mask_reason"] = (("star", "wave"), code, dict(MASK_REASON_ATTRS))
    return ds


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
    on_error: str = "raise",
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
    on_error : {"raise", "skip"}
        "skip": a file that cannot be read (corrupt, truncated, not a MILES file, a FWHM or,
        without ``wave``, a native grid other than the first file's) is left out and listed
        as ``"<path>: <problem>"`` in ``attrs["unreadable_files"]`` instead of raising.

    Returns
    -------
    xarray.Dataset
        Schema ``lamost2csst.spectra/1``: vacuum wavelengths, frame ``"rest"``, ``z = 0``;
        ``obsid`` = MILES number (0, 1, ... in file order when a name has none or
        numbers repeat); coords name, teff, logg, feh, alpha (NaN), file. ``mask`` = flux <= 0 or
        not finite, and ``mask_reason`` says which (bits :data:`MASK_NONFINITE`,
        :data:`MASK_NONPOSITIVE`, :data:`MASK_NO_DATA`); the flux keeps the file's values on
        the native grid. ``ivar`` = 0 (no uncertainties, see ``attrs["ivar_note"]``).
        ``attrs["unreadable_files"]``: the files skipped (empty unless ``on_error="skip"``).

    Raises
    ------
    ReaderError
        Unreadable, corrupt or truncated file; not a 1-D image; missing CRVAL1/CDELT1;
        non-monotonic wavelengths; grids or FWHMs that differ while ``wave`` is None (with
        ``on_error="skip"``: only when no file can be read).
    """
    paths = as_paths(path_or_paths)
    read, skipped = read_each(paths, lambda p: _read_star(p, max_bytes, params), on_error=on_error)
    fwhm = read[0][2]
    for star, _, f in read:
        if f != fwhm:
            problem = f"FWHM {f} A differs from the {fwhm} A of {read[0][0].path}; read them separately"
            if on_error == "raise":
                raise ReaderError(star.path, problem)
            skipped.append(f"{star.path}: {problem}")
    read = [r for r in read if r[2] == fwhm]
    stars = [r[0] for r in read]
    if wave is None and on_error == "skip":
        kept = {id(s) for s in skip_other_grids(stars, skipped)}
        read = [r for r in read if id(r[0]) in kept]
        stars = [r[0] for r in read]
    numbers = [r[1] for r in read]
    known = None not in numbers and len(set(numbers)) == len(numbers)
    obsid = np.array(numbers, dtype=np.int64) if known else None
    grid = stars[0].wave if wave is None else np.asarray(wave, dtype=np.float64)
    ds = assemble(
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
            "mask_rule": "flux <= 0 or not finite (which: mask_reason)",
            "unreadable_files": skipped,
        },
    )
    return with_mask_reason(ds, stars, resampled=wave is not None)
