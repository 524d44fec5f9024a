"""Paths of the jobs' stores: local files or fsspec URLs (``s3://bucket/cat.zarr``, ...).

Zarr and xarray open URLs themselves (through fsspec); this module covers what the jobs do
beside them: resolving, existence checks, and the small marker and statistics files. A local
file is written to a temporary name and renamed (atomic); an object store's put is atomic
by itself. Credentials and endpoints come from the environment as usual for fsspec
(``AWS_ACCESS_KEY_ID``, ``AWS_ENDPOINT_URL``, ...): nothing is stored by the jobs.
"""

from __future__ import annotations

import os

__all__ = ["exists", "is_url", "read_bytes", "resolve", "write_bytes"]


def is_url(path) -> bool:
    return "://" in os.fspath(path)


def resolve(path) -> str:
    """An absolute local path, or the URL unchanged."""
    text = os.fspath(path)
    return text if is_url(text) else os.path.abspath(text)


def _fs(url: str):
    import fsspec

    return fsspec.core.url_to_fs(url)[0]


def exists(path) -> bool:
    text = os.fspath(path)
    return _fs(text).exists(text) if is_url(text) else os.path.exists(text)


def write_bytes(path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see either nothing or all of it."""
    text = os.fspath(path)
    if is_url(text):
        _fs(text).pipe_file(text, data)
        return
    tmp = f"{text}.{os.getpid()}.tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, text)


def read_bytes(path) -> bytes | None:
    """The content of ``path``, or None when it does not exist (or cannot be read)."""
    text = os.fspath(path)
    try:
        if is_url(text):
            return _fs(text).cat_file(text)
        with open(text, "rb") as f:
            return f.read()
    except (OSError, FileNotFoundError):
        return None
