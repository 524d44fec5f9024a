"""Generate the bad-input corpus ``tests/data/bad_inputs`` (docs/reliability.md).

    python tests/data/make_bad_inputs.py [OUT]      # default: tests/data/bad_inputs
    python tests/data/make_bad_inputs.py --markdown # the table of docs/reliability.md

The corpus holds what a survey run meets in practice, each with the outcome the jobs
document for it (``manifest.json``; tests/jobs/test_bad_input_corpus.py checks every one):

* ``lamost/``: one LAMOST LRS FITS file per case, good and bad, for ``jobs.ingest_lamost``
  (a file is either rejected with a reason naming the problem, or ingested) followed by
  ``jobs.predict_catalogue`` (an ingested star gets ``flags`` bits that say what is wrong);
* ``empty_folder/``: no FITS file at all (only a ``.gitkeep``);
* ``wrong_schema.zarr``: a Zarr store that is not a spectra catalogue;
* ``bad_values.zarr``: a catalogue in the spectra schema whose pixels carry values that
  only a hand-made catalogue (not the LAMOST reader) can hold: NaN/inf flux and NaN/inf/
  negative ivar on pixels not marked bad.

Everything is deterministic (fixed seeds, no timestamps inside the files); the spectra are
a 6000 K blackbody with Balmer and metal-like absorption lines, independent of the shipped
grid so that the corpus does not change when the grid grows.
"""

from __future__ import annotations

import gzip
import json
import shutil
import sys
from pathlib import Path

import numpy as np
from astropy.io import fits

from lamost2csst.core import LAMOST_WAVE
from lamost2csst.io.lamost_export import write_lamost_file

HERE = Path(__file__).resolve().parent
DEFAULT_OUT = HERE / "bad_inputs"
N = LAMOST_WAVE.size  # 3909 px, 3700-9100 A
COEFF0, COEFF1 = 3.5682, 1e-4

#: Flags an ingested star must have (``required``) and must not have (``forbidden``);
#: UNCERTAIN (the network's own sigma) and OUTSIDE_DOMAIN are left out: they depend on the model.
INPUT_FLAGS = ["NO_DATA", "MASKED_PIXELS", "NONFINITE_INPUT", "LOW_SNR", "BAD_Z"]


def star(seed: int, *, snr: float = 40.0) -> tuple[np.ndarray, np.ndarray]:
    """(flux, ivar) on LAMOST_WAVE of a 6000 K star with absorption lines, noise for ``snr``."""
    rng = np.random.default_rng(seed)
    wave = LAMOST_WAVE
    planck = 1.0 / (wave**5 * (np.exp(1.4388e8 / (wave * 6000.0)) - 1.0))
    clean = 300.0 * planck / np.median(planck)
    for centre, depth, width in (
        (4102.9, 0.3, 6),
        (4341.7, 0.35, 6),
        (4862.7, 0.4, 7),
        (6564.6, 0.45, 8),
        (5174.1, 0.2, 3),
        (5891.6, 0.3, 2),
        (8544.4, 0.3, 3),
    ):
        clean *= 1.0 - depth * np.exp(-0.5 * ((wave - centre) / width) ** 2)
    sigma = clean / snr
    flux = clean + rng.normal(0.0, 1.0, N) * sigma
    return flux.astype(np.float32), (1.0 / sigma**2).astype(np.float32)


def header(obsid: int, **keys) -> dict:
    base = {
        "OBSID": obsid,
        "RA": 10.0 + obsid / 1000,
        "DEC": -5.0,
        "Z": 1.0e-4,
        "Z_ERR": 1e-5,
        "CLASS": "STAR",
        "SUBCLASS": "G0",
        "DATA_V": "lamost2csst bad-input corpus",
        "SNRG": 40.0,
    }
    base.update(keys)
    return {k: v for k, v in base.items() if v is not None}


def _write(path: Path, *, flux, ivar, mask=None, hdr, layout="image", gz=False) -> None:
    mask = np.zeros(N, bool) if mask is None else mask
    write_lamost_file(path, flux=flux, ivar=ivar, mask=mask, header=hdr, layout=layout, gz=False)
    if gz:  # gzip with mtime 0: the same bytes on every run
        data = path.read_bytes()
        path.unlink()
        path.with_name(path.name + ".gz").write_bytes(gzip.compress(data, compresslevel=6, mtime=0))


def _raw_image(path: Path, rows: np.ndarray, hdr: dict) -> None:
    """A primary-image file with arbitrary rows (layouts the package writer refuses to make)."""
    h = fits.Header()
    for key, value in {"COEFF0": COEFF0, "COEFF1": COEFF1, "VACUUM": True, **hdr}.items():
        h[key] = value
    fits.HDUList([fits.PrimaryHDU(rows.astype(np.float32), header=h)]).writeto(path, overwrite=True)


def _partial(path: Path, first: int, stop: int, hdr: dict) -> None:
    """A spectrum covering only pixels first:stop of the LAMOST grid (a failed arm)."""
    flux, ivar = star(7)
    idx = np.arange(first, stop)
    wave = 10.0 ** (COEFF0 + COEFF1 * idx)
    rows = np.vstack([flux[idx], ivar[idx], wave, np.zeros(idx.size), np.zeros(idx.size)])
    _raw_image(path, rows, {**hdr, "COEFF0": COEFF0 + COEFF1 * first})


def lamost_cases() -> list[dict]:
    """The FITS cases: (file, what it is, expected outcome) and how to write it."""
    rng = np.random.default_rng(2026)
    cases = []

    def add(file, what, *, outcome, words=None, required=(), forbidden=(), obsid=None, write):
        cases.append(
            {
                "file": file,
                "what": what,
                "outcome": outcome,
                "words": words,
                "obsid": obsid,
                "required": list(required),
                "forbidden": list(forbidden),
                "_write": write,
            }
        )

    clean_flags = INPUT_FLAGS
    # ---- ingested and fine
    f, iv = star(1)
    add(
        "ok_image.fits",
        "a good spectrum, DR1-7 image layout",
        outcome="ok",
        obsid=1001,
        forbidden=clean_flags,
        write=lambda p, f=f, iv=iv: _write(p, flux=f, ivar=iv, hdr=header(1001)),
    )
    f, iv = star(2)
    add(
        "ok_table.fits.gz",
        "a good spectrum, DR8+ binary-table layout, gzipped",
        outcome="ok",
        obsid=1002,
        forbidden=clean_flags,
        write=lambda p, f=f, iv=iv: _write(
            p.with_suffix(""), flux=f, ivar=iv, hdr=header(1002), layout="table", gz=True
        ),
    )
    # ---- ingested, with flags
    f, iv = star(3)
    bad = rng.choice(N, size=int(0.03 * N), replace=False)
    f_bad = f.copy()
    f_bad[bad[: bad.size // 2]] = np.nan
    f_bad[bad[bad.size // 2 :]] = np.inf
    f_bad[bad[-5:]] = -np.inf
    add(
        "nan_inf_flux.fits",
        "NaN and +/-inf flux on 3% of the pixels, not marked bad: the reader masks them",
        outcome="ok",
        obsid=1003,
        forbidden=clean_flags,
        write=lambda p, f=f_bad, iv=iv: _write(p, flux=f, ivar=iv, hdr=header(1003)),
    )
    f, iv = star(4)
    iv_bad = iv.copy()
    bad = rng.choice(N, size=int(0.4 * N), replace=False)
    iv_bad[bad[: bad.size // 2]] = 0.0
    iv_bad[bad[bad.size // 2 :]] = -1.0
    add(
        "zero_negative_ivar.fits",
        "zero or negative inverse variance on 40% of the pixels",
        outcome="flag",
        obsid=1004,
        required=["MASKED_PIXELS"],
        forbidden=["NO_DATA"],
        write=lambda p, f=f, iv=iv_bad: _write(p, flux=f, ivar=iv, hdr=header(1004)),
    )
    f, iv = star(5)
    add(
        "all_masked.fits",
        "every pixel masked (ANDMASK != 0)",
        outcome="flag",
        obsid=1005,
        required=["NO_DATA", "MASKED_PIXELS"],
        write=lambda p, f=f, iv=iv: _write(p, flux=f, ivar=iv, mask=np.ones(N, bool), hdr=header(1005)),
    )
    add(
        "blue_arm_only.fits",
        "pixels 3700-4900 A only: covers a third of 4000-7000 A",
        outcome="flag",
        obsid=1006,
        required=["MASKED_PIXELS"],
        forbidden=["NO_DATA"],
        write=lambda p: _partial(p, 0, 1205, header(1006)),
    )
    add(
        "red_arm_only.fits",
        "pixels 7200-9100 A only: nothing of 4000-7000 A in the rest frame",
        outcome="flag",
        obsid=1007,
        required=["NO_DATA", "MASKED_PIXELS"],
        write=lambda p: _partial(p, 2895, N, header(1007)),
    )
    f, iv = star(8)
    add(
        "absurd_z.fits",
        "Z = 2.5 for a star",
        outcome="flag",
        obsid=1008,
        required=["BAD_Z"],
        write=lambda p, f=f, iv=iv: _write(p, flux=f, ivar=iv, hdr=header(1008, Z=2.5)),
    )
    f, iv = star(9)
    add(
        "z_below_minus_one.fits",
        "Z = -1.5 (1 + z < 0: no rest frame)",
        outcome="flag",
        obsid=1009,
        required=["BAD_Z", "NO_DATA"],
        write=lambda p, f=f, iv=iv: _write(p, flux=f, ivar=iv, hdr=header(1009, Z=-1.5)),
    )
    f, iv = star(10)
    add(
        "z_missing.fits",
        "Z = -9999 (LAMOST's missing value)",
        outcome="flag",
        obsid=1010,
        required=["BAD_Z", "NO_DATA"],
        write=lambda p, f=f, iv=iv: _write(p, flux=f, ivar=iv, hdr=header(1010, Z=-9999.0)),
    )
    f, iv = star(11, snr=3.0)
    add(
        "low_snr.fits",
        "S/N about 3 per pixel",
        outcome="flag",
        obsid=1011,
        required=["LOW_SNR"],
        forbidden=["NO_DATA", "BAD_Z"],
        write=lambda p, f=f, iv=iv: _write(p, flux=f, ivar=iv, hdr=header(1011, SNRG=3.0)),
    )
    # ---- rejected at ingestion, with the reason
    f, iv = star(12)
    add(
        "zz_duplicate_obsid.fits",
        "the OBSID of ok_image.fits again (a re-delivered file)",
        outcome="reject",
        words="OBSID 1001 is already in the catalogue",
        write=lambda p, f=f, iv=iv: _write(p, flux=f, ivar=iv, hdr=header(1001)),
    )
    add(
        "truncated.fits",
        "the first 20 000 bytes of a good file",
        outcome="reject",
        words="truncated file",
        write=lambda p: (
            _write(p, flux=star(13)[0], ivar=star(13)[1], hdr=header(1013)),
            p.write_bytes(p.read_bytes()[:20_000]),
        ),
    )
    add(
        "corrupt.fits",
        "random bytes",
        outcome="reject",
        words="not a FITS file",
        write=lambda p: p.write_bytes(np.random.default_rng(14).bytes(30_000)),
    )
    add(
        "empty.fits",
        "a file of 0 bytes",
        outcome="reject",
        words="empty file",
        write=lambda p: p.write_bytes(b""),
    )
    add(
        "wrong_layout_4_rows.fits",
        "a primary image of 4 rows instead of 5",
        outcome="reject",
        words=r"primary image has shape (4, 3909)",
        write=lambda p: _raw_image(
            p, np.vstack([*star(15), 10.0 ** (COEFF0 + COEFF1 * np.arange(N)), np.zeros(N)]), header(1015)
        ),
    )
    add(
        "table_without_flux.fits",
        "binary-table layout whose FLUX column is missing",
        outcome="reject",
        words="lacks column",
        write=lambda p: _table_without_flux(p, header(1016)),
    )
    add(
        "missing_obsid.fits",
        "no OBSID header key",
        outcome="reject",
        words="missing header key OBSID",
        write=lambda p: _write(p, flux=star(17)[0], ivar=star(17)[1], hdr=header(1017, OBSID=None)),
    )
    add(
        "missing_ra.fits",
        "no RA header key",
        outcome="reject",
        words="missing header key RA",
        write=lambda p: _write(p, flux=star(18)[0], ivar=star(18)[1], hdr=header(1018, RA=None)),
    )
    add(
        "non_numeric_z.fits",
        "Z = 'abc'",
        outcome="reject",
        words="Z has non-numeric value",
        write=lambda p: _write(p, flux=star(19)[0], ivar=star(19)[1], hdr=header(1019, Z="abc")),
    )
    add(
        "air_wavelengths.fits",
        "VACUUM = F (air wavelengths)",
        outcome="reject",
        words="VACUUM = F",
        write=lambda p: _write(p, flux=star(20)[0], ivar=star(20)[1], hdr=header(1020, VACUUM=False)),
    )
    add(
        "off_grid.fits",
        "COEFF0 half a pixel off the LAMOST grid",
        outcome="reject",
        words="not a whole number of pixels",
        write=lambda p: _raw_image(
            p,
            np.vstack(
                [*star(21), 10.0 ** (COEFF0 + 0.5e-4 + COEFF1 * np.arange(N)), np.zeros(N), np.zeros(N)]
            ),
            {**header(1021), "COEFF0": COEFF0 + 0.5e-4},
        ),
    )
    add(
        "absurd_size_header.fits",
        "a header claiming a 10^6 x 10^6 image (4 TB), no data",
        outcome="reject",
        words="claims 4000000000000 bytes",
        write=lambda p: p.write_bytes(
            fits.Header(
                [("SIMPLE", True), ("BITPIX", -32), ("NAXIS", 2), ("NAXIS1", 10**6), ("NAXIS2", 10**6)]
            )
            .tostring()
            .encode()
        ),
    )
    return cases


def _table_without_flux(path: Path, hdr: dict) -> None:
    flux, ivar = star(16)
    rows = [ivar, 10.0 ** (COEFF0 + COEFF1 * np.arange(N)), np.zeros(N), np.zeros(N)]
    cols = [
        fits.Column(name=n, format=f"{N}E", array=np.asarray(r, np.float32)[None])
        for n, r in zip(("IVAR", "WAVELENGTH", "ANDMASK", "ORMASK"), rows)
    ]
    h = fits.Header()
    for key, value in {"COEFF0": COEFF0, "COEFF1": COEFF1, "VACUUM": True, **hdr}.items():
        h[key] = value
    fits.HDUList([fits.PrimaryHDU(header=h), fits.BinTableHDU.from_columns(cols)]).writeto(
        path, overwrite=True
    )


#: Rows of bad_values.zarr: (what, how the pixels are spoiled, required flags, forbidden flags).
BAD_VALUE_ROWS = [
    ("clean", "nothing", [], INPUT_FLAGS),
    ("nan_flux_unmasked", "NaN flux on 5% of the pixels, mask False", ["NONFINITE_INPUT"], ["NO_DATA"]),
    ("inf_flux_unmasked", "+inf flux on 5% of the pixels, mask False", ["NONFINITE_INPUT"], ["NO_DATA"]),
    ("negative_ivar_unmasked", "ivar -1 on 5% of the pixels, mask False", ["NONFINITE_INPUT"], ["NO_DATA"]),
    ("nan_ivar_unmasked", "ivar NaN on 5% of the pixels, mask False", ["NONFINITE_INPUT"], ["NO_DATA"]),
    ("all_nan", "every flux NaN, mask False", ["NONFINITE_INPUT", "NO_DATA"], []),
    ("nan_z", "z NaN", ["BAD_Z", "NO_DATA"], []),
]


def write_bad_values(path: Path) -> None:
    import xarray as xr

    from lamost2csst.io import write_spectra

    n = len(BAD_VALUE_ROWS)
    flux, ivar = np.empty((n, N), np.float32), np.empty((n, N), np.float32)
    rng = np.random.default_rng(7)
    z = np.full(n, 1.0e-4)
    for i, (what, _, _, _) in enumerate(BAD_VALUE_ROWS):
        flux[i], ivar[i] = star(100 + i)
        some = rng.choice(N, size=int(0.05 * N), replace=False)
        if what == "nan_flux_unmasked":
            flux[i, some] = np.nan
        elif what == "inf_flux_unmasked":
            flux[i, some] = np.inf
        elif what == "negative_ivar_unmasked":
            ivar[i, some] = -1.0
        elif what == "nan_ivar_unmasked":
            ivar[i, some] = np.nan
        elif what == "all_nan":
            flux[i] = np.nan
        elif what == "nan_z":
            z[i] = np.nan
    ds = xr.Dataset(
        {
            "flux": (("star", "wave"), flux),
            "ivar": (("star", "wave"), ivar),
            "mask": (("star", "wave"), np.zeros((n, N), bool)),
        },
        coords={
            "wave": ("wave", LAMOST_WAVE),
            "obsid": ("star", np.arange(2001, 2001 + n, dtype=np.int64)),
            "z": ("star", z),
            "ra": ("star", np.linspace(10, 11, n)),
            "dec": ("star", np.full(n, -5.0)),
            "case": ("star", np.array([r[0] for r in BAD_VALUE_ROWS], dtype=object)),
        },
        attrs={
            "schema": "lamost2csst.spectra/1",
            "frame": "observed",
            "medium": "vacuum",
            "resolution": 2000.0,
            "source": "lamost2csst bad-input corpus",
        },
    )
    write_spectra(ds, path, chunk_stars=n, precision=None)  # the bad values bit for bit, as made


def write_wrong_schema(path: Path) -> None:
    import xarray as xr

    xr.Dataset(
        {"magnitude": (("source",), np.arange(5, dtype=np.float32))}, attrs={"schema": "someone.photometry/1"}
    ).to_zarr(path, zarr_format=3, consolidated=False)


def manifest(cases: list[dict]) -> dict:
    return {
        "description": "bad-input corpus of lamost2csst (tests/data/make_bad_inputs.py; docs/reliability.md)",
        "input_flags": INPUT_FLAGS,
        "lamost": [{k: v for k, v in c.items() if not k.startswith("_")} for c in cases],
        "bad_values": [
            {"case": w, "what": d, "required": r, "forbidden": f} for w, d, r, f in BAD_VALUE_ROWS
        ],
        "folders": {"empty_folder": "no FITS file: ingest_lamost exits 2 with 'no FITS files'"},
        "stores": {
            "wrong_schema.zarr": "not a spectra catalogue: predict_catalogue and build_flatcube exit 2",
            "bad_values.zarr": "spectra schema with NaN/inf/negative values on unmasked pixels",
        },
    }


def make(out: Path = DEFAULT_OUT) -> dict:
    """Write the corpus into ``out`` (replacing it); returns the manifest."""
    out = Path(out)
    if out.exists():
        shutil.rmtree(out)
    (out / "lamost").mkdir(parents=True)
    (out / "empty_folder").mkdir()
    (out / "empty_folder" / ".gitkeep").write_bytes(b"")
    cases = lamost_cases()
    for case in cases:
        case["_write"](out / "lamost" / case["file"])
    write_bad_values(out / "bad_values.zarr")
    write_wrong_schema(out / "wrong_schema.zarr")
    result = manifest(cases)
    (out / "manifest.json").write_text(json.dumps(result, indent=1) + "\n")
    return result


def markdown(result: dict) -> str:
    """The corpus as a Markdown table (for docs/reliability.md)."""
    test = "tests/jobs/test_bad_input_corpus.py::"
    lines = ["| input | what | outcome | checked by |", "|---|---|---|---|"]
    for c in result["lamost"]:
        if c["outcome"] == "reject":
            outcome = f'rejected at ingestion: "{c["words"]}"'
        else:
            req = ("flags " + " + ".join(c["required"])) if c["required"] else "no input flag"
            outcome = f"ingested; {req}" + (
                f"; never {', '.join(c['forbidden'])}" if c["forbidden"] and c["outcome"] != "ok" else ""
            )
        check = (
            "test_rejected_files_are_recorded_with_their_reason"
            if c["outcome"] == "reject"
            else "test_ingested_stars_carry_the_documented_flags"
        )
        lines.append(f"| `lamost/{c['file']}` | {c['what']} | {outcome} | `{test}{check}` |")
    for r in result["bad_values"]:
        req = ("flags " + " + ".join(r["required"])) if r["required"] else "no input flag"
        lines.append(
            f"| `bad_values.zarr` row `{r['case']}` | {r['what']} | {req} | "
            f"`{test}test_hand_made_catalogue_with_non_finite_values_is_flagged` |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    if sys.argv[1:] == ["--markdown"]:
        print(markdown(json.loads((DEFAULT_OUT / "manifest.json").read_text())))
        raise SystemExit(0)
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_OUT
    made = make(target)
    print(
        f"wrote {len(made['lamost'])} FITS cases, bad_values.zarr, wrong_schema.zarr, "
        f"empty_folder -> {target}"
    )
