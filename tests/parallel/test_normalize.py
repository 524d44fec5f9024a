"""The normalize_catalogue Dask job: equals the numpy kernel, every star once, resumable."""

import json
import os

import numpy as np
import pytest
import xarray as xr
import zarr

import lamost2csst.parallel.normalize as normalize_module
from lamost2csst.core import INPUT_WAVE, prepare_inputs
from lamost2csst.errors import InputError
from lamost2csst.io import toy_catalogue, write_spectra
from lamost2csst.io.spectra import round_pixels
from lamost2csst.parallel import NETWORK_INPUT_SCHEMA, normalize_catalogue

N_STAR, CHUNK = 300, 64  # 5 chunks, the last one ragged (44 stars)


@pytest.fixture(scope="module")
def toy():
    return toy_catalogue(N_STAR, seed=11)


@pytest.fixture(scope="module")
def expected(toy):
    """The kernel after the default trouble-spot masking (observed frame, before the shift)."""
    from lamost2csst.core.inputs import treat_trouble_spots

    stored = round_pixels(toy)  # the catalogue's pixels as written (within 1e-5 of sigma)
    ivar, mask = treat_trouble_spots(stored.wave.values, stored.ivar.values, stored.mask.values, mode="mask")
    return prepare_inputs(stored.wave.values, stored.flux.values, ivar=ivar, z=stored.z.values, mask=mask)


@pytest.fixture(scope="module")
def catalogue(toy, tmp_path_factory):
    path = tmp_path_factory.mktemp("cat") / "catalogue.zarr"
    write_spectra(toy, path, chunk_stars=CHUNK)
    return path


def assert_equals_kernel(out, expected):
    ds = xr.open_zarr(out, consolidated=False)
    np.testing.assert_array_equal(ds.flux.values, expected.flux)  # NaN == NaN here
    np.testing.assert_array_equal(ds.error.values, expected.error)
    np.testing.assert_array_equal(ds.mask.values, expected.mask)


def test_output_equals_the_kernel_on_the_whole_catalogue(client, catalogue, toy, expected, tmp_path):
    out = tmp_path / "inputs.zarr"
    summary = normalize_catalogue(catalogue, out, client=client, progress=False)
    assert_equals_kernel(out, expected)

    ds = xr.open_zarr(out, consolidated=False)
    assert ds.sizes == {"star": N_STAR, "wave_in": INPUT_WAVE.size}
    assert (ds.flux.dtype, ds.error.dtype, ds.mask.dtype) == (np.float32, np.float32, np.bool_)
    np.testing.assert_array_equal(ds.wave_in.values, INPUT_WAVE)
    assert ds.wave_in.attrs == {
        "units": "Angstrom",
        "medium": "vacuum",
        "frame": "rest",
        "resolution": 2000.0,
        "long_name": ds.wave_in.attrs["long_name"],
    }
    for name in ("obsid", "ra", "dec", "z", "snr_g", "teff"):  # every per-star coordinate copied
        np.testing.assert_array_equal(ds[name].values, toy[name].values)
        assert ds[name].attrs == toy[name].attrs
    assert ds.attrs["schema"] == NETWORK_INPUT_SCHEMA
    assert ds.attrs["input_store"] == os.path.abspath(catalogue)
    assert ds.attrs["lamost2csst_version"] and ds.attrs["created_utc"].endswith("+00:00")
    assert ds.flux.encoding["chunks"] == (CHUNK, INPUT_WAVE.size)
    (codec,) = ds.flux.encoding["compressors"]
    assert (codec.cname.value, codec.clevel) == ("lz4", 1)

    masked = expected.mask.mean()
    assert summary == ds.attrs["summary"]
    assert summary["stars_in"] == summary["stars_written"] == N_STAR
    assert (summary["chunks_total"], summary["chunks_done"], summary["chunks_skipped"]) == (5, 5, 0)
    assert summary["masked_pixel_fraction"] == pytest.approx(masked)
    assert summary["seconds"] > 0 and summary["spectra_per_second"] > 0
    markers = sorted(os.listdir(out / ".markers"))
    assert markers == sorted(["zarr.json"] + [f"chunk-{i}.done" for i in range(5)])
    assert json.loads((out / ".markers" / "chunk-4.done").read_text())["n_star"] == N_STAR - 4 * CHUNK


@pytest.mark.parametrize("chunk_stars", [100, 1000])
def test_every_star_once_and_in_order_with_other_chunking(
    client, catalogue, toy, expected, tmp_path, chunk_stars
):
    out = tmp_path / "inputs.zarr"
    summary = normalize_catalogue(catalogue, out, client=client, chunk_stars=chunk_stars, progress=False)
    ds = xr.open_zarr(out, consolidated=False)
    obsid = ds.obsid.values
    assert obsid.size == np.unique(obsid).size == N_STAR
    np.testing.assert_array_equal(obsid, toy.obsid.values)
    assert summary["chunks_total"] == -(-N_STAR // min(chunk_stars, N_STAR))
    assert ds.flux.encoding["chunks"][0] == min(chunk_stars, N_STAR)
    assert_equals_kernel(out, expected)


def _chunk_files(out):
    root = out / "flux" / "c"
    return {p: p.stat().st_mtime_ns for p in sorted(root.rglob("*")) if p.is_file()}


def test_resume_recomputes_only_the_chunk_without_marker(client, catalogue, expected, tmp_path):
    out = tmp_path / "inputs.zarr"
    normalize_catalogue(catalogue, out, client=client, progress=False)
    # chunk 2 was "lost": its marker is gone and its data is wrong
    (out / ".markers" / "chunk-2.done").unlink()
    zarr.open_array(out / "flux", mode="r+")[2 * CHUNK : 3 * CHUNK] = 0.0
    (out / "error" / "c" / "2" / "0").write_bytes(b"garbage")
    before = _chunk_files(out)

    summary = normalize_catalogue(catalogue, out, client=client, resume=True, progress=False)
    assert (summary["chunks_done"], summary["chunks_skipped"], summary["stars_written"]) == (1, 4, CHUNK)
    assert summary["masked_pixel_fraction"] == pytest.approx(expected.mask.mean())
    assert_equals_kernel(out, expected)
    after = _chunk_files(out)
    changed = [p.relative_to(out).as_posix() for p in after if after[p] != before[p]]
    assert changed == ["flux/c/2/0"]  # the other chunks were not rewritten

    again = normalize_catalogue(catalogue, out, client=client, resume=True, progress=False)
    assert (again["chunks_done"], again["chunks_skipped"], again["stars_written"]) == (0, 5, 0)


def test_a_failed_chunk_leaves_no_marker_and_resume_finishes(
    client, catalogue, expected, tmp_path, monkeypatch
):
    out = tmp_path / "inputs.zarr"
    kernel = normalize_module.prepare_inputs

    def failing(wave, flux, **kw):  # the chunk of stars 128..191 fails (the workers are threads)
        if np.array_equal(kw["z"], expected_z[2 * CHUNK : 3 * CHUNK]):
            raise RuntimeError("simulated worker failure")
        return kernel(wave, flux, **kw)

    expected_z = xr.open_zarr(catalogue, consolidated=False).z.values
    monkeypatch.setattr(normalize_module, "prepare_inputs", failing)
    with pytest.raises(RuntimeError, match="simulated"):
        normalize_catalogue(catalogue, out, client=client, progress=False)
    assert not (out / ".markers" / "chunk-2.done").exists()
    monkeypatch.setattr(normalize_module, "prepare_inputs", kernel)

    # chunks already running when the job failed may still finish (and then have a marker)
    summary = normalize_catalogue(catalogue, out, client=client, resume=True, progress=False)
    assert 1 <= summary["chunks_done"] == 5 - summary["chunks_skipped"]
    assert summary["stars_written"] >= CHUNK
    assert_equals_kernel(out, expected)


def test_existing_output_without_resume_is_refused(client, catalogue, tmp_path):
    out = tmp_path / "inputs.zarr"
    normalize_catalogue(catalogue, out, client=client, progress=False)
    with pytest.raises(InputError, match="already exists"):
        normalize_catalogue(catalogue, out, client=client, progress=False)
    stranger = tmp_path / "somebody_elses_dir"
    stranger.mkdir()
    with pytest.raises(ValueError, match="already exists"):
        normalize_catalogue(catalogue, stranger, client=client, progress=False)


def test_resume_refuses_an_output_of_another_input_or_chunking(client, catalogue, tmp_path):
    out = tmp_path / "inputs.zarr"
    normalize_catalogue(catalogue, out, client=client, progress=False)
    with pytest.raises(ValueError, match="cannot resume.*chunks"):
        normalize_catalogue(catalogue, out, client=client, chunk_stars=50, resume=True, progress=False)
    other = tmp_path / "other.zarr"
    write_spectra(toy_catalogue(200, seed=11), other, chunk_stars=CHUNK)
    with pytest.raises(ValueError, match="cannot resume.*200"):
        normalize_catalogue(other, out, client=client, resume=True, progress=False)
    not_ours = tmp_path / "not_ours.zarr"
    xr.Dataset({"a": ("x", np.zeros(3))}).to_zarr(not_ours, zarr_format=3, consolidated=False)
    with pytest.raises(ValueError, match="cannot resume.*schema"):
        normalize_catalogue(catalogue, not_ours, client=client, resume=True, progress=False)


def test_bad_inputs_raise_job_input_error(client, tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        normalize_catalogue(tmp_path / "missing.zarr", tmp_path / "o.zarr", client=client, progress=False)
    wrong = tmp_path / "wrong.zarr"
    xr.Dataset({"flux": (("star", "wave"), np.ones((2, 3), np.float32))}).to_zarr(
        wrong, zarr_format=3, consolidated=False
    )
    with pytest.raises(InputError, match="schema"):
        normalize_catalogue(wrong, tmp_path / "o.zarr", client=client, progress=False)
    assert not (tmp_path / "o.zarr").exists()


def test_rest_frame_input_is_not_shifted_again(client, toy, tmp_path):
    rest = toy.isel(star=slice(0, 40)).assign_attrs(frame="rest")
    write_spectra(rest, tmp_path / "rest.zarr", chunk_stars=16)
    normalize_catalogue(tmp_path / "rest.zarr", tmp_path / "o.zarr", client=client, progress=False)
    rest = round_pixels(rest)  # as stored
    expected = prepare_inputs(
        rest.wave.values, rest.flux.values, ivar=rest.ivar.values, z=np.zeros(40), mask=rest.mask.values
    )
    assert_equals_kernel(tmp_path / "o.zarr", expected)


def test_stars_without_a_usable_redshift_are_kept_fully_masked_and_counted(client, toy, tmp_path):
    part = toy.isel(star=slice(0, 40))
    z = part.z.values.copy()
    z[[3, 17]] = [np.nan, -9999.0]  # no redshift, and LAMOST's placeholder
    part = part.assign_coords(z=("star", z))
    write_spectra(part, tmp_path / "badz.zarr", chunk_stars=16)
    summary = normalize_catalogue(
        tmp_path / "badz.zarr", tmp_path / "o.zarr", client=client, progress=False, lamost_trouble="keep"
    )
    assert summary["stars_written"] == 40 and summary["stars_bad_z"] == 2
    part = round_pixels(part)  # as stored
    out = xr.open_zarr(tmp_path / "o.zarr", consolidated=False)
    assert out.mask.values[[3, 17]].all() and np.isnan(out.flux.values[[3, 17]]).all()
    good = np.setdiff1d(np.arange(40), [3, 17])
    expected = prepare_inputs(
        part.wave.values,
        part.flux.values[good],
        ivar=part.ivar.values[good],
        z=z[good],
        mask=part.mask.values[good],
    )
    np.testing.assert_array_equal(out.flux.values[good], expected.flux)
    np.testing.assert_array_equal(out.obsid.values, part.obsid.values)


def test_the_catalogue_is_opened_once_per_run(client, catalogue, tmp_path, monkeypatch):
    """One xarray open of the input per job (the tasks read their rows with plain Zarr)."""
    opened = []
    real = xr.open_zarr

    def counting(store, *args, **kwargs):
        opened.append(os.path.abspath(os.fspath(store)))
        return real(store, *args, **kwargs)

    monkeypatch.setattr(xr, "open_zarr", counting)
    normalize_catalogue(catalogue, tmp_path / "o.zarr", client=client, progress=False)
    assert opened.count(os.path.abspath(catalogue)) == 1


def test_trouble_spots_are_masked_as_predict_does(client, catalogue, toy, expected, tmp_path):
    """normalize_catalogue stores what predict_catalogue feeds the network: the trouble spots of an
    observed-frame catalogue masked before the shift (default, the `expected` fixture), none with "keep"."""
    assert toy.attrs.get("frame") == "observed"
    kept_out = tmp_path / "keep.zarr"
    normalize_catalogue(catalogue, kept_out, client=client, progress=False, lamost_trouble="keep")
    stored = round_pixels(toy)  # as written
    untreated = prepare_inputs(
        stored.wave.values,
        stored.flux.values,
        ivar=stored.ivar.values,
        z=stored.z.values,
        mask=stored.mask.values,
    )
    assert_equals_kernel(kept_out, untreated)
    kept = xr.open_zarr(kept_out, consolidated=False)
    assert "input_trouble" not in kept.attrs
    assert expected.mask.sum() > untreated.mask.sum()  # the windows add masked pixels
    masked_out = tmp_path / "mask.zarr"
    normalize_catalogue(catalogue, masked_out, client=client, progress=False)
    assert_equals_kernel(masked_out, expected)
    assert xr.open_zarr(masked_out, consolidated=False).attrs["input_trouble"] == "mask"
    with pytest.raises(InputError, match="lamost_trouble"):
        normalize_catalogue(
            catalogue, tmp_path / "x.zarr", client=client, progress=False, lamost_trouble="drop"
        )
