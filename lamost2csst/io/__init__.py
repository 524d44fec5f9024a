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

__all__ = [
    "SCHEMA",
    "create_spectra_store",
    "open_spectra",
    "spectra_dataset",
    "toy_catalogue",
    "validate_spectra",
    "write_spectra",
    "write_spectra_region",
]
