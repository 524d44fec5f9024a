"""Readers of spectral files and libraries into the catalogue schema (``lamost2csst.spectra/1``).

One module per format; every reader returns an :class:`xarray.Dataset` built by
:func:`lamost2csst.io.spectra.spectra_dataset` (vacuum Angstrom, per-star coordinates
teff, logg, feh, alpha -- NaN where unknown -- plus ``file`` and the format's own),
with units and provenance (``format``, ``format_version``, ``reader``, ``source``) in
``attrs``. Air-wavelength libraries are converted to vacuum and say so in
``attrs["original_medium"]`` and ``attrs["wave_conversion"]``.

=====================  =================================  ==================================
reader                 format                             grid
=====================  =================================  ==================================
read_lamost            LAMOST LRS FITS, image or table    common LAMOST_WAVE (whole-px shift)
read_miles             MILES FITS 1-D image (air)         native, shared by all files
read_stelib            STELIB FITS 1-D image (air)        native per star: ``wave=`` needed
read_bosz              BOSZ FITS table / .asc.bz2         native, shared by all files
read_ngsl              NGSL v2 FITS table                 native, shared by all files
read_mangadap_miles    the sdss-mangadap copy of MILES    native (4300 px)
read_mangadap_stelib   the sdss-mangadap copy of STELIB   STELIB_WAVE (rebinned)
=====================  =================================  ==================================

Library readers never resample unless asked: several files come back on their common
native grid, or -- if their grids differ -- a :class:`ReaderError` names the first file
that differs, unless ``wave=`` gives a grid to rebin onto (flux-conserving).

Every problem with a file raises :class:`ReaderError` (a ``ValueError``) whose message
starts with the file's path; the MILES, STELIB and NGSL readers take ``on_error="skip"`` to
leave such a file out of a list and name it in ``attrs["unreadable_files"]`` instead.
Files are size-checked from their headers before their data are read (``max_bytes``,
default :data:`MAX_BYTES` = 256 MiB decompressed).
"""

from lamost2csst.io.readers._common import MAX_BYTES, ReaderError, load_fits
from lamost2csst.io.readers.bosz import parse_bosz_name, read_bosz
from lamost2csst.io.readers.lamost import read_lamost
from lamost2csst.io.readers.mangadap import (
    mangadap_available,
    mangadap_template_dir,
    read_mangadap_miles,
    read_mangadap_stelib,
)
from lamost2csst.io.readers.miles import read_miles, read_miles_params
from lamost2csst.io.readers.ngsl import read_ngsl
from lamost2csst.io.readers.stelib import STELIB_WAVE, read_stelib

__all__ = [
    "MAX_BYTES",
    "STELIB_WAVE",
    "ReaderError",
    "load_fits",
    "mangadap_available",
    "mangadap_template_dir",
    "parse_bosz_name",
    "read_bosz",
    "read_lamost",
    "read_mangadap_miles",
    "read_mangadap_stelib",
    "read_miles",
    "read_miles_params",
    "read_ngsl",
    "read_stelib",
]
