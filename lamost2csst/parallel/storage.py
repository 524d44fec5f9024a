"""Moved to :mod:`lamost2csst.io.storage` (storage paths and URLs belong to ``io``); kept importable."""

from lamost2csst.io.storage import exists, is_url, read_bytes, resolve, write_bytes

__all__ = ["exists", "is_url", "read_bytes", "resolve", "write_bytes"]
