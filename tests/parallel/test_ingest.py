"""ingest_lamost: FITS (both layouts) -> catalogue; rejects recorded; nothing twice; resumable;
and the predictions from ingested files equal the hand-made path."""

import shutil
from collections import Counter

import numpy as np
import pytest
import xarray as xr

import lamost2csst
from lamost2csst.core import prepare_inputs
from lamost2csst.core.flags import sanitize_pixels
from lamost2csst.core.inputs import treat_trouble_spots
from lamost2csst.errors import InputError
from lamost2csst.io import read_lamost
from lamost2csst.io.lamost_export import export_lamost
from lamost2csst.io.simulated import grid_catalogue
from lamost2csst.io.spectra import round_arrays
from lamost2csst.parallel.ingest import find_lamost_files, ingest_lamost
from lamost2csst.parallel.predict import predict_catalogue

N, CHUNK = 120, 32


@pytest.fixture(scope="module")
def demo():
    return grid_catalogue(N, seed=7)


@pytest.fixture(scope="module")
def folder(demo, tmp_path_factory):
    root = tmp_path_factory.mktemp("fits")
    export_lamost(demo.isel(star=slice(0, N // 2)), root / "image", layout="image")
    export_lamost(demo.isel(star=slice(N // 2, N)), root / "table" / "night2", layout="table", gz=True)
    (root / "broken.fits").write_bytes(b"SIMPLE  =                    T" + b"\0" * 100)
    good = sorted((root / "image").glob("*.fits"))[0]
    (root / "truncated.fits").write_bytes(good.read_bytes()[:5000])
    shutil.copy(
        good, root / "zz-copy-of-first.fits"
    )  # same OBSID, later in file order: the copy is the reject
    (root / "notes.txt").write_text("not a spectrum")
    return root


@pytest.fixture(scope="module")
def ingested(client, folder, tmp_path_factory):
    out = tmp_path_factory.mktemp("cat") / "catalogue.zarr"
    summary = ingest_lamost(
        [folder], out, client=client, chunk_stars=CHUNK, progress=False, files_per_task=16
    )
    return out, summary


def _by_obsid(ds):
    return ds.sortby("obsid")


def test_catalogue_holds_every_readable_star_once_with_its_pixels(ingested, demo):
    out, summary = ingested
    assert (summary["files_found"], summary["stars_added"], summary["rejected"]) == (N + 3, N, 3)
    cat = _by_obsid(xr.open_zarr(out, consolidated=False).load())
    lamost2csst.io.validate_spectra(cat)
    np.testing.assert_array_equal(cat.obsid.values, demo.obsid.values)
    flux, ivar, mask, _ = sanitize_pixels(demo.flux.values, demo.ivar.values, demo.mask.values)
    flux, ivar = round_arrays(flux, ivar, mask)  # stored within 1e-5 of sigma (the default precision)
    assert (cat.attrs["pixel_flux_fraction"], cat.attrs["pixel_ivar_bits"]) == (1e-5, 7)
    np.testing.assert_array_equal(cat.mask.values, mask)  # the reader masks the NaN fault pixels too
    np.testing.assert_array_equal(cat.ivar.values, ivar)
    np.testing.assert_array_equal(cat.flux.values[~mask], flux[~mask])
    for name in ("ra", "dec", "z", "snr_g"):
        np.testing.assert_allclose(cat[name].values, demo[name].values, rtol=1e-6, equal_nan=True)
    assert cat.flux.encoding["chunks"] == (CHUNK, cat.sizes["wave"])


def test_rejects_name_path_and_reason(ingested, folder):
    out, _ = ingested
    rejects = {r["path"]: r["reason"] for r in xr.open_zarr(out, consolidated=False).attrs["rejects"]}
    assert set(rejects) == {
        str(folder / n) for n in ("broken.fits", "truncated.fits", "zz-copy-of-first.fits")
    }
    assert "already" in rejects[str(folder / "zz-copy-of-first.fits")]
    assert all(reason for reason in rejects.values())


def test_rerun_adds_nothing_twice_and_new_files_are_appended(client, ingested, folder, demo, tmp_path):
    reference, _ = ingested
    out = tmp_path / "c.zarr"
    shutil.copytree(reference, out)
    again = ingest_lamost([folder], out, client=client, progress=False)
    assert (again["stars_added"], again["files_already_ingested"], again["stars_total"]) == (0, N, N)
    assert again["rejects_total"] == 3

    more = demo.isel(star=slice(0, 10)).assign_coords(obsid=demo.obsid.values[:10] + 10_000)
    export_lamost(more, tmp_path / "new", layout="table")
    added = ingest_lamost([folder, tmp_path / "new"], out, client=client, progress=False)
    assert (added["stars_added"], added["stars_total"]) == (10, N + 10)
    cat = xr.open_zarr(out, consolidated=False)
    np.testing.assert_array_equal(
        cat.ivar.values[-10:],
        cat.ivar.values[[list(cat.obsid.values).index(o - 10_000) for o in cat.obsid.values[-10:]]],
    )
    assert np.unique(cat.obsid.values).size == N + 10


def test_an_interrupted_write_is_finished_by_the_next_run(client, ingested, folder, tmp_path):
    reference, _ = ingested
    out = tmp_path / "c.zarr"
    shutil.copytree(reference, out)
    (out / ".markers" / f"ingest-{CHUNK}.done").unlink()
    import zarr

    zarr.open_array(out / "flux", mode="r+")[CHUNK : 2 * CHUNK] = 0.0
    summary = ingest_lamost([folder], out, client=client, progress=False)
    assert (summary["stars_resumed"], summary["stars_added"]) == (CHUNK, 0)
    a, b = xr.open_zarr(out, consolidated=False), xr.open_zarr(reference, consolidated=False)
    np.testing.assert_array_equal(a.flux.values, b.flux.values)


def test_predictions_from_both_layouts_equal_the_hand_made_path(client, ingested, folder, tmp_path):
    """FITS -> ingest -> predict_catalogue == read_lamost -> masking -> prepare_inputs(z) -> predict.

    (the masking of LAMOST trouble spots is the job's default, lamost_trouble="mask")
    """
    out, _ = ingested
    predicted = tmp_path / "p.zarr"
    predict_catalogue(out, predicted, client=client, progress=False)
    pred = xr.open_zarr(predicted, consolidated=False)
    row = {int(o): i for i, o in enumerate(pred.obsid.values)}
    for layout, files in (
        ("image", sorted((folder / "image").glob("*.fits"))),
        ("table", sorted((folder / "table").rglob("*.fits.gz"))),
    ):
        ds = read_lamost(files)
        assert ds.attrs["format"].startswith(layout) or layout in ds.attrs["format"]
        z = ds.z.values
        has_z = np.isfinite(z)
        assert has_z.sum() > 0 and np.any(np.abs(z[has_z]) > 1e-4)  # real Doppler shifts to undo
        flux, ivar = round_arrays(ds.flux.values, ds.ivar.values, ds.mask.values)  # as stored
        ivar, mask = treat_trouble_spots(ds.wave.values, ivar, ds.mask.values, mode="mask")
        net = prepare_inputs(ds.wave.values, flux[has_z], ivar=ivar[has_z], z=z[has_z], mask=mask[has_z])
        sed, sigma = lamost2csst.predict(net.flux, net.error, mask=net.mask)
        rows = [row[int(o)] for o in ds.obsid.values[has_z]]
        np.testing.assert_allclose(pred.sed.values[rows], sed, rtol=2e-5)
        np.testing.assert_allclose(pred.sigma.values[rows], sigma, rtol=2e-5)
        assert np.isnan(pred.sed.values[[row[int(o)] for o in ds.obsid.values[~has_z]]]).all()


def test_bad_inputs(client, tmp_path, ingested):
    with pytest.raises(InputError, match="neither a file nor a folder"):
        find_lamost_files([tmp_path / "missing"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no FITS files"):
        ingest_lamost([tmp_path / "empty"], tmp_path / "o.zarr", client=client, progress=False)
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "x.fits").write_bytes(b"junk")
    with pytest.raises(InputError, match="none of the 1 files"):
        ingest_lamost([tmp_path / "bad"], tmp_path / "o.zarr", client=client, progress=False)
    other = tmp_path / "other.zarr"
    xr.Dataset({"a": ("x", np.arange(3))}).to_zarr(other, zarr_format=3, consolidated=False)
    with pytest.raises(InputError, match="not made by ingest_lamost"):
        ingest_lamost([tmp_path / "bad"], other, client=client, progress=False)


def test_each_file_is_read_once_and_the_store_holds_what_the_reader_reads(
    client, folder, demo, tmp_path, monkeypatch
):
    """Single pass: every file read exactly once (several segments and read batches, a chunk
    split between segments, an OBSID twice in one batch), and the catalogue's pixels and
    per-star coordinates equal read_lamost of the accepted files, value for value."""
    import lamost2csst.parallel.ingest as module

    extra = tmp_path / "extra"
    export_lamost(demo.isel(star=slice(0, 5)).assign_coords(obsid=demo.obsid.values[:5] + 50_000), extra)
    first = sorted(extra.glob("*.fits"))[1]
    again = extra / f"{first.stem}a.fits"  # next in file order
    shutil.copy(first, again)
    real, calls = module.read_lamost_file, Counter()

    def counting(path, **kwargs):
        calls[str(path)] += 1
        return real(path, **kwargs)

    monkeypatch.setattr(module, "read_lamost_file", counting)
    out = tmp_path / "c.zarr"
    summary = ingest_lamost(
        [folder, extra],
        out,
        client=client,
        chunk_stars=CHUNK,
        progress=False,
        files_per_task=4,
        files_per_segment=40,
    )
    files = find_lamost_files([folder, extra])
    assert files.index(str(again)) == files.index(str(first)) + 1
    assert files.index(str(again)) // 4 == files.index(str(first)) // 4  # one read task
    assert calls == Counter(files)
    assert (summary["stars_added"], summary["rejected"]) == (N + 5, 4)
    cat = xr.open_zarr(out, consolidated=False).load()
    rejects = {r["path"]: r["reason"] for r in cat.attrs["rejects"]}
    assert rejects[str(again)].endswith(f"already in the catalogue (from {first})")
    accepted = [f for f in files if f not in rejects]
    assert cat.file.values.tolist() == accepted  # file order
    direct = read_lamost(accepted)
    flux, ivar = round_arrays(direct.flux.values, direct.ivar.values, direct.mask.values)
    direct = direct.assign(flux=(direct.flux.dims, flux), ivar=(direct.ivar.dims, ivar))  # as stored
    for name in ("flux", "ivar", "mask"):
        assert cat[name].dtype == direct[name].dtype
        np.testing.assert_array_equal(cat[name].values, direct[name].values)
    star_coords = [name for name, var in direct.coords.items() if var.dims == ("star",)]
    assert sorted(star_coords) == sorted(name for name, var in cat.coords.items() if var.dims == ("star",))
    for name in star_coords:
        np.testing.assert_array_equal(cat[name].values, direct[name].values)
    assert len(list((out / ".markers").glob("ingest-*.done"))) == -(-(N + 5) // CHUNK) + 3  # 4 appends


def test_read_files_turns_every_unreadable_file_into_a_reject(folder):
    """One read task: readable files keep their pixels in order; the others give path and reason."""
    from lamost2csst.parallel.ingest import read_files

    paths = [str(folder / "broken.fits"), *map(str, sorted((folder / "image").glob("*.fits"))[:3])]
    batch = read_files([*paths, str(folder / "truncated.fits")])
    assert [r["ok"] for r in batch["results"]] == [False, True, True, True, False]
    assert all(r["reason"].startswith(r["path"]) for r in batch["results"] if not r["ok"])
    direct = read_lamost(paths[1:])
    for name in ("flux", "ivar", "mask"):
        np.testing.assert_array_equal(batch[name], direct[name].values)
    assert [r["coords"]["obsid"] for r in batch["results"][1:4]] == direct.obsid.values.tolist()
