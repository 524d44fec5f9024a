"""Storage paths and URLs: resolving, existence, atomic small-file writes (local and fsspec)."""

import os

import pytest

from lamost2csst.io.storage import exists, is_url, read_bytes, resolve, write_bytes


def test_resolve_makes_local_paths_absolute_and_keeps_urls(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert resolve("cat.zarr") == os.path.join(str(tmp_path), "cat.zarr")
    assert resolve(tmp_path / "a" / ".." / "b.zarr") == os.path.join(str(tmp_path), "b.zarr")
    assert resolve("s3://bucket/cat.zarr") == "s3://bucket/cat.zarr"
    assert is_url("memory://x") and not is_url(tmp_path / "x")


def test_local_write_read_exists(tmp_path):
    path = tmp_path / "m.json"
    assert not exists(path) and read_bytes(path) is None
    write_bytes(path, b"first")
    write_bytes(path, b"second")
    assert exists(path) and read_bytes(path) == b"second"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.json"]  # no temporary file left behind


def test_url_write_read_exists():
    pytest.importorskip("fsspec")
    url = "memory://lamost2csst-test-storage/store.zarr/.markers/chunk-0.done"
    assert not exists(url) and read_bytes(url) is None
    write_bytes(url, b"{}")
    assert exists(url) and read_bytes(url) == b"{}"
    assert exists("memory://lamost2csst-test-storage/store.zarr")
