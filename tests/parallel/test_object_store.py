"""Zarr on an S3-compatible object store (a local moto server): predict_catalogue reads its
catalogue from s3:// and writes its predictions, markers and statistics there, resumably."""

import os

import numpy as np
import pytest
import xarray as xr

from lamost2csst.io import write_spectra
from lamost2csst.io.simulated import grid_catalogue
from lamost2csst.parallel.predict import predict_catalogue

moto_server = pytest.importorskip("moto.server")
pytest.importorskip("s3fs")


@pytest.fixture(scope="module")
def bucket():
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    server.start()
    host, port = server.get_host_and_port()
    saved = {
        k: os.environ.get(k)
        for k in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION")
    }
    os.environ.update(
        AWS_ENDPOINT_URL=f"http://{host}:{port}",
        AWS_ACCESS_KEY_ID="test",
        AWS_SECRET_ACCESS_KEY="test",
        AWS_DEFAULT_REGION="us-east-1",
    )
    import s3fs

    s3fs.S3FileSystem.clear_instance_cache()
    s3fs.S3FileSystem().mkdir("lamost2csst-test")
    try:
        yield "s3://lamost2csst-test"
    finally:
        server.stop()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def test_predict_from_and_to_s3_equals_a_local_run(bucket, client, tmp_path):
    demo = grid_catalogue(300, seed=21)
    write_spectra(demo, tmp_path / "cat.zarr", chunk_stars=100)
    write_spectra(demo, f"{bucket}/cat.zarr", chunk_stars=100)
    local = predict_catalogue(tmp_path / "cat.zarr", tmp_path / "p.zarr", client=client, progress=False)
    remote = predict_catalogue(f"{bucket}/cat.zarr", f"{bucket}/p.zarr", client=client, progress=False)
    assert remote["truth"] == local["truth"] and remote["stars_written"] == 300
    a = xr.open_zarr(f"{bucket}/p.zarr", consolidated=False)
    b = xr.open_zarr(tmp_path / "p.zarr", consolidated=False)
    np.testing.assert_array_equal(a.sed.values, b.sed.values)
    np.testing.assert_array_equal(a.flags.values, b.flags.values)
    import s3fs

    fs = s3fs.S3FileSystem()
    fs.rm(f"{bucket}/p.zarr/.markers/chunk-1.done")
    again = predict_catalogue(
        f"{bucket}/cat.zarr", f"{bucket}/p.zarr", client=client, resume=True, progress=False
    )
    assert (again["chunks_done"], again["chunks_skipped"]) == (1, 2)


def test_the_command_line_takes_s3_urls(bucket, client, tmp_path, capsys):
    from jobs import predict_catalogue as job

    write_spectra(grid_catalogue(50, seed=22), f"{bucket}/small.zarr", chunk_stars=25)
    args = job.parse_args(
        ["--catalogue", f"{bucket}/small.zarr", "--out", f"{bucket}/small-p.zarr", "--no-progress"]
    )
    summary = job.run(args, client)
    assert summary["stars_written"] == 50
    again = job.run(
        job.parse_args(
            [
                "--catalogue",
                f"{bucket}/small.zarr",
                "--out",
                f"{bucket}/small-p.zarr",
                "--overwrite",
                "--no-progress",
            ]
        ),
        client,
    )
    assert again["chunks_done"] == 2
