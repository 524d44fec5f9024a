"""Every reader refuses broken files with a ReaderError (a ValueError) naming the file."""

import gzip
import re
import time

import numpy as np
import pytest
import xarray as xr
from astropy.io import fits
from reader_files import (
    bosz_arrays,
    write_bosz_ascii,
    write_bosz_fits,
    write_lamost,
    write_miles,
    write_ngsl,
    write_stelib,
)

from lamost2csst.io.readers import (
    MAX_BYTES,
    ReaderError,
    load_fits,
    read_bosz,
    read_lamost,
    read_miles,
    read_ngsl,
    read_stelib,
)

BOSZ_NAME = "amp00cp00op00t5750g45v20modrt0b2000rs"


def _lamost(tmp_path):
    return read_lamost, write_lamost(tmp_path / "good.fits")


def _miles(tmp_path):
    return read_miles, write_miles(tmp_path / "MILES_res2.50_star_m0001V.fits")


def _stelib(tmp_path):
    return read_stelib, write_stelib(tmp_path / "STELIB_v3.2_HD000001.fits")


def _bosz(tmp_path):
    return read_bosz, write_bosz_fits(tmp_path / f"{BOSZ_NAME}.fits", *bosz_arrays())


def _ngsl(tmp_path):
    return read_ngsl, write_ngsl(tmp_path / "h_stis_ngsl_hd000001_v2.fits")


READERS = [_lamost, _miles, _stelib, _bosz, _ngsl]


def _corrupt(kind, good, tmp_path):
    """A broken sibling of ``good`` with the same name pattern (the BOSZ reader parses names)."""
    raw = good.read_bytes()
    bad = tmp_path / "bad" / good.name
    bad.parent.mkdir(exist_ok=True)
    if kind == "truncated_gzip":
        bad.write_bytes(gzip.compress(raw)[: len(gzip.compress(raw)) // 2])
    elif kind == "truncated_fits":
        bad.write_bytes(raw[: len(raw) - 3000])  # the data stop short of what the headers claim
    elif kind == "truncated_header":
        bad.write_bytes(raw[:1000])
    elif kind == "random_bytes":
        bad.write_bytes(np.random.default_rng(1).bytes(20_000))
    elif kind == "random_gzip":
        bad.write_bytes(gzip.compress(np.random.default_rng(1).bytes(20_000)))
    elif kind == "empty":
        bad.write_bytes(b"")
    elif kind == "garbage_after_hdus":
        bad.write_bytes(raw + b"this is not FITS" * 200)
    return bad


KINDS = [
    ("truncated_gzip", "truncated gzip stream"),
    ("truncated_fits", "truncated file"),
    ("truncated_header", "truncated file|before its END card"),
    ("random_bytes", "not a FITS file"),
    ("random_gzip", "not a FITS file"),
    ("empty", "empty file"),
    ("garbage_after_hdus", "unexpected bytes after HDU"),
]


@pytest.mark.parametrize("make", READERS, ids=lambda f: f.__name__[1:])
@pytest.mark.parametrize(("kind", "words"), KINDS, ids=[k for k, _ in KINDS])
def test_corrupt_files_are_refused_with_the_path(tmp_path, make, kind, words):
    reader, good = make(tmp_path)
    reader(good)  # the intact file reads
    bad = _corrupt(kind, good, tmp_path)
    with pytest.raises(ReaderError, match=words) as err:
        reader(bad)
    assert isinstance(err.value, ValueError)
    assert str(err.value).startswith(str(bad)) and err.value.path == str(bad)


@pytest.mark.parametrize("make", READERS, ids=lambda f: f.__name__[1:])
def test_missing_file(tmp_path, make):
    reader, good = make(tmp_path)
    with pytest.raises(ReaderError, match="no such file"):
        reader(tmp_path / "absent" / good.name)


def _absurd_header_file(path, naxis):
    header = fits.Header()
    header["SIMPLE"] = True
    header["BITPIX"] = -32
    header["NAXIS"] = len(naxis)
    for i, n in enumerate(naxis, 1):
        header[f"NAXIS{i}"] = n
    path.write_bytes(header.tostring().encode("ascii"))  # a header, and no data at all
    return path


@pytest.mark.parametrize("make", READERS, ids=lambda f: f.__name__[1:])
def test_absurd_size_refused_before_reading(tmp_path, make):
    reader, good = make(tmp_path)
    (tmp_path / "bad").mkdir()
    bad = _absurd_header_file(tmp_path / "bad" / good.name, [10**6, 10**6])
    t0 = time.perf_counter()
    with pytest.raises(ReaderError, match=r"claims 4000000000000 bytes.*more than the limit") as err:
        reader(bad)
    assert time.perf_counter() - t0 < 1.0
    assert str(bad) in str(err.value)


def test_reader_error_pickles_for_dask(tmp_path):
    import pickle

    err = ReaderError(tmp_path / "x.fits", "truncated file")
    back = pickle.loads(pickle.dumps(err))
    assert (
        type(back) is ReaderError
        and str(back) == str(err)
        and back.path == err.path
        and back.problem == err.problem
    )


def test_limit_is_configurable_and_counts_decompressed_bytes(tmp_path):
    good = write_lamost(tmp_path / "a.fits.gz", gz=True)
    assert len(load_fits(good)) == 1
    with pytest.raises(ReaderError, match="more than the limit of 1000 bytes"):
        read_lamost(good, max_bytes=1000)
    assert MAX_BYTES == 256 * 2**20


def test_gzip_bomb_header_is_refused_without_inflating_it(tmp_path):
    """A gzip stream whose header claims 4 TB: refused from the header, data never inflated."""
    header = fits.Header(
        [("SIMPLE", True), ("BITPIX", 8), ("NAXIS", 2), ("NAXIS1", 2 * 10**6), ("NAXIS2", 2 * 10**6)]
    )
    bomb = tmp_path / "bomb.fits.gz"
    bomb.write_bytes(gzip.compress(header.tostring().encode() + bytes(10**6)))
    with pytest.raises(ReaderError, match="claims 4000000000000 bytes"):
        load_fits(bomb)


@pytest.mark.parametrize(
    ("payload", "words"),
    [
        (b"1.0 2.0 3.0\n1.5 2.0\n", "not a BOSZ ASCII table"),
        (b"1.0 2.0\n2.0 3.0\n", "2 columns, expected 3"),
        (b"   \n", "no data"),
        (b"4000 1 1\n3999 1 1\n", "non-monotonic"),
    ],
)
def test_bad_bosz_text(tmp_path, payload, words):
    f = tmp_path / f"{BOSZ_NAME}.asc"
    f.write_bytes(payload)
    with pytest.raises(ReaderError, match=words):
        read_bosz(f)


def test_truncated_bzip2(tmp_path):
    good = write_bosz_ascii(tmp_path / f"{BOSZ_NAME}.asc.bz2", *bosz_arrays())
    raw = good.read_bytes()
    bad = tmp_path / "cut" / good.name
    bad.parent.mkdir()
    bad.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(ReaderError, match="truncated bzip2 stream") as err:
        read_bosz(bad)
    assert str(bad) in str(err.value)
    with pytest.raises(ReaderError, match="more than 100 bytes"):
        read_bosz(good, max_bytes=100)


@pytest.mark.parametrize("make", [_miles, _stelib, _ngsl], ids=lambda f: f.__name__[1:])
@pytest.mark.parametrize(("kind", "words"), KINDS, ids=[k for k, _ in KINDS])
def test_a_corrupt_file_among_many_is_skipped_and_listed_on_request(tmp_path, make, kind, words):
    reader, good = make(tmp_path)
    bad = _corrupt(kind, good, tmp_path)
    with pytest.raises(ReaderError, match=words):
        reader([good, bad])  # the default: the first unreadable file stops the read
    ds = reader([bad, good], on_error="skip")
    assert ds.sizes["star"] == 1 and list(ds.file.values) == [str(good)]
    (entry,) = ds.attrs["unreadable_files"]
    assert entry.startswith(f"{bad}: ") and re.search(words, entry)
    xr.testing.assert_identical(ds.flux, reader(good).flux)  # the good star as read alone
    with pytest.raises(ReaderError, match=f"none of the 2 files can be read: {re.escape(str(bad))}"):
        reader([bad, bad], on_error="skip")
    with pytest.raises(ValueError, match="on_error must be one of"):
        reader(good, on_error="ignore")
