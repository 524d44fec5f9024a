"""Dask orchestration: templates, region writes, resume markers; no numerics of its own.

Names are imported on first use (PEP 562), so that ``lamost2csst.parallel.runtime`` can be
imported by a command line without pulling in xarray and dask before ``--help``.
"""

from importlib import import_module

_WHERE = {
    "NETWORK_INPUT_SCHEMA": "normalize",
    "network_input_template": "normalize",
    "normalize_catalogue": "normalize",
    "JobInputError": "runtime",
    "dask_client": "runtime",
    "open_own_store": "runtime",
    "read_json": "runtime",
    "remove_store": "runtime",
    "run_cli": "runtime",
    "write_json": "runtime",
}

__all__ = sorted(_WHERE)


def __getattr__(name):
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f"{__name__}.{_WHERE[name]}"), name)
