"""Storage and file formats: the xarray/Zarr schemas, readers of spectral libraries.

Importing :mod:`lamost2csst.io` is lazy: a name's module loads when the name is first used,
so the Zarr/xarray paths (the catalogue jobs' workers) do not import astropy, which only
the FITS readers need.
"""

from __future__ import annotations

from lamost2csst._lazy import lazy_exports

_EXPORTS = {
    "SCHEMA": "lamost2csst.io.spectra",
    "DEFAULT_PRECISION": "lamost2csst.io.spectra",
    "PixelPrecision": "lamost2csst.io.spectra",
    "create_spectra_store": "lamost2csst.io.spectra",
    "open_spectra": "lamost2csst.io.spectra",
    "spectra_dataset": "lamost2csst.io.spectra",
    "validate_spectra": "lamost2csst.io.spectra",
    "write_spectra": "lamost2csst.io.spectra",
    "write_spectra_region": "lamost2csst.io.spectra",
    "open_catalogue": "lamost2csst.io.spectra",
    "NETWORK_INPUT_SCHEMA": "lamost2csst.io.network_inputs",
    "network_input_template": "lamost2csst.io.network_inputs",
    "open_network_inputs": "lamost2csst.io.network_inputs",
    "PREDICTIONS_SCHEMA": "lamost2csst.io.predictions",
    "open_predictions": "lamost2csst.io.predictions",
    "predictions_template": "lamost2csst.io.predictions",
    "read_region": "lamost2csst.io.regions",
    "OBSERVATIONS_SCHEMA": "lamost2csst.io.observations",
    "open_observations": "lamost2csst.io.observations",
    "simulate_observations": "lamost2csst.io.observations",
    "write_observations": "lamost2csst.io.observations",
    "FLATCUBE_SCHEMA": "lamost2csst.io.flatcube",
    "open_flatcube": "lamost2csst.io.flatcube",
    "write_region": "lamost2csst.io.regions",
    "toy_catalogue": "lamost2csst.io.demo",
    "gridded_library": "lamost2csst.io.training",
    "training_pairs": "lamost2csst.io.training",
    "ReaderError": "lamost2csst.io.readers",
    "read_bosz": "lamost2csst.io.readers",
    "read_lamost": "lamost2csst.io.readers",
    "read_mangadap_miles": "lamost2csst.io.readers",
    "read_mangadap_stelib": "lamost2csst.io.readers",
    "read_miles": "lamost2csst.io.readers",
    "read_ngsl": "lamost2csst.io.readers",
    "read_stelib": "lamost2csst.io.readers",
}

__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_exports("lamost2csst.io", _EXPORTS)
