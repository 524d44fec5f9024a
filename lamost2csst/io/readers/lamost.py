"""LAMOST low-resolution (LRS) spectra: FITS files of DR1-7 and of later releases.

Two layouts are read (gzipped or not; the compression is sniffed from the bytes):

``image`` (DR1-7)
    Primary HDU holds a float32 image of shape (5, N): rows flux, ivar, wavelength
    (vacuum A), andmask, ormask. Header keys in the primary header.
``table`` (DR8 and later)
    Primary HDU without data; HDU 1 a binary table of one row whose cells are arrays:
    columns FLUX, IVAR, WAVELENGTH, ANDMASK, ORMASK (case-insensitive; extra columns
    such as NORMALIZATION are ignored). Header keys are looked up in the primary header,
    then in HDU 1's.

Header keys: OBSID, RA, DEC, Z (required: a file without them is refused); Z_ERR, the
band S/N ``SNRU SNRG SNRR SNRI SNRZ`` (older files: ``SN_U SN_G ...``), CLASS, SUBCLASS,
DATA_V (optional; NaN or ''). LAMOST writes -9999 for "no value": Z <= -1 and negative
S/N become NaN.

**One common grid.** Every LAMOST LRS file samples ``log10(lambda) = COEFF0 + COEFF1 * i``
with ``COEFF1 = 1e-4``; COEFF0 may differ between files by whole pixels. Each file is
placed on :data:`lamost2csst.core.LAMOST_WAVE` (``3.5682 + 1e-4 i``, 3909 px) by an
integer pixel offset: grid pixels the file does not cover are padded (``mask=True``,
``ivar=0``, flux NaN) and file pixels outside the common grid are dropped. A file
whose COEFF0 is not a whole number of pixels away (within :data:`OFFSET_TOLERANCE_PX` =
1e-6 px), or whose COEFF1 differs from 1e-4 by enough to drift 1e-6 px over the
spectrum, is refused. Without COEFF0/COEFF1 in the header they are inferred from the
(float32) wavelength array, which cannot be trusted better than
:data:`INFERRED_TOLERANCE_PX` = 0.01 px, so that tolerance applies then. The wavelength
array must agree with COEFF0/COEFF1 within 0.01 px everywhere (float32 storage) and be
strictly increasing.

Wavelengths are vacuum (header ``VACUUM = T``); a file with ``VACUUM = F`` is refused.

Masks: ``mask = ANDMASK != 0 | ivar <= 0 | flux or ivar not finite``; ``ivar`` is set
to 0 where it is negative or not finite, and flux is kept as read.
"""

from __future__ import annotations

import math

import numpy as np
import xarray as xr

from lamost2csst.core import LAMOST_WAVE
from lamost2csst.io.readers._common import (
    MAX_BYTES,
    Headers,
    ReaderError,
    as_paths,
    check_wave,
    hdu_array,
    load_fits,
    table_columns,
    to_object_strings,
)
from lamost2csst.io.spectra import spectra_dataset

__all__ = ["LAMOST_COEFF0", "LAMOST_COEFF1", "lamost_dataset", "read_lamost", "read_lamost_file"]

LAMOST_COEFF0 = 3.5682  #: log10 of the first pixel of LAMOST_WAVE
LAMOST_COEFF1 = 1e-4  #: log10 step of every LAMOST LRS file
#: Largest distance (in pixels) of a header COEFF0 from a whole-pixel offset.
OFFSET_TOLERANCE_PX = 1e-6
#: The same when COEFF0 / COEFF1 have to be inferred from float32 wavelengths.
INFERRED_TOLERANCE_PX = 0.01
#: Largest disagreement between the wavelength array and COEFF0/COEFF1, in pixels.
WAVE_ARRAY_TOLERANCE_PX = 0.01
RESOLUTION = 1800.0
FLUX_UNIT = "relative (LAMOST relative flux calibration)"
_ROWS = ("FLUX", "IVAR", "WAVELENGTH", "ANDMASK", "ORMASK")
_SNR_KEYS = {
    "snr_u": ("SNRU", "SN_U"),
    "snr_g": ("SNRG", "SN_G"),
    "snr_r": ("SNRR", "SN_R"),
    "snr_i": ("SNRI", "SN_I"),
    "snr_z": ("SNRZ", "SN_Z"),
}


def _arrays(hdul, path):
    """(layout, dict of the five 1-D arrays, list of headers) of one LAMOST file."""
    primary = hdu_array(hdul, 0, path)
    if primary is not None and primary.size:
        if primary.ndim != 2 or primary.shape[0] != 5:
            raise ReaderError(
                path,
                f"primary image has shape {primary.shape}; the LAMOST DR1-7 layout is (5, N): "
                "rows flux, ivar, wavelength, andmask, ormask",
            )
        if primary.shape[1] < 2:
            raise ReaderError(path, f"primary image has only {primary.shape[1]} pixel(s)")
        rows = {name: primary[i].astype(np.float64) for i, name in enumerate(_ROWS)}
        return "image", rows, [hdul[0].header]
    if len(hdul) < 2:
        raise ReaderError(
            path, "no spectrum: the primary HDU has no data and there is no HDU 1 (binary table layout)"
        )
    cols = table_columns(hdul, 1, _ROWS, path, what="the LAMOST binary-table layout")
    return "table", cols, [hdul[0].header, hdul[1].header]


def _offset(hdr: Headers, wave: np.ndarray) -> int:
    """Whole-pixel offset of a file's first pixel on LAMOST_WAVE (checks of the module doc)."""
    n = wave.size
    i = np.arange(n)
    lw = np.log10(wave)
    c0, c1 = hdr.float("COEFF0"), hdr.float("COEFF1")
    inferred = math.isnan(c0) or math.isnan(c1)
    if inferred:
        c1 = float(np.polyfit(i, lw, 1)[0]) if math.isnan(c1) else c1
        c0 = float(np.mean(lw - c1 * i)) if math.isnan(c0) else c0
    tol = INFERRED_TOLERANCE_PX if inferred else OFFSET_TOLERANCE_PX
    how = "inferred from the wavelength array" if inferred else "from the header"
    drift = abs(c1 - LAMOST_COEFF1) * (n - 1) / LAMOST_COEFF1
    if not math.isfinite(drift) or drift > tol:
        raise ReaderError(
            hdr.path,
            f"log10 dispersion COEFF1 = {c1!r} ({how}) is not the LAMOST 1e-4: "
            f"its pixels drift {drift:.3g} px from the common LAMOST grid (tolerance {tol:g} px)",
        )
    dev = np.max(np.abs(lw - (c0 + c1 * i))) / LAMOST_COEFF1
    if dev > WAVE_ARRAY_TOLERANCE_PX:
        raise ReaderError(
            hdr.path,
            f"wavelength array disagrees with COEFF0 = {c0!r}, COEFF1 = {c1!r} by up to {dev:.3g} px "
            f"(tolerance {WAVE_ARRAY_TOLERANCE_PX} px)",
        )
    offset = (c0 - LAMOST_COEFF0) / LAMOST_COEFF1
    k = round(offset)
    if abs(offset - k) > tol:
        raise ReaderError(
            hdr.path,
            f"COEFF0 = {c0!r} ({how}) puts its first pixel {offset:.6f} px from the first pixel "
            f"of the common LAMOST grid (log10 = {LAMOST_COEFF0}), not a whole number of pixels "
            f"(tolerance {tol:g} px); "
            "it cannot be mapped without resampling",
        )
    return int(k)


def _read_one(path, max_bytes: int) -> dict:
    hdul = load_fits(path, max_bytes=max_bytes)
    layout, a, headers = _arrays(hdul, path)
    hdr = Headers(path, *headers)
    if hdr.raw("VACUUM")[1] is False:
        raise ReaderError(
            path, "header says VACUUM = F (air wavelengths); LAMOST LRS files are read as vacuum only"
        )
    wave = check_wave(a["WAVELENGTH"], path)
    k = _offset(hdr, wave)
    n_grid = LAMOST_WAVE.size
    lo, hi = max(0, k), min(n_grid, k + wave.size)
    if hi <= lo:
        raise ReaderError(path, f"no pixel falls on the common LAMOST grid (offset {k} px, {wave.size} px)")
    src = slice(lo - k, hi - k)
    flux = np.full(n_grid, np.nan, np.float32)
    ivar = np.zeros(n_grid, np.float32)
    mask = np.ones(n_grid, bool)
    f, iv, am = a["FLUX"][src], a["IVAR"][src], a["ANDMASK"][src]
    finite_iv = np.isfinite(iv)
    flux[lo:hi] = f
    ivar[lo:hi] = np.where(finite_iv & (iv > 0), iv, 0.0)
    mask[lo:hi] = ~np.isfinite(f) | ~finite_iv | (iv <= 0) | ~np.isfinite(am) | (am != 0)
    andmask = np.full(n_grid, -1, np.int64)
    ormask = np.full(n_grid, -1, np.int64)
    om = a["ORMASK"][src]
    andmask[lo:hi] = np.where(np.isfinite(am), am, -1).astype(np.int64)
    ormask[lo:hi] = np.where(np.isfinite(om), om, -1).astype(np.int64)

    ra, dec = hdr.float("RA", required=True), hdr.float("DEC", required=True)
    if not (math.isfinite(ra) and math.isfinite(dec)):
        raise ReaderError(path, f"non-finite RA/DEC ({ra}, {dec})")
    z = hdr.float("Z", required=True)
    out = {
        "layout": layout,
        "obsid": hdr.int("OBSID"),
        "ra": ra,
        "dec": dec,
        "z": z if z > -1 else math.nan,
        "z_err": hdr.float("Z_ERR"),
        "class": hdr.str("CLASS"),
        "subclass": hdr.str("SUBCLASS"),
        "data_release": hdr.str("DATA_V"),
        "flux": flux,
        "ivar": ivar,
        "mask": mask,
        "andmask": andmask,
        "ormask": ormask,
    }
    if out["z_err"] < 0:
        out["z_err"] = math.nan
    for name, keys in _SNR_KEYS.items():
        value = hdr.float(*keys)
        out[name] = value if value >= 0 else math.nan
    return out


def _check_unique_obsid(paths: list, obsid: np.ndarray) -> None:
    """Refuse two files with one OBSID (naming the second file and the first).

    Parameters
    ----------
    paths : list of Path
        The files, in reading order.
    obsid : numpy.ndarray
        Their OBSIDs (int64), one per file.

    Raises
    ------
    ReaderError
        An OBSID occurs in more than one file.
    """
    uniq, first_index, counts = np.unique(obsid, return_index=True, return_counts=True)
    if np.any(counts > 1):
        dup = uniq[counts > 1][0]
        files = [str(p) for p, o in zip(paths, obsid) if o == dup]
        raise ReaderError(files[1], f"OBSID {dup} also in {files[0]}: OBSIDs must be unique")


def _lamost_coords(rows: list[dict], paths: list) -> dict:
    """Per-star coordinates besides obsid, ra, dec, z: z_err, snr_*, teff..alpha (NaN), strings, file.

    Parameters
    ----------
    rows : list of dict
        The files' contents, as :func:`_read_one` returns them.
    paths : list of Path
        The files.

    Returns
    -------
    dict
        Name -> per-star array.
    """
    n = len(rows)
    coords = {name: np.array([r[name] for r in rows], dtype=np.float64) for name in ("z_err", *_SNR_KEYS)}
    coords.update(
        {
            "teff": np.full(n, np.nan),
            "logg": np.full(n, np.nan),
            "feh": np.full(n, np.nan),
            "alpha": np.full(n, np.nan),
        }
    )
    for name in ("class", "subclass", "data_release"):
        coords[name] = to_object_strings([r[name] for r in rows])
    coords["file"] = to_object_strings([str(p) for p in paths])
    return coords


def _lamost_attrs(layouts: list[str]) -> dict:
    """The catalogue attrs of LAMOST files of the given layouts (``"image"``, ``"table"``).

    Parameters
    ----------
    layouts : list of str
        The layouts read, sorted.

    Returns
    -------
    dict
    """
    layout_text = {
        "image": "DR1-7 image layout (5, N) in the primary HDU",
        "table": "binary-table layout (one row of array columns in HDU 1)",
    }
    return {
        "format": "LAMOST LRS FITS, " + "; ".join(layout_text[x] for x in layouts),
        "format_version": "LAMOST DR release per star in coordinate 'data_release' (header DATA_V)",
        "reader": "lamost2csst.io.readers.lamost.read_lamost",
        "wave_grid": "LAMOST_WAVE: log10(lambda) = 3.5682 + 1e-4 i, i = 0..3908; "
        "files placed by whole-pixel offset",
        "mask_rule": "ANDMASK != 0 | ivar <= 0 | non-finite flux or ivar | pixel not covered by the file",
    }


def read_lamost(path_or_paths, *, bitmasks: bool = False, max_bytes: int = MAX_BYTES) -> xr.Dataset:
    """Read LAMOST LRS FITS files (both layouts) onto the common LAMOST grid.

    Parameters
    ----------
    path_or_paths : str, Path or iterable of them
        One file or many; layouts may be mixed.
    bitmasks : bool
        Also return the ``andmask`` and ``ormask`` bit masks (int64, -1 on padded pixels).
    max_bytes : int
        Largest decompressed data size accepted per file (see ``_common.MAX_BYTES``).

    Returns
    -------
    xarray.Dataset
        Catalogue schema ``lamost2csst.spectra/1`` on ``LAMOST_WAVE`` (vacuum A), frame
        ``"observed"``, resolution 1800; per-star coords obsid, ra, dec, z, z_err,
        snr_u..snr_z, class, subclass, data_release (LAMOST DATA_V), file; teff, logg,
        feh, alpha are NaN (not in LRS files). attrs ``format`` names the layout(s).

    Raises
    ------
    ReaderError
        A file is missing, corrupt, truncated, too large, of another layout, lacks a
        required header key, has non-monotonic wavelengths or cannot be put on the common
        grid by a whole-pixel offset; or two files share an OBSID. The message names
        the file.
    """
    paths = as_paths(path_or_paths)
    return lamost_dataset([_read_one(p, max_bytes) for p in paths], paths, bitmasks=bitmasks)


def read_lamost_file(path, *, max_bytes: int = MAX_BYTES) -> dict:
    """One LAMOST LRS file read onto the common grid, not yet a Dataset (see :func:`lamost_dataset`).

    For callers that read many files and must tell the unreadable ones apart
    (``lamost2csst.parallel.ingest``): each file is read once, and the readable ones are then
    made into one Dataset, the same one :func:`read_lamost` returns for them.

    Parameters
    ----------
    path : str or Path
        One file.
    max_bytes : int
        Largest decompressed data size accepted (see ``_common.MAX_BYTES``).

    Returns
    -------
    dict
        The header values (``obsid``, ``ra``, ``dec``, ``z``, ``z_err``, ``snr_u``..``snr_z``,
        ``class``, ``subclass``, ``data_release``), ``layout``, and the arrays ``flux``,
        ``ivar`` (float32), ``mask`` (bool), ``andmask``, ``ormask`` (int64) on ``LAMOST_WAVE``.

    Raises
    ------
    ReaderError
        As :func:`read_lamost`, for this file.
    """
    return _read_one(as_paths(path)[0], max_bytes)


def lamost_dataset(rows: list[dict], paths, *, bitmasks: bool = False) -> xr.Dataset:
    """The catalogue Dataset of files read by :func:`read_lamost_file` (what :func:`read_lamost` returns).

    Parameters
    ----------
    rows : list of dict
        :func:`read_lamost_file` of each file, in order (at least one).
    paths : list of str or Path
        The files (coordinate ``file``).
    bitmasks : bool
        Also the ``andmask`` and ``ormask`` bit masks.

    Returns
    -------
    xarray.Dataset
        As :func:`read_lamost`.

    Raises
    ------
    ReaderError
        Two files share an OBSID.
    """
    paths = as_paths(paths)
    obsid = np.array([r["obsid"] for r in rows], dtype=np.int64)
    _check_unique_obsid(paths, obsid)
    layouts = sorted({r["layout"] for r in rows})
    n = len(rows)

    def col(name, dtype=np.float64):
        return np.array([r[name] for r in rows], dtype=dtype)

    coords = _lamost_coords(rows, paths)
    ds = spectra_dataset(
        wave=LAMOST_WAVE,
        flux=np.stack([r["flux"] for r in rows]),
        ivar=np.stack([r["ivar"] for r in rows]),
        mask=np.stack([r["mask"] for r in rows]),
        obsid=obsid,
        ra=col("ra"),
        dec=col("dec"),
        z=col("z"),
        resolution=RESOLUTION,
        frame="observed",
        flux_unit=FLUX_UNIT,
        source=f"LAMOST LRS FITS, {n} file(s) (paths in coordinate 'file')",
        **coords,
    )
    if bitmasks:
        ds["andmask"] = (
            ("star", "wave"),
            np.stack([r["andmask"] for r in rows]),
            {"long_name": "LAMOST ANDMASK"},
        )
        ds["ormask"] = (
            ("star", "wave"),
            np.stack([r["ormask"] for r in rows]),
            {"long_name": "LAMOST ORMASK"},
        )
    ds.attrs.update(_lamost_attrs(layouts))
    return ds
