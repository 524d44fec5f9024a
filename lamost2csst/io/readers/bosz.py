"""BOSZ synthetic spectra (Bohlin et al. 2017, AJ 153, 234; the 2017 ATLAS9 grid at MAST).

Two formats of the same content are read:

FITS (``.fits``)
    HDU 1 a binary table, one row per pixel (one row of array cells is accepted too),
    columns ``Wavelength`` (A), ``SpecificIntensity``, ``Continuum`` (case-insensitive).
ASCII (``.asc.bz2``, or uncompressed ``.asc``)
    Three whitespace-separated columns, same order and meaning, no header line.

Assumptions (not checkable here, no BOSZ file is reachable from this machine):

* the second column is the disk-averaged specific intensity H_lambda (per steradian)
  and the surface flux is ``F = pi * H`` (DESIGN.md; STScI's own tools multiply by pi
  too), so ``flux = pi * SpecificIntensity`` and ``continuum = pi * Continuum``, in
  erg s-1 cm-2 A-1 at the stellar surface;
* wavelengths are VACUUM (ATLAS9/SYNTHE compute in vacuum, and the grid was made to be
  compared with HST/STIS spectra, which are vacuum). Pass ``medium="air"`` if a file
  turns out to be in air: it is then converted and recorded.

Parameters come from the file name, as documented by MAST and the appendix of Bohlin et
al. 2017, e.g. ``amp00cp00op00t5750g45v20modrt0b2000rs.fits``:

====================  =====================================================
``am`` + ``p00``      [M/H]: sign ``p``/``m``, two digits = 10 |[M/H]| with the
                      decimals dropped (m03 = -0.25, m08 = -0.75, p05 = +0.5):
                      the value is the multiple of 0.25 nearest to digits/10
``c`` + ``p00``       [C/M], same coding
``o`` + ``p00``       [alpha/M], same coding
``t5750``             Teff = 5750 K
``g45``               log g = 4.5 (digits / 10)
``v20``               microturbulence 2.0 km/s (digits / 10)
``mod``               literal
``rt0``               rotational broadening 0 km/s (optional)
``b2000``             instrumental resolving power R = 2000 (the file's resolution)
``rs``                literal ("resampled"), optional
====================  =====================================================

The brief this reader was written from calls ``r`` the resolution; in the MAST names
``rt`` is the rotation and ``b`` the resolving power, which is what is parsed here.
"""

from __future__ import annotations

import io
import math
import re
from pathlib import Path

import numpy as np
import xarray as xr

from lamost2csst.io.readers._common import (
    MAX_BYTES,
    ReaderError,
    Star,
    air_attrs,
    as_paths,
    assemble,
    check_file,
    check_wave,
    file_stem,
    load_fits,
    load_text,
    table_columns,
    vacuum,
)

__all__ = ["parse_bosz_name", "read_bosz"]

_NAME = re.compile(
    r"^am(?P<m>[pm]\d{2})c(?P<c>[pm]\d{2})o(?P<o>[pm]\d{2})t(?P<t>\d{3,6})g(?P<g>\d{2,3})"
    r"v(?P<v>\d{1,3})(?:mod)?(?:rt(?P<rt>\d+))?b(?P<b>\d+)(?:rs)?$"
)
_COLUMNS = ("Wavelength", "SpecificIntensity", "Continuum")


def _abundance(code: str) -> float:
    sign = -1.0 if code[0] == "m" else 1.0
    return sign * round(int(code[1:]) / 10 * 4) / 4


def parse_bosz_name(path) -> dict[str, float]:
    """Parameters of a BOSZ file from its name (see the module docstring).

    Returns
    -------
    dict
        ``feh`` ([M/H]), ``c_m``, ``alpha`` ([alpha/M]), ``teff``, ``logg``, ``vturb``
        (km/s), ``vrot`` (km/s; NaN if absent), ``resolution`` (R).

    Raises
    ------
    ReaderError
        The name does not follow the convention.
    """
    stem = file_stem(path)
    m = _NAME.match(stem)
    if not m:
        raise ReaderError(
            path,
            f"cannot read BOSZ parameters from the file name {stem!r}: expected e.g. "
            "'amp00cp00op00t5750g45v20modrt0b2000rs' "
            "(am[pm]NN c[pm]NN o[pm]NN tTEFF gNN vNN [mod][rtN] bR [rs])",
        )
    return {
        "feh": _abundance(m["m"]),
        "c_m": _abundance(m["c"]),
        "alpha": _abundance(m["o"]),
        "teff": float(m["t"]),
        "logg": int(m["g"]) / 10,
        "vturb": int(m["v"]) / 10,
        "vrot": float(m["rt"]) if m["rt"] is not None else math.nan,
        "resolution": float(m["b"]),
    }


def _columns_from_text(path: Path, max_bytes: int) -> dict[str, np.ndarray]:
    text = load_text(path, max_bytes=max_bytes)
    try:
        table = np.loadtxt(io.BytesIO(text), dtype=np.float64, ndmin=2)
    except ValueError as err:
        raise ReaderError(path, f"not a BOSZ ASCII table (3 numeric columns): {err}") from err
    if table.shape[1] != 3:
        raise ReaderError(
            path, f"BOSZ ASCII table has {table.shape[1]} columns, expected 3 ({', '.join(_COLUMNS)})"
        )
    if table.shape[0] < 2:
        raise ReaderError(path, "BOSZ ASCII table holds fewer than 2 pixels")
    return dict(zip(_COLUMNS, table.T))


def _is_fits(path: Path) -> bool:
    name = path.name.lower()
    if name.endswith((".asc", ".asc.bz2", ".asc.gz", ".txt", ".txt.bz2", ".txt.gz")):
        return False
    return True


def _read_star(path: Path, medium: str, max_bytes: int) -> tuple[Star, float, str]:
    path = check_file(path)
    params = parse_bosz_name(path)
    if _is_fits(path):
        cols = table_columns(load_fits(path, max_bytes=max_bytes), 1, _COLUMNS, path, what="a BOSZ FITS file")
        fmt = "fits"
    else:
        cols = _columns_from_text(path, max_bytes)
        fmt = "ascii"
    wave = check_wave(cols["Wavelength"], path)
    if medium == "air":
        wave = vacuum(wave)
    flux = np.pi * cols["SpecificIntensity"]
    continuum = np.pi * cols["Continuum"]
    resolution = params.pop("resolution")
    star = Star(
        path=path,
        wave=wave,
        flux=flux,
        mask=~np.isfinite(flux) | (flux < 0),
        coords={"name": file_stem(path), **params},
        extra={"continuum": continuum},
    )
    return star, resolution, fmt


def read_bosz(path_or_paths, *, medium: str = "vacuum", wave=None, max_bytes: int = MAX_BYTES) -> xr.Dataset:
    """Read BOSZ model spectra (FITS or ASCII, one or many) into one catalogue Dataset.

    Parameters
    ----------
    path_or_paths : str, Path or iterable of them
        BOSZ files named by the MAST convention (parameters are read from the name).
    medium : {"vacuum", "air"}
        Medium of the files' wavelengths (vacuum assumed, see the module docstring).
    wave : array_like, optional
        Vacuum grid to resample onto (flux-conserving); by default the native grid,
        which all files must then share (same resolution and range).
    max_bytes : int
        Largest decompressed data size accepted per file.

    Returns
    -------
    xarray.Dataset
        Schema ``lamost2csst.spectra/1``: frame ``"rest"``, z = 0, ``obsid`` = file order;
        ``flux`` = pi x SpecificIntensity (surface flux, erg s-1 cm-2 A-1), extra data
        variable ``continuum`` (same units); coords name, teff, logg, feh ([M/H]), alpha
        ([alpha/M]), c_m ([C/M]), vturb, vrot, file. ``resolution`` = the name's ``b``
        value. Noise-free models: ``ivar`` = 0 and ``mask`` only where flux is not finite
        or negative (see ``attrs["ivar_note"]``).

    Raises
    ------
    ReaderError
        Unparsable file name, corrupt/truncated file, missing columns, non-monotonic
        wavelengths, files of different resolution or grids (without ``wave``).
    """
    if medium not in ("vacuum", "air"):
        raise ValueError(f"medium must be 'vacuum' or 'air', got {medium!r}")
    paths = as_paths(path_or_paths)
    stars, resolutions, formats = zip(*(_read_star(p, medium, max_bytes) for p in paths))
    for p, r in zip(paths, resolutions):
        if r != resolutions[0]:
            raise ReaderError(
                p, f"resolution b{r:g} differs from b{resolutions[0]:g} of {paths[0]}; read them separately"
            )
    attrs = {
        "format": "BOSZ " + " and ".join(sorted(set(formats))) + ": Wavelength, SpecificIntensity, Continuum",
        "format_version": "BOSZ 2017 (Bohlin et al. 2017, ATLAS9)",
        "reader": "lamost2csst.io.readers.bosz.read_bosz",
        "flux_conversion": "flux = pi * SpecificIntensity (surface flux); continuum likewise",
        "medium_assumed": medium,
        "mask_rule": "flux not finite or negative",
    }
    if medium == "air":
        attrs.update(air_attrs())
    return assemble(
        list(stars),
        wave=wave,
        resolution=resolutions[0],
        frame="rest",
        flux_unit="erg s-1 cm-2 A-1",
        source=f"BOSZ model spectra, {len(paths)} file(s) (paths in coordinate 'file')",
        attrs=attrs,
        extra_attrs={
            "continuum": {"long_name": "model continuum flux (pi x Continuum)", "units": "erg s-1 cm-2 A-1"}
        },
    )
