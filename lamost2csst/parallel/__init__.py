"""Dask orchestration: templates, region writes, resume markers; no numerics of its own."""

from lamost2csst.parallel.normalize import NETWORK_INPUT_SCHEMA, network_input_template, normalize_catalogue
from lamost2csst.parallel.runtime import JobInputError, dask_client, read_json, run_cli, write_json

__all__ = [
    "NETWORK_INPUT_SCHEMA",
    "JobInputError",
    "dask_client",
    "network_input_template",
    "normalize_catalogue",
    "read_json",
    "run_cli",
    "write_json",
]
