"""Dask orchestration: templates, region writes, resume markers; no numerics of its own.

Names are imported on first use (PEP 562, :func:`lamost2csst._lazy.lazy_exports`), so that
``lamost2csst.parallel.runtime`` can be imported by a command line without pulling in xarray
and dask before ``--help``.
"""

from __future__ import annotations

from lamost2csst._lazy import lazy_exports

_EXPORTS = {
    "grid_demo_catalogue": "lamost2csst.parallel.demo",
    "toy_demo_catalogue": "lamost2csst.parallel.demo",
    "NETWORK_INPUT_SCHEMA": "lamost2csst.parallel.normalize",
    "network_input_template": "lamost2csst.parallel.normalize",
    "normalize_catalogue": "lamost2csst.parallel.normalize",
    "JobInputError": "lamost2csst.parallel.runtime",
    "dask_client": "lamost2csst.parallel.runtime",
    "open_own_store": "lamost2csst.parallel.runtime",
    "read_json": "lamost2csst.parallel.runtime",
    "remove_store": "lamost2csst.parallel.runtime",
    "write_json": "lamost2csst.parallel.runtime",
    "synthesize_grid": "lamost2csst.parallel.synthesis",
}

__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_exports("lamost2csst.parallel", _EXPORTS)
