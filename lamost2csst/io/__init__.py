"""Storage and file formats: the xarray/Zarr schemas, readers of spectral libraries."""

from lamost2csst.io.spectra import (
    SCHEMA,
    create_spectra_store,
    open_spectra,
    spectra_dataset,
    validate_spectra,
    write_spectra,
    write_spectra_region,
)
from lamost2csst.io.demo import toy_catalogue
from lamost2csst.io.training import gridded_library, training_pairs
from lamost2csst.io.readers import (
    ReaderError,
    read_bosz,
    read_lamost,
    read_mangadap_miles,
    read_mangadap_stelib,
    read_miles,
    read_ngsl,
    read_stelib,
)

__all__ = [
    "SCHEMA",
    "ReaderError",
    "create_spectra_store",
    "gridded_library",
    "open_spectra",
    "read_bosz",
    "read_lamost",
    "read_mangadap_miles",
    "read_mangadap_stelib",
    "read_miles",
    "read_ngsl",
    "read_stelib",
    "spectra_dataset",
    "toy_catalogue",
    "training_pairs",
    "validate_spectra",
    "write_spectra",
    "write_spectra_region",
]
