"""Dask orchestration: templates, region writes, resume markers; no numerics of its own."""

from lamost2csst.parallel.normalize import (
    NETWORK_INPUT_SCHEMA,
    JobInputError,
    network_input_template,
    normalize_catalogue,
)

__all__ = ["NETWORK_INPUT_SCHEMA", "JobInputError", "network_input_template", "normalize_catalogue"]
