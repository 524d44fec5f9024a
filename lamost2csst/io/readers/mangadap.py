"""The MILES and STELIB copies shipped inside the ``sdss-mangadap`` wheel (optional extra).

``pip install "lamost2csst[libraries]"`` installs sdss-mangadap (wheel 4.5.0: 121.5 MB).
Its ``mangadap/data/spectral_templates/`` holds, among others:

``miles/``
    984 files ``MILES_res2.50_star_m####V.fits`` (1-D float64 image, 4300 px, air,
    CRVAL1 3540.5, CDELT1 0.9, CRPIX1 1, header FWHM 2.5; all on one grid),
    ``omit/MILES_res2.50_star_m0970V.fits`` (moved aside by the DAP authors: shortened
    range with zeros and an artefact at the red end), ``MILES_params.db`` (parameters,
    see :func:`~lamost2csst.io.readers.miles.read_miles_params`: 985 entries, 3 stars
    without any, 39 without [Fe/H]; entry ``022.`` is star 221) and
    ``paramsMILES_v9.1.txt`` (the full MILES table it was pared from).
``stelib/``
    255 files ``STELIB_v3.2_<star>.fits`` (1-D float32 image, 6700 px, air, per-star
    CRVAL1/CDELT1; header TEFF, LOG_G, FE_H, SPECTYPE, U, B, V, R, RADVEL).

The files are located with :mod:`importlib.resources`; nothing of mangadap is used
beyond its data files.
"""

from __future__ import annotations

import importlib.resources
import importlib.util
from pathlib import Path

import xarray as xr

from lamost2csst.io.readers._common import MAX_BYTES
from lamost2csst.io.readers.miles import read_miles, read_miles_params
from lamost2csst.io.readers.stelib import STELIB_WAVE, read_stelib

__all__ = ["mangadap_available", "mangadap_template_dir", "read_mangadap_miles", "read_mangadap_stelib"]

_INSTALL_HINT = 'install the optional extra: pip install "lamost2csst[libraries]" (sdss-mangadap)'


def mangadap_available() -> bool:
    """Whether the ``mangadap`` package (sdss-mangadap) is importable."""
    return importlib.util.find_spec("mangadap") is not None


def mangadap_template_dir(library: str) -> Path:
    """Folder ``mangadap/data/spectral_templates/<library>`` of the installed package.

    Raises
    ------
    ModuleNotFoundError
        sdss-mangadap is not installed.
    FileNotFoundError
        The package lacks the folder (another mangadap version?).
    """
    if not mangadap_available():
        raise ModuleNotFoundError(f"the mangadap package is not installed; {_INSTALL_HINT}")
    folder = Path(str(importlib.resources.files("mangadap").joinpath("data", "spectral_templates", library)))
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} not found in the installed mangadap package")
    return folder


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("sdss-mangadap")
    except PackageNotFoundError:
        return "unknown"


def read_mangadap_miles(
    *, include_omitted: bool = False, wave=None, max_bytes: int = MAX_BYTES
) -> xr.Dataset:
    """All MILES v9.1 stars of the mangadap package as one Dataset, with parameters.

    Parameters
    ----------
    include_omitted : bool
        Also read ``omit/MILES_res2.50_star_m0970V.fits``, which the MaNGA DAP authors set
        aside (shortened range, artefact at the red end): 985 stars instead of 984.
    wave : array_like, optional
        Vacuum grid to resample onto; by default the native grid (shared by all files),
        4300 px from 3541.5 A (vacuum of 3540.5 A air).
    max_bytes : int
        Largest data size accepted per file.

    Returns
    -------
    xarray.Dataset
        As :func:`~lamost2csst.io.readers.miles.read_miles`; ``obsid`` is the MILES
        number, teff/logg/feh from ``MILES_params.db`` (NaN where unknown). A file that
        cannot be read is left out and listed in ``attrs["unreadable_files"]`` (``on_error="skip"``);
        which stars are usable decides :func:`lamost2csst.io.training.usable_stars`.
    """
    folder = mangadap_template_dir("miles")
    files = sorted(folder.glob("MILES_res2.50_star_m*V.fits"))
    if include_omitted:
        files = sorted(files + list((folder / "omit").glob("MILES_res2.50_star_m*V.fits")))
    if not files:
        raise FileNotFoundError(f"no MILES_res2.50_star_m*V.fits in {folder}")
    params = read_miles_params(folder / "MILES_params.db")
    ds = read_miles(
        files,
        params=params,
        wave=wave,
        max_bytes=max_bytes,
        source=f"MILES v9.1 from sdss-mangadap {_version()} ({folder})",
        on_error="skip",
    )
    ds.attrs["params_source"] = str(folder / "MILES_params.db")
    ds.attrs["omitted"] = (
        "" if include_omitted else "omit/MILES_res2.50_star_m0970V.fits (set aside by the MaNGA DAP)"
    )
    return ds


def read_mangadap_stelib(*, wave=STELIB_WAVE, max_bytes: int = MAX_BYTES) -> xr.Dataset:
    """All 255 STELIB v3.2 stars of the mangadap package as one Dataset, with parameters.

    Parameters
    ----------
    wave : array_like or None
        Common vacuum grid. The stars' native grids all differ (CRVAL1 3196-3204 A,
        CDELT1 0.9988-1.0013 A), so by default every star is rebinned (flux-conserving)
        onto :data:`~lamost2csst.io.readers.stelib.STELIB_WAVE` (3201-9900 A, 1 A/px,
        vacuum) and pixels not fully covered are masked. ``wave=None`` asks for the
        native grids and therefore raises :class:`ReaderError`.
    max_bytes : int
        Largest data size accepted per file.

    Returns
    -------
    xarray.Dataset
        As :func:`~lamost2csst.io.readers.stelib.read_stelib`; a file that cannot be read
        is left out and listed in ``attrs["unreadable_files"]`` (``on_error="skip"``).
    """
    folder = mangadap_template_dir("stelib")
    files = sorted(folder.glob("STELIB_v3.2_*.fits"))
    if not files:
        raise FileNotFoundError(f"no STELIB_v3.2_*.fits in {folder}")
    return read_stelib(
        files,
        wave=wave,
        max_bytes=max_bytes,
        source=f"STELIB v3.2 from sdss-mangadap {_version()} ({folder})",
        on_error="skip",
    )
