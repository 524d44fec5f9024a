"""Bytes per spectrum and decode speed of catalogue encodings, side by side on the same chunks.

Run from the repository root::

    python -m benchmarks.bench_codecs --catalogue /work/readme19b/outputs/demo_grid_catalogue.zarr
    python -m benchmarks.bench_codecs --catalogue STORE --chunks 3 --predict 4096 --lamost 1000
    python -m benchmarks.bench_codecs --fresh 20000 --out benchmarks/results/codecs_fresh.json

Reads ``--chunks`` star chunks (spread over the store) of a spectra catalogue's ``flux``,
``ivar`` and ``mask`` and encodes each with every candidate: the lossless codecs (Blosc lz4,
lz4hc or zstd at levels 1/3/5, byte or bit shuffle), the same after the precision-bounded
rounding of :mod:`lamost2csst.core.precision` (flux within 1e-5, 1e-4 or 1e-2 of each
pixel's sigma, ivar to 7 mantissa bits), and numcodecs' fixed-precision filters
(``BitRound``, ``Quantize``) as comparison rows, with the largest error each leaves in units
of the pixel's sigma.

Per candidate: bytes per spectrum (flux + ivar + mask, from the encoded chunks' sizes), and
per core (Blosc on one thread) the encode and decode speeds in MB/s of raw float32 and in
spectra/s, each the best of ``--repeat`` runs; the ratios are against today's encoding
(lossless lz4 level 1, byte shuffle) timed beside each candidate, interleaved round by round.
``--lamost N`` also exports N demo stars as LAMOST LRS files (``lamost2csst.io.lamost_export``),
ingests them (``ingest_lamost``, one worker), reports the same table on the pixels ingest
reads from them (before rounding), and the ingested store's own bytes per spectrum.
``--predict N`` reports, for each rounding, how far the shipped model's SEDs of the
catalogue's first N stars move, in units of their sigma. ``--fresh N`` instead simulates N
grid demo stars and writes them with the default encoding and losslessly: bytes per spectrum
of each array and of the whole store, and the write seconds. Writes
``benchmarks/results/codecs.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
FRACTIONS = (1e-5, 1e-4, 1e-2)  # the flux bounds compared, in units of each pixel's sigma
IVAR_BITS = 7


def _blosc(cname: str, level: int, shuffle: str):
    from numcodecs import Blosc

    mode = {"byte": Blosc.SHUFFLE, "bit": Blosc.BITSHUFFLE}[shuffle]
    return Blosc(cname=cname, clevel=level, shuffle=mode)


def _sigma_error(stored, flux, ivar, mask) -> float:
    """The largest ``|stored - flux| * sqrt(ivar)`` over the usable pixels."""
    good = ~mask & (ivar > 0) & np.isfinite(flux)
    diff = np.abs(stored.astype(np.float64)[good] - flux[good]) * np.sqrt(ivar[good].astype(np.float64))
    return float(diff.max()) if diff.size else 0.0


def _candidates(flux, ivar, mask):
    """``(name, flux_values, ivar_values, flux_filter, ivar_filter)`` per variant (filters or None)."""
    from numcodecs import BitRound, Quantize

    from lamost2csst.core.precision import round_spectra

    out = [("lossless", flux, ivar, None, None)]
    for fraction in FRACTIONS:
        rf, ri = round_spectra(flux, ivar=ivar, mask=mask, flux_fraction=fraction, ivar_bits=IVAR_BITS)
        out.append((f"rounded {fraction:g} sigma", rf, ri, None, None))
    for keep in (14, 20):
        out.append((f"BitRound({keep}) flux+ivar", flux, ivar, BitRound(keep), BitRound(keep)))
    for digits in (4, 6):
        out.append(
            (f"Quantize({digits}) flux, BitRound(7) ivar", flux, ivar, Quantize(digits, "f4"), BitRound(7))
        )
    return out


def _timed(jobs: list[dict], repeat: int) -> None:
    """Best-of-``repeat`` encode and decode seconds of each job, the jobs interleaved in each round."""
    for job in jobs:
        job.setdefault("t_enc", np.inf)
        job.setdefault("t_dec", np.inf)
    for _ in range(repeat):
        for job in jobs:
            t0 = time.perf_counter()
            for a, c in job["arrays"]:
                c.encode(a)
            t1 = time.perf_counter()
            for e, c in job["encoded"]:
                c.decode(e)
            t2 = time.perf_counter()
            job["t_enc"], job["t_dec"] = min(job["t_enc"], t1 - t0), min(job["t_dec"], t2 - t1)


def _job(prepared: list[dict], cname: str, level: int, flux_shuffle: str, ivar_shuffle: str) -> dict:
    codec = {
        "flux": _blosc(cname, level, flux_shuffle),
        "ivar": _blosc(cname, level, ivar_shuffle),
        "mask": _blosc(cname, level, "byte"),
    }
    arrays = [(a[k], codec[k]) for a in prepared for k in ("flux", "ivar", "mask")]
    encoded = [(c.encode(a), c) for a, c in arrays]
    sizes = {
        k: sum(len(encoded[3 * j + i][0]) for j in range(len(prepared)))
        for i, k in enumerate(("flux", "ivar", "mask"))
    }
    name = f"{cname} {level} {flux_shuffle}" + (
        "" if flux_shuffle == ivar_shuffle else f" (flux), {ivar_shuffle} (ivar)"
    )
    return {"codec": name, "arrays": arrays, "encoded": encoded, "sizes": sizes}


def _prepared(chunks: list[dict], variants: list, v: int) -> tuple[list[dict], float, float]:
    """Variant ``v``'s arrays per chunk (filters applied), its largest flux error / sigma and ivar error."""
    flux_filter, ivar_filter = variants[0][v][3], variants[0][v][4]
    prepared, err_flux, err_ivar = [], 0.0, 0.0
    for chunk, per_chunk in zip(chunks, variants):
        f, i = per_chunk[v][1], per_chunk[v][2]
        if flux_filter is not None:
            f = flux_filter.decode(flux_filter.encode(f)).reshape(f.shape).astype(np.float32)
        if ivar_filter is not None:
            i = ivar_filter.decode(ivar_filter.encode(i)).reshape(i.shape).astype(np.float32)
        err_flux = max(err_flux, _sigma_error(f, chunk["flux"], chunk["ivar"], chunk["mask"]))
        good = ~chunk["mask"] & (chunk["ivar"] > 0)
        rel = np.abs(i[good].astype(np.float64) / chunk["ivar"][good] - 1) if good.any() else np.zeros(1)
        err_ivar = max(err_ivar, float(rel.max()))
        prepared.append(
            {"flux": np.ascontiguousarray(f), "ivar": np.ascontiguousarray(i), "mask": chunk["mask"]}
        )
    return prepared, err_flux, err_ivar


def measure(chunks: list[dict], *, repeat: int) -> list[dict]:
    """Every candidate encoding on ``chunks`` (dicts of flux, ivar, mask): one row each.

    The candidates of one kind of values are timed together with today's encoding (lossless,
    lz4 level 1, byte shuffle), interleaved round by round: each row's ratios are against
    that baseline as measured beside it.
    """
    import numcodecs.blosc

    numcodecs.blosc.set_nthreads(1)
    # (cname, level, flux shuffle, ivar shuffle); the mask always byte shuffle
    codecs = [("lz4", 1, "byte", "byte"), ("lz4", 1, "bit", "bit"), ("lz4", 1, "bit", "byte")]
    codecs += [("lz4hc", 5, "byte", "byte")]
    codecs += [("zstd", lvl, sh, sh) for lvl in (1, 3, 5) for sh in ("byte", "bit")]
    n_star = sum(c["flux"].shape[0] for c in chunks)
    raw = sum(c["flux"].nbytes + c["ivar"].nbytes + c["mask"].nbytes for c in chunks)
    variants = [_candidates(c["flux"], c["ivar"], c["mask"]) for c in chunks]
    base_prepared = _prepared(chunks, variants, 0)[0]
    rows = []
    for v in range(len(variants[0])):
        name = variants[0][v][0]
        prepared, err_flux, err_ivar = _prepared(chunks, variants, v)
        base = _job(base_prepared, "lz4", 1, "byte", "byte")
        jobs = []
        for cname, level, flux_shuffle, ivar_shuffle in codecs:
            filtered = name.startswith(("BitRound", "Quantize"))
            if filtered and (cname, level, flux_shuffle, ivar_shuffle) not in (
                ("lz4", 1, "bit", "bit"),
                ("lz4", 1, "bit", "byte"),
            ):
                continue  # the fixed-precision filters: the lz4 rows are enough to compare
            if name == "lossless" and flux_shuffle != ivar_shuffle:
                continue
            jobs.append(_job(prepared, cname, level, flux_shuffle, ivar_shuffle))
        _timed([base, *jobs], repeat)
        for job in jobs:
            sizes = {k: b / n_star for k, b in job["sizes"].items()}
            rows.append(
                {
                    "values": name,
                    "codec": job["codec"],
                    "flux_bytes": round(sizes["flux"]),
                    "ivar_bytes": round(sizes["ivar"]),
                    "mask_bytes": round(sizes["mask"]),
                    "bytes_per_spectrum": round(sum(sizes.values())),
                    "max_flux_error_sigma": round(err_flux, 6),
                    "max_ivar_rel_error": round(err_ivar, 6),
                    "encode_MB_s": round(raw / job["t_enc"] / 1e6),
                    "decode_MB_s": round(raw / job["t_dec"] / 1e6),
                    "decode_spectra_s": round(n_star / job["t_dec"]),
                    "bytes_ratio": round(sum(job["sizes"].values()) / sum(base["sizes"].values()), 3),
                    "decode_time_ratio": round(job["t_dec"] / base["t_dec"], 3),
                    "baseline_decode_spectra_s": round(n_star / base["t_dec"]),
                }
            )
    return rows


def prediction_shift(store: str, n_star: int, fraction: float) -> dict:
    """Per star, the largest ``|sed(rounded) - sed(lossless)| / sigma(lossless)`` over its pixels.

    The first ``n_star`` stars of ``store`` (those with a redshift), through the job's first steps
    (``sanitize_pixels``, ``prepare_inputs``) and the shipped model (``lamost2csst.predict``),
    once as stored and once rounded with ``fraction`` (ivar to ``IVAR_BITS`` bits).
    """
    import lamost2csst
    from lamost2csst.core import prepare_inputs
    from lamost2csst.core.flags import sanitize_pixels
    from lamost2csst.core.precision import round_spectra
    from lamost2csst.io.regions import read_region

    a = read_region(store, 0, n_star, ["wave", "flux", "ivar", "mask", "z"])
    has_z = np.isfinite(a["z"])

    def predict(flux, ivar):
        flux, ivar, mask, _ = sanitize_pixels(flux, ivar, a["mask"])
        net = prepare_inputs(a["wave"], flux[has_z], ivar=ivar[has_z], z=a["z"][has_z], mask=mask[has_z])
        return lamost2csst.predict(net.flux, net.error, mask=net.mask)

    sed, sigma = predict(a["flux"], a["ivar"])
    rf, ri = round_spectra(
        a["flux"], ivar=a["ivar"], mask=a["mask"], flux_fraction=fraction, ivar_bits=IVAR_BITS
    )
    sed_r, sigma_r = predict(rf, ri)
    per_star = np.nanmax(np.abs(sed_r.astype(np.float64) - sed) / sigma, axis=1)
    return {
        "fraction": fraction,
        "stars": int(per_star.size),
        "max_sed_shift_sigma": float(per_star.max()),
        "p99_sed_shift_sigma": float(np.percentile(per_star, 99)),
        "median_sed_shift_sigma": float(np.median(per_star)),
        "stars_over_0.01": int((per_star >= 0.01).sum()),
        "max_sigma_rel_change": float(np.nanmax(np.abs(sigma_r / sigma - 1))),
    }


def read_chunks(store: str, n_chunks: int) -> list[dict]:
    """``n_chunks`` whole star chunks of a catalogue, spread evenly over it."""
    import zarr

    group = zarr.open_group(store, mode="r")
    size, n = group["flux"].chunks[0], group["flux"].shape[0]
    starts = np.linspace(0, (n - 1) // size, n_chunks).astype(int) * size
    return [{k: group[k][s : s + size] for k in ("flux", "ivar", "mask")} for s in sorted(set(starts))]


def ingest_exports(n: int, folder: Path) -> tuple[list[dict], dict]:
    """``n`` demo stars exported as LAMOST files and ingested: the read pixels and the store's bytes.

    The pixels are those ``ingest_lamost`` writes (``read_lamost`` of the files, in the store's
    order), before any rounding, in chunks of the store's size; the bytes are the ingested
    store's own (the default encoding), per spectrum.
    """
    import xarray as xr
    from distributed import Client, LocalCluster

    from lamost2csst.io.lamost_export import export_lamost
    from lamost2csst.io.readers import read_lamost
    from lamost2csst.io.simulated import grid_catalogue
    from lamost2csst.parallel.ingest import ingest_lamost

    cat = grid_catalogue(n, seed=11)
    half = n // 2
    export_lamost(cat.isel(star=slice(0, half)), folder / "image", layout="image")
    export_lamost(cat.isel(star=slice(half, n)), folder / "table", layout="table", gz=True)
    store = folder / "ingested.zarr"
    with (
        LocalCluster(n_workers=1, threads_per_worker=1, host="127.0.0.1", dashboard_address=":0") as cluster,
        Client(cluster) as client,
    ):
        ingest_lamost(
            [str(folder / "image"), str(folder / "table")], str(store), client=client, progress=False
        )
    ingested = xr.open_zarr(store, consolidated=False)
    size = ingested["flux"].encoding["chunks"][0]
    raw = read_lamost(list(ingested["file"].values))
    chunks = [
        {k: raw[k].values[s : s + size] for k in ("flux", "ivar", "mask")}
        for s in range(0, raw.sizes["star"], size)
    ]
    stored = {
        k: sum(p.stat().st_size for p in (store / k).rglob("*") if p.is_file() and p.name != "zarr.json")
        / ingested.sizes["star"]
        for k in ("flux", "ivar", "mask")
    }
    return chunks, {**{k: round(v) for k, v in stored.items()}, "total": round(sum(stored.values()))}


def _print(rows: list[dict], title: str) -> None:
    print(f"\n{title}")
    print(
        "| values | codec | flux | ivar | mask | bytes/spectrum | ratio | max flux err / sigma | "
        "max ivar rel err | encode MB/s | decode MB/s | decode spectra/s | decode time ratio |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['values']} | {r['codec']} | {r['flux_bytes']} | {r['ivar_bytes']} | {r['mask_bytes']} | "
            f"{r['bytes_per_spectrum']} | {r['bytes_ratio']} | {r['max_flux_error_sigma']} | "
            f"{r['max_ivar_rel_error']} | {r['encode_MB_s']} | {r['decode_MB_s']} | "
            f"{r['decode_spectra_s']} | {r['decode_time_ratio']} |"
        )


def fresh_demo(n: int) -> dict:
    """A freshly simulated ``n``-star grid demo written with the default encoding and lossless.

    Per array, the store's bytes per spectrum (all files), and the seconds of each
    ``write_spectra`` (one process, eager arrays, chunks of the demo's 2048 stars).
    """
    import dask

    from lamost2csst.io.simulated import BLOCK_STARS, grid_catalogue
    from lamost2csst.io.spectra import write_spectra

    root = Path(tempfile.mkdtemp(prefix="bench_codecs_fresh_"))
    try:
        t0 = time.perf_counter()
        with dask.config.set(scheduler="threads", num_workers=2):
            ds = grid_catalogue(n, seed=0, lazy=True).compute()
        out = {"stars": n, "simulate_seconds": round(time.perf_counter() - t0, 1)}
        for label, kwargs in (("default", {}), ("lossless", {"precision": None})):
            store = root / f"{label}.zarr"
            t0 = time.perf_counter()
            write_spectra(ds, store, chunk_stars=BLOCK_STARS, **kwargs)
            seconds = time.perf_counter() - t0
            sizes = {
                p.name: round(sum(f.stat().st_size for f in p.rglob("*") if f.is_file()) / n)
                for p in store.iterdir()
                if p.is_dir()
            }
            total = round(sum(f.stat().st_size for f in store.rglob("*") if f.is_file()) / n)
            pixels = sum(sizes[k] for k in ("flux", "ivar", "mask"))
            out[label] = {"write_seconds": round(seconds, 1), "pixels": pixels, "store": total, **sizes}
        return out
    finally:
        shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--fresh", type=int, default=0, help="only: a freshly written N-star demo's bytes")
    parser.add_argument("--catalogue", help="a spectra catalogue (Zarr)")
    parser.add_argument("--chunks", type=int, default=4, help="star chunks read from it")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--lamost", type=int, default=0, help="also: N demo stars exported as LAMOST files")
    parser.add_argument("--predict", type=int, default=0, help="also: prediction shift on the first N stars")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "codecs.json"))
    args = parser.parse_args()
    if args.fresh:
        record = {"date": datetime.now(UTC).isoformat(timespec="seconds"), **fresh_demo(args.fresh)}
        print(json.dumps(record))
        Path(args.out).write_text(json.dumps(record, indent=1) + "\n")
        return
    if not args.catalogue:
        parser.error("--catalogue is required (unless --fresh)")
    chunks = read_chunks(args.catalogue, args.chunks)
    record = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.node()} {os.cpu_count()} CPUs",
        "catalogue": args.catalogue,
        "stars": sum(c["flux"].shape[0] for c in chunks),
        "demo": measure(chunks, repeat=args.repeat),
    }
    _print(record["demo"], f"{record['stars']} stars of {args.catalogue}")
    if args.predict:
        record["predictions"] = [prediction_shift(args.catalogue, args.predict, f) for f in FRACTIONS]
        for row in record.get("predictions", []):
            print(json.dumps(row))
    if args.lamost:
        folder = Path(tempfile.mkdtemp(prefix="bench_codecs_"))
        try:
            lamost_chunks, stored = ingest_exports(args.lamost, folder)
            record["lamost_stars"] = args.lamost
            record["lamost_ingested_bytes_per_spectrum"] = stored
            record["lamost"] = measure(lamost_chunks, repeat=args.repeat)
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        _print(record["lamost"], f"{args.lamost} exported LAMOST files, as ingest reads them")
        print(f"the ingested store itself (default encoding), bytes per spectrum: {stored}")
    Path(args.out).write_text(json.dumps(record, indent=1) + "\n")


if __name__ == "__main__":
    main()
