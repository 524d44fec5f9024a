"""Machinery shared by the readers: bounded file loading, header parsing, assembly.

Every reader goes through :func:`load_fits` or :func:`load_text`, which

* sniff the compression from the first bytes (gzip ``1f 8b``, bzip2 ``BZh``), not from
  the file name;
* refuse a file before reading its data when its headers claim more than ``max_bytes``
  (default :data:`MAX_BYTES`, 256 MiB of decompressed data over all HDUs), so that a
  corrupt or hostile header cannot make a reader allocate absurd amounts of memory;
* raise :class:`ReaderError` (a ``ValueError``) whose message starts with the file path
  and says what is wrong: missing or empty file, not FITS, truncated gzip/bzip2 stream,
  truncated FITS data, corrupt header, too large.

FITS files are pre-scanned block by block (2880 bytes) from the (decompressed) stream:
each header is parsed, its data size computed from BITPIX, NAXISn, PCOUNT and GCOUNT and
checked against the limit, then exactly that many bytes are read. Only then is the
complete, size-checked byte string handed to :mod:`astropy.io.fits`.
"""

from __future__ import annotations

import bz2
import gzip
import io
import math
import re
import warnings
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import xarray as xr
from astropy.io import fits
from astropy.io.fits.verify import VerifyWarning

from lamost2csst.core import air_to_vacuum, resample
from lamost2csst.io.spectra import spectra_dataset

__all__ = ["MAX_BYTES", "ReaderError"]

#: Largest amount of (decompressed) data a reader accepts from one file, in bytes.
MAX_BYTES = 256 * 2**20
#: Most HDUs a FITS file may have.
MAX_HDUS = 64
#: Most 2880-byte blocks one FITS header may span (36 cards each).
MAX_HEADER_BLOCKS = 100

_BLOCK = 2880
_STREAM_ERRORS = (OSError, EOFError, zlib.error, ValueError)
AIR_TO_VACUUM_NOTE = "air_to_vacuum (Morton 2000)"
NO_IVAR_NOTE = (
    "the library gives no per-pixel uncertainties: ivar = 0 everywhere while mask marks only "
    "pixels without data. Core functions read ivar == 0 as 'unusable': pass mask (not ivar) "
    "to them, or set a nominal ivar first."
)
NO_RADEC_NOTE = "sky positions are not read by this reader: ra = dec = 0 (the schema requires finite values)"


class ReaderError(ValueError):
    """A file cannot be read as the expected format.

    The message is ``"<path>: <problem>"``; ``path`` and ``problem`` are attributes too.
    """

    def __init__(self, path, problem: str):
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{path}: {problem}")

    def __reduce__(self):  # picklable (Dask ships exceptions between processes)
        return (type(self), (self.path, self.problem))


# --------------------------------------------------------------------------- files


def check_file(path) -> Path:
    """``path`` as a Path to an existing, non-empty regular file, else :class:`ReaderError`."""
    path = Path(path)
    if not path.exists():
        raise ReaderError(path, "no such file")
    if not path.is_file():
        raise ReaderError(path, "not a regular file")
    if path.stat().st_size == 0:
        raise ReaderError(path, "empty file (0 bytes)")
    return path


def _open_stream(path: Path):
    """Binary stream of the decompressed content and the compression's name (or None)."""
    with open(path, "rb") as f:
        magic = f.read(3)
    if magic[:2] == b"\x1f\x8b":
        return gzip.open(path, "rb"), "gzip"
    if magic == b"BZh":
        return bz2.open(path, "rb"), "bzip2"
    return open(path, "rb"), None


def _read(stream, n: int, path: Path, compression: str | None) -> bytes:
    """Up to ``n`` bytes (fewer only at the end of the stream); stream errors -> ReaderError."""
    chunks, got = [], 0
    try:
        while got < n:
            chunk = stream.read(min(n - got, 1 << 24))
            if not chunk:
                break
            chunks.append(chunk)
            got += len(chunk)
    except _STREAM_ERRORS as err:
        what = f"corrupt or truncated {compression} stream" if compression else "read error"
        raise ReaderError(path, f"{what} ({type(err).__name__}: {err})") from err
    return b"".join(chunks)


def load_text(path, *, max_bytes: int = MAX_BYTES) -> bytes:
    """The (decompressed) bytes of a text file, refusing more than ``max_bytes``."""
    path = check_file(path)
    stream, compression = _open_stream(path)
    with stream:
        data = _read(stream, max_bytes + 1, path, compression)
    if len(data) > max_bytes:
        raise ReaderError(
            path, f"more than {max_bytes} bytes of (decompressed) text; refusing to read it (max_bytes)"
        )
    if not data.strip():
        raise ReaderError(path, "file holds no data")
    return data


def _data_bytes(header: fits.Header, path: Path, index: int) -> int:
    """Size in bytes of an HDU's data as its header claims it (exact integer arithmetic)."""
    try:
        bitpix = int(header["BITPIX"])
        naxis = int(header["NAXIS"])
        if bitpix not in (8, 16, 32, 64, -32, -64):
            raise ValueError(f"BITPIX = {bitpix} is not a FITS value")
        if not 0 <= naxis <= 999:
            raise ValueError(f"NAXIS = {naxis} is outside 0..999")
        dims = [int(header[f"NAXIS{i}"]) for i in range(1, naxis + 1)]
        if any(d < 0 for d in dims):
            raise ValueError(f"negative axis length in {dims}")
        pcount = int(header.get("PCOUNT", 0))
        gcount = int(header.get("GCOUNT", 1))
        if pcount < 0 or gcount < 0:
            raise ValueError(f"PCOUNT = {pcount}, GCOUNT = {gcount}")
    except (KeyError, ValueError, TypeError) as err:
        raise ReaderError(path, f"corrupt header of HDU {index}: {err}") from err
    if naxis == 0:
        return 0
    if header.get("GROUPS") is True and dims[0] == 0:  # random groups
        dims = dims[1:]
    return abs(bitpix) // 8 * gcount * (pcount + math.prod(dims))


def _is_end_card(block: bytes, card: int) -> bool:
    return block[80 * card : 80 * card + 8] == b"END     "


def _check_hdu_start(first: bytes, index: int, path: Path) -> None:
    """Refuse an HDU whose first block starts neither the file (SIMPLE) nor an extension (XTENSION).

    Parameters
    ----------
    first : bytes
        The HDU's first header block (possibly short or empty).
    index : int
        The HDU's index in the file.
    path : Path
        The file (for the message).

    Raises
    ------
    ReaderError
        Not FITS, unexpected bytes after an HDU, or more than ``MAX_HDUS`` HDUs.
    """
    if index == 0 and not first.startswith(b"SIMPLE  ="):
        problem = (
            "empty after decompression" if not first else "not a FITS file (no SIMPLE card at its start)"
        )
        raise ReaderError(path, problem)
    if index > 0 and not first.startswith(b"XTENSION="):
        raise ReaderError(path, f"unexpected bytes after HDU {index - 1} (neither an extension nor padding)")
    if index == MAX_HDUS:
        raise ReaderError(path, f"more than {MAX_HDUS} HDUs")


def _read_header(stream, first: bytes, *, index: int, path: Path, compression: str | None):
    """``(raw, header)``: the raw header blocks of HDU ``index`` (from ``first`` to its END card), parsed.

    Parameters
    ----------
    stream : file-like
        The (decompressing) stream, positioned after ``first``.
    first : bytes
        The HDU's first header block.
    index : int
        The HDU's index in the file.
    path : Path
        The file (for messages).
    compression : str or None
        The stream's compression (for messages).

    Returns
    -------
    tuple
        ``(bytes, astropy.io.fits.Header)``.

    Raises
    ------
    ReaderError
        Truncated header, no END card in ``MAX_HEADER_BLOCKS`` blocks, or a corrupt header.
    """
    blocks = [first]
    while True:
        block = blocks[-1]
        if len(block) < _BLOCK:
            raise ReaderError(path, f"truncated file: header of HDU {index} ends before its END card")
        if any(_is_end_card(block, c) for c in range(36)):
            break
        if len(blocks) >= MAX_HEADER_BLOCKS:
            raise ReaderError(path, f"header of HDU {index} has no END card in {MAX_HEADER_BLOCKS} blocks")
        blocks.append(_read(stream, _BLOCK, path, compression))
    raw = b"".join(blocks)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", VerifyWarning)
            header = fits.Header.fromstring(raw.decode("ascii"))
    except (UnicodeDecodeError, ValueError) as err:
        raise ReaderError(path, f"corrupt header of HDU {index}: {err}") from err
    return raw, header


def _check_total(
    header: fits.Header, *, nbytes: int, total: int, max_bytes: int, index: int, path: Path
) -> None:
    """Refuse a file whose HDUs' data so far (``total`` bytes, this HDU's ``nbytes``) exceed ``max_bytes``.

    Parameters
    ----------
    header : astropy.io.fits.Header
        The header of HDU ``index`` (for the message).
    nbytes, total : int
        This HDU's data size and the total so far, in bytes.
    max_bytes : int
        The limit.
    index : int
        The HDU's index in the file.
    path : Path
        The file (for the message).

    Raises
    ------
    ReaderError
        ``total > max_bytes``.
    """
    if total > max_bytes:
        dims = " x ".join(str(header.get(f"NAXIS{i}")) for i in range(1, int(header["NAXIS"]) + 1))
        raise ReaderError(
            path,
            f"header of HDU {index} claims {nbytes} bytes of data (NAXIS = {dims}, BITPIX = "
            f"{header['BITPIX']}), more than the limit of {max_bytes} bytes (max_bytes); not reading it",
        )


def _read_data(stream, nbytes: int, *, index: int, path: Path, compression: str | None) -> bytes:
    """The ``nbytes`` of data of HDU ``index``, zero-padded to whole FITS blocks.

    Parameters
    ----------
    stream : file-like
        The (decompressing) stream, positioned after the HDU's header.
    nbytes : int
        The data size its header claims.
    index : int
        The HDU's index in the file.
    path : Path
        The file (for messages).
    compression : str or None
        The stream's compression (for messages).

    Returns
    -------
    bytes

    Raises
    ------
    ReaderError
        The stream ends before ``nbytes``.
    """
    padded = -(-nbytes // _BLOCK) * _BLOCK
    data = _read(stream, padded, path, compression)
    if len(data) < nbytes:
        raise ReaderError(
            path,
            f"truncated file: HDU {index} should hold {nbytes} bytes of data, the file has {len(data)}",
        )
    return data + b"\0" * (padded - len(data))


def _parse_fits(buf: bytearray, path: Path) -> fits.HDUList:
    """The HDUList of the checked FITS bytes ``buf``, every header and data parsed now.

    Parameters
    ----------
    buf : bytearray
        The whole file, block-aligned.
    path : Path
        The file (for the message).

    Returns
    -------
    astropy.io.fits.HDUList

    Raises
    ------
    ReaderError
        astropy cannot parse it.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", VerifyWarning)
            hdul = fits.open(io.BytesIO(bytes(buf)), memmap=False, lazy_load_hdus=False)
            for hdu in hdul:  # parse everything now, inside the guard
                hdu.header  # noqa: B018
                hdu.data  # noqa: B018
    except (OSError, ValueError, TypeError, KeyError, IndexError) as err:
        raise ReaderError(path, f"corrupt FITS content ({type(err).__name__}: {err})") from err
    return hdul


def load_fits(path, *, max_bytes: int = MAX_BYTES) -> fits.HDUList:
    """Read a (possibly gzip- or bzip2-compressed) FITS file into memory, safely.

    Parameters
    ----------
    path : str or Path
        The file.
    max_bytes : int
        Largest total size of the HDUs' data (decompressed) that is accepted; a header
        claiming more makes the file rejected before its data are read.

    Returns
    -------
    astropy.io.fits.HDUList
        All HDUs, data in memory (no memory map, no open file). Peak memory is about
        three times the file's (decompressed) size: the raw bytes, their copy handed to
        astropy, and the arrays.

    Raises
    ------
    ReaderError
        Missing/empty file, not FITS, corrupt header, truncated stream or data, too large.
    """
    path = check_file(path)
    stream, compression = _open_stream(path)
    buf = bytearray()
    total = 0
    with stream:
        for index in range(MAX_HDUS + 1):
            first = _read(stream, _BLOCK, path, compression)
            if index > 0 and not first.strip(b"\0 "):
                break  # end of file, or trailing padding
            _check_hdu_start(first, index, path)
            raw, header = _read_header(stream, first, index=index, path=path, compression=compression)
            nbytes = _data_bytes(header, path, index)
            total += nbytes
            _check_total(header, nbytes=nbytes, total=total, max_bytes=max_bytes, index=index, path=path)
            buf += raw + _read_data(stream, nbytes, index=index, path=path, compression=compression)
    return _parse_fits(buf, path)


def hdu_array(hdul: fits.HDUList, index: int, path) -> np.ndarray | None:
    """Data of image HDU ``index`` as a native-endian numeric array (None if it has none)."""
    data = hdul[index].data
    if data is None:
        return None
    data = np.asarray(data)
    if data.dtype.kind not in "fiu":
        raise ReaderError(path, f"HDU {index} holds {data.dtype} data, expected numbers")
    return data.astype(data.dtype.newbyteorder("="), copy=False)


def table_columns(hdul: fits.HDUList, index: int, names, path, *, what: str) -> dict[str, np.ndarray]:
    """Columns ``names`` (case-insensitive) of binary table HDU ``index`` as 1-D float64 arrays.

    A table of one row with array cells and a table of one row per pixel are both
    accepted. Missing HDU or columns raise :class:`ReaderError` naming them.
    """
    if len(hdul) <= index or not isinstance(hdul[index], fits.BinTableHDU):
        kinds = ", ".join(f"{i}: {type(h).__name__}" for i, h in enumerate(hdul))
        raise ReaderError(path, f"{what} needs a binary table in HDU {index}; the file has [{kinds}]")
    table = hdul[index].data
    present = {n.upper(): n for n in (table.columns.names if table is not None else [])}
    missing = [n for n in names if n.upper() not in present]
    if missing:
        raise ReaderError(
            path,
            f"binary table in HDU {index} lacks column(s) {', '.join(missing)} ({what} needs "
            f"{', '.join(names)}; it has {', '.join(present.values()) or 'none'})",
        )
    n_rows = len(table)
    out = {}
    for name in names:
        col = np.asarray(table[present[name.upper()]])
        if n_rows == 1 and col.ndim == 2:
            col = col[0]
        elif col.ndim != 1:
            raise ReaderError(
                path, f"column {name} has shape {col.shape}: expected one row of arrays or one row per pixel"
            )
        if col.dtype.kind not in "fiu":
            raise ReaderError(path, f"column {name} holds {col.dtype}, expected numbers")
        out[name] = col.astype(np.float64)
    lengths = {n: a.size for n, a in out.items()}
    if len(set(lengths.values())) != 1:
        raise ReaderError(path, f"columns have different lengths {lengths}")
    if next(iter(lengths.values())) < 2:
        raise ReaderError(path, "table holds fewer than 2 pixels")
    return out


# -------------------------------------------------------------------------- headers


class Headers:
    """Look keys up in one or more FITS headers (first match wins), with file-aware errors."""

    def __init__(self, path, *headers: fits.Header):
        self.path = path
        self.headers = [h for h in headers if h is not None]

    def raw(self, *keys):
        for key in keys:
            for header in self.headers:
                try:
                    if key in header:
                        return key, header[key]
                except (ValueError, fits.VerifyError) as err:
                    raise ReaderError(self.path, f"corrupt header card {key}: {err}") from err
        return None, None

    def float(self, *keys, required: bool = False, unknown=("", "-", "--")) -> float:
        """First of ``keys`` present, as float; NaN when absent (or ``required`` -> error).

        String values listed in ``unknown`` (e.g. STELIB's ``'-'``) mean NaN; other
        non-numeric values raise :class:`ReaderError`.
        """
        key, value = self.raw(*keys)
        if key is None:
            if required:
                raise ReaderError(self.path, f"missing header key {' / '.join(keys)}")
            return math.nan
        if isinstance(value, bool):
            raise ReaderError(self.path, f"header key {key} is a logical ({value}), expected a number")
        if isinstance(value, str):
            text = value.strip()
            if text in unknown:
                if required:
                    raise ReaderError(
                        self.path, f"header key {key} is {value!r} (unknown), a value is required"
                    )
                return math.nan
            try:
                return float(text)
            except ValueError:
                raise ReaderError(self.path, f"header key {key} has non-numeric value {value!r}") from None
        if value is None or isinstance(value, fits.card.Undefined):
            if required:
                raise ReaderError(self.path, f"header key {key} has no value")
            return math.nan
        return float(value)

    def int(self, *keys) -> int:
        """A required integer key (integral floats accepted)."""
        key, value = self.raw(*keys)
        if key is None:
            raise ReaderError(self.path, f"missing header key {' / '.join(keys)}")
        try:
            number = float(value.strip() if isinstance(value, str) else value)
        except (TypeError, ValueError):
            raise ReaderError(self.path, f"header key {key} has non-numeric value {value!r}") from None
        if isinstance(value, bool) or not number.is_integer():
            raise ReaderError(self.path, f"header key {key} = {value!r} is not an integer")
        return int(number)

    def str(self, *keys) -> str:
        key, value = self.raw(*keys)
        return "" if key is None or value is None else str(value).strip()


def linear_wave(hdr: Headers, n_pixel: int) -> np.ndarray:
    """Wavelengths of a linear 1-D WCS: ``CRVAL1 + CDELT1 * (i + 1 - CRPIX1)``.

    ``CD1_1`` stands in for a missing ``CDELT1``; ``CRPIX1`` defaults to 1. A
    logarithmic dispersion (``DC-FLAG = 1`` or a ``LOG`` CTYPE1) and a non-positive
    step (non-monotonic wavelengths) raise :class:`ReaderError`.
    """
    crval = hdr.float("CRVAL1", required=True)
    cdelt = hdr.float("CDELT1", "CD1_1", required=True)
    crpix = hdr.float("CRPIX1")
    crpix = 1.0 if math.isnan(crpix) else crpix
    if hdr.str("DC-FLAG") == "1" or "LOG" in hdr.str("CTYPE1").upper():
        raise ReaderError(
            hdr.path, "logarithmic dispersion (DC-FLAG = 1 / CTYPE1 LOG); this reader expects a linear one"
        )
    if not (math.isfinite(crval) and math.isfinite(cdelt) and math.isfinite(crpix)):
        raise ReaderError(
            hdr.path, f"non-finite wavelength WCS (CRVAL1={crval}, CDELT1={cdelt}, CRPIX1={crpix})"
        )
    if cdelt <= 0:
        raise ReaderError(hdr.path, f"non-monotonic wavelengths: CDELT1 = {cdelt} <= 0")
    wave = crval + cdelt * (np.arange(n_pixel) + 1.0 - crpix)
    return check_wave(wave, hdr.path)


def check_wave(wave, path) -> np.ndarray:
    """``wave`` as float64 if finite, positive and strictly increasing, else ReaderError."""
    wave = np.asarray(wave, dtype=np.float64)
    if wave.ndim != 1 or wave.size < 2:
        raise ReaderError(path, f"wavelength array has shape {wave.shape}, expected at least 2 pixels")
    if not np.all(np.isfinite(wave)):
        raise ReaderError(path, f"{int(np.sum(~np.isfinite(wave)))} non-finite wavelengths")
    if np.any(wave <= 0):
        raise ReaderError(path, "non-positive wavelengths")
    bad = np.flatnonzero(np.diff(wave) <= 0)
    if bad.size:
        i = int(bad[0])
        raise ReaderError(
            path,
            f"non-monotonic wavelengths: {bad.size} steps are not increasing, first at pixel {i} "
            f"({wave[i]!r} -> {wave[i + 1]!r})",
        )
    return wave


def as_paths(path_or_paths) -> list[Path]:
    """One path or an iterable of paths -> non-empty list of Paths."""
    if isinstance(path_or_paths, (str, Path)):
        return [Path(path_or_paths)]
    paths = [Path(p) for p in path_or_paths]
    if not paths:
        raise ValueError("no files given")
    return paths


def file_stem(path) -> str:
    """File name without its format and compression suffixes (``.fits``, ``.fits.gz``, ``.asc.bz2`` ...)."""
    name = Path(path).name
    return re.sub(r"(\.(fits?|fts|asc|txt|dat))?(\.(gz|bz2))?$", "", name, flags=re.IGNORECASE) or name


def to_object_strings(values) -> np.ndarray:
    """Strings as an object array (variable-length strings in Zarr v3, no warnings)."""
    out = np.empty(len(values), dtype=object)
    out[:] = [str(v) for v in values]
    return out


# ------------------------------------------------------------------------- assembly


@dataclass
class Star:
    """One spectrum read from a library file, on its native (vacuum) grid."""

    path: Path
    wave: np.ndarray
    flux: np.ndarray
    mask: np.ndarray
    ivar: np.ndarray | None = None
    coords: dict = field(default_factory=dict)  # per-star scalars (teff, logg, name, ...)
    extra: dict = field(default_factory=dict)  # per-pixel arrays besides flux (continuum, sys_err)


FLOAT_PARAMS = ("teff", "logg", "feh", "alpha")


def _stack_native(stars: list[Star], extra_names: list) -> tuple:
    """``(grid, flux, mask, ivar, extras)`` of stars that all share the first star's native grid.

    Parameters
    ----------
    stars : list of Star
        The stars.
    extra_names : list of str
        The per-pixel arrays besides flux (``Star.extra`` keys).

    Returns
    -------
    tuple
        The grid, the stacked flux, mask, ivar (None if the stars have none) and dict of extras.

    Raises
    ------
    ReaderError
        A star's grid differs from the first star's (naming its file).
    """
    first = stars[0]
    for star in stars[1:]:
        if star.wave.shape != first.wave.shape or not np.array_equal(star.wave, first.wave):
            raise ReaderError(
                star.path,
                f"its wavelength grid ({star.wave.size} px, {star.wave[0]:.3f}-{star.wave[-1]:.3f} A) "
                f"differs from that of {first.path} ({first.wave.size} px, "
                f"{first.wave[0]:.3f}-{first.wave[-1]:.3f} A); "
                "these spectra cannot share one grid unresampled: pass wave=<common vacuum grid> to "
                "resample them (flux-conserving)",
            )
    grid = first.wave
    flux = np.stack([s.flux for s in stars])
    mask = np.stack([s.mask for s in stars])
    ivar = np.stack([s.ivar for s in stars]) if first.ivar is not None else None
    extras = {k: np.stack([s.extra[k] for s in stars]) for k in extra_names}
    return grid, flux, mask, ivar, extras


def _resample_stars(stars: list[Star], wave, extra_names: list) -> tuple:
    """``(grid, flux, mask, ivar, extras)`` of the stars rebinned onto ``wave`` (flux-conserving).

    Parameters
    ----------
    stars : list of Star
        The stars (their grids may differ).
    wave : array-like
        The common vacuum grid (checked by :func:`check_wave`).
    extra_names : list of str
        The per-pixel arrays besides flux (``Star.extra`` keys), rebinned like the flux.

    Returns
    -------
    tuple
        The grid, the rebinned flux, mask, ivar (None if the stars have none) and dict of extras.
    """
    first = stars[0]
    n = len(stars)
    grid = check_wave(wave, "wave argument")
    flux = np.empty((n, grid.size), np.float64)
    mask = np.empty((n, grid.size), bool)
    ivar = np.empty((n, grid.size), np.float64) if first.ivar is not None else None
    extras = {k: np.empty((n, grid.size), np.float64) for k in extra_names}
    for i, s in enumerate(stars):  # grids may differ in length: one star at a time
        good_flux = np.where(s.mask, 0.0, s.flux)
        res = resample(
            s.wave,
            good_flux,
            wave_out=grid,
            mask=s.mask,
            ivar=None if s.ivar is None else np.where(s.mask, 0.0, s.ivar),
            method="flux",
        )
        flux[i], mask[i] = res.flux, res.mask
        if ivar is not None:
            ivar[i] = res.ivar
        for k in extra_names:
            v = s.extra[k]
            bad = s.mask | ~np.isfinite(v)
            extras[k][i] = resample(
                s.wave, np.where(bad, 0.0, v), wave_out=grid, mask=bad, method="flux"
            ).flux
    return grid, flux, mask, ivar, extras


def _star_coords(stars: list[Star]) -> dict:
    """Per-star coordinates of the catalogue: the stars' ``coords``, FLOAT_PARAMS (NaN if absent), file.

    Parameters
    ----------
    stars : list of Star
        The stars; the first one's ``coords`` names the coordinates.

    Returns
    -------
    dict
        Name -> float64 array (floats, FLOAT_PARAMS; NaN where missing) or object strings.
    """
    first = stars[0]
    n = len(stars)
    coords = {}
    for name in first.coords:
        values = [s.coords.get(name) for s in stars]
        if name in FLOAT_PARAMS or isinstance(first.coords[name], float):
            coords[name] = np.array([np.nan if v is None else v for v in values], dtype=np.float64)
        else:
            coords[name] = to_object_strings(["" if v is None else v for v in values])
    for name in FLOAT_PARAMS:
        coords.setdefault(name, np.full(n, np.nan))
    coords["file"] = to_object_strings([str(s.path) for s in stars])
    return coords


def assemble(
    stars: list[Star],
    *,
    wave=None,
    obsid=None,
    resolution: float,
    frame: str,
    flux_unit: str,
    source: str,
    attrs: dict,
    extra_attrs: dict | None = None,
) -> xr.Dataset:
    """Stars -> one catalogue Dataset (schema ``lamost2csst.spectra/1``).

    With ``wave=None`` all stars must share one native grid exactly (else
    :class:`ReaderError` naming the first file that differs). With ``wave`` given, every
    star is resampled onto it by flux-conserving rebinning (:func:`lamost2csst.core.resample`,
    ``method="flux"``); output pixels not covered by a star's grid are masked. Extra
    per-pixel arrays are rebinned the same way as the flux.
    """
    first = stars[0]
    n = len(stars)
    extra_names = list(first.extra)
    if wave is None:
        grid, flux, mask, ivar, extras = _stack_native(stars, extra_names)
    else:
        grid, flux, mask, ivar, extras = _resample_stars(stars, wave, extra_names)
        attrs = {
            **attrs,
            "resampled": "flux-conserving rebinning (lamost2csst.core.resample, method='flux') from each "
            "star's native grid; pixels not fully covered are masked",
        }
    if ivar is None:
        ivar = np.zeros(flux.shape, np.float32)
        attrs = {**attrs, "ivar_note": NO_IVAR_NOTE}
    coords = _star_coords(stars)
    ds = spectra_dataset(
        wave=grid,
        flux=flux,
        ivar=ivar,
        mask=mask,
        obsid=np.arange(n) if obsid is None else obsid,
        ra=np.zeros(n),
        dec=np.zeros(n),
        z=np.zeros(n),
        resolution=float(resolution),
        frame=frame,
        flux_unit=flux_unit,
        source=source,
        **coords,
    )
    for k, values in extras.items():
        spec = (extra_attrs or {}).get(k, {})
        ds[k] = (("star", "wave"), values.astype(np.float32), spec)
    ds.attrs.update(attrs)
    ds.attrs.setdefault("radec_note", NO_RADEC_NOTE)
    return ds


def air_attrs() -> dict:
    """The attrs that record an air -> vacuum conversion."""
    return {"original_medium": "air", "wave_conversion": AIR_TO_VACUUM_NOTE}


def vacuum(wave_air: np.ndarray) -> np.ndarray:
    """Vacuum wavelengths of standard-air ones (Morton 2000, exact inverse)."""
    return np.asarray(air_to_vacuum(wave_air), dtype=np.float64)


def central_resolution(wave: np.ndarray, fwhm: float) -> float:
    """Resolving power lambda/FWHM at the (geometric) centre of ``wave``."""
    return float(np.sqrt(wave[0] * wave[-1]) / fwhm)
