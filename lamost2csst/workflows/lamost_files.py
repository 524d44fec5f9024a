"""MILES through LAMOST-like FITS files: the survey job's own path, measured on real stars.

The direct path of the real-star evaluation (:mod:`lamost2csst.workflows.real_evaluation`)
adds Eq. 1 noise to MILES degraded onto ``INPUT_WAVE`` and calls the network. The survey
meets stars differently: as LAMOST files, in the observed frame, at R ~ 1800 on
``LAMOST_WAVE``, read by ``ingest_lamost`` and prepared by ``predict_catalogue``. Here the
same MILES stars go that way:

1. :func:`lamost_observations`: each star degraded to R = 1800 (:func:`~lamost2csst.core.lsf.degrade`
   with MILES' constant 2.5 A FWHM, as the grid's ``flux_lamost`` is made at R = 2000), put
   at a radial velocity of the demo's disc + halo mixture
   (:func:`~lamost2csst.core.simulate.draw_radial_velocities`), observed with Eq. 1 noise at
   S/N ``snr`` per LAMOST pixel (:func:`~lamost2csst.core.simulate.observe_spectra`). Pixels
   MILES does not cover (it spans 3540-7410 A) are masked (``ivar = 0``). Optionally,
   LAMOST's trouble spots are injected: night-sky line residuals (a Gaussian of the LSF's
   width, ``sky_residual`` times the pixel noise, random sign per star and line) and an
   arm-junction bump (``junction_bump``, a fraction of the flux, Gaussian of 50 A sigma at
   5800 A, random sign per star); ``ivar`` does not know about them, as in survey files;
2. :func:`miles_through_files`: the files are written with
   :func:`lamost2csst.io.lamost_export.export_lamost`, ingested with
   :func:`lamost2csst.parallel.ingest_lamost`, predicted with
   :func:`lamost2csst.parallel.predict_catalogue` (once per trouble-spot treatment), and the
   predictions are compared with the MILES SED target at R = 200 (the direct path's target,
   :func:`lamost2csst.io.training.gridded_library`; NaN outside MILES' coverage);
3. :func:`miles_direct`: the direct path on the same stars and model;
   :func:`lamost_files_study` runs both, and the trouble-spot treatments on injected files.
"""

from __future__ import annotations

import contextlib
import shutil
from pathlib import Path

import numpy as np
import xarray as xr

from lamost2csst.errors import InputError

__all__ = [
    "JUNCTION_BUMP_CENTRE",
    "JUNCTION_BUMP_SIGMA",
    "LAMOST_RESOLUTION",
    "lamost_files_study",
    "lamost_observations",
    "miles_direct",
    "miles_through_files",
    "select_miles",
]

#: Resolving power of LAMOST LRS spectra (the reader's ``resolution``).
LAMOST_RESOLUTION = 1800.0
#: Centre and Gaussian sigma (A, observed) of the injected arm-junction bump.
JUNCTION_BUMP_CENTRE, JUNCTION_BUMP_SIGMA = 5800.0, 50.0
SOURCE = "lamost2csst.workflows.lamost_files.lamost_observations: MILES observed as LAMOST LRS spectra"
_OUTPUTS = (
    "fits",
    "catalogue.zarr",
    "predictions-keep.zarr",
    "predictions-inflate.zarr",
    "predictions-mask.zarr",
)


def _fill_uncovered(flux: np.ndarray, covered: np.ndarray) -> np.ndarray:
    """``flux`` with its uncovered pixels set to the star's median covered flux (finite, never used)."""
    with np.errstate(invalid="ignore"):
        level = np.nanmedian(np.where(covered, flux, np.nan), axis=1)
    level = np.where(np.isfinite(level) & (level > 0), level, 1.0)
    return np.where(covered, flux, level[:, None])


def _injected(flux, ivar, mask, *, sky_residual, junction_bump, resolution, rng):
    """Flux with sky-line residuals and an arm-junction bump added (observed frame; ivar unchanged)."""
    from lamost2csst.core import LAMOST_WAVE
    from lamost2csst.core.inputs import LAMOST_SKY_LINES
    from lamost2csst.core.lsf import FWHM_PER_SIGMA

    n = flux.shape[0]
    sky_sign = rng.choice([-1.0, 1.0], size=(n, len(LAMOST_SKY_LINES)))
    bump_sign = rng.choice([-1.0, 1.0], size=n)
    with np.errstate(divide="ignore"):
        error = np.where(ivar > 0, 1.0 / np.sqrt(ivar.astype(np.float64)), 0.0)
    out = flux.astype(np.float64)
    for k, line in enumerate(LAMOST_SKY_LINES):
        sigma = line / resolution / FWHM_PER_SIGMA
        profile = np.exp(-0.5 * ((LAMOST_WAVE - line) / sigma) ** 2)
        out += sky_residual * sky_sign[:, k, None] * error * profile[None, :]
    bump = np.exp(-0.5 * ((LAMOST_WAVE - JUNCTION_BUMP_CENTRE) / JUNCTION_BUMP_SIGMA) ** 2)
    out *= 1.0 + junction_bump * bump_sign[:, None] * bump[None, :]
    return np.where(mask, np.nan, out).astype(np.float32)


def lamost_observations(
    stars: xr.Dataset,
    *,
    snr: float = 100.0,
    seed: int = 2024,
    resolution: float = LAMOST_RESOLUTION,
    sky_residual: float = 0.0,
    junction_bump: float = 0.0,
) -> xr.Dataset:
    """Library stars (rest frame) observed as LAMOST LRS spectra: a catalogue on ``LAMOST_WAVE``.

    Parameters
    ----------
    stars : xarray.Dataset
        Rest-frame library spectra in the spectra schema (e.g. from
        :func:`lamost2csst.io.readers.mangadap.read_mangadap_miles`), with ``attrs["fwhm_angstrom"]``
        or a finite ``attrs["resolution"]``.
    snr : float
        Eq. 1 S/N per LAMOST pixel (the same at every pixel).
    seed : int
        Radial velocities from ``default_rng([seed, 31])``, noise from ``[seed, 32]``, the
        injected residuals' signs from ``[seed, 33]``.
    resolution : float
        Resolving power of the observation.
    sky_residual : float
        Peak of the injected sky-line residuals in units of the pixel noise (0: none).
    junction_bump : float
        Peak of the injected arm-junction bump as a fraction of the flux (0: none).

    Returns
    -------
    xarray.Dataset
        Spectra schema, frame "observed": ``flux`` (NaN and ``mask`` True, ``ivar`` 0 where
        the library does not cover the rest wavelength), per-star ``obsid`` (the library's),
        ``z``, ``snr_g`` and ``name``.
    """
    from lamost2csst.core import LAMOST_WAVE
    from lamost2csst.core.lsf import degradation_operator, degrade
    from lamost2csst.core.pairs import MIN_COVERAGE
    from lamost2csst.core.resampling import resample
    from lamost2csst.core.simulate import C_KMS, draw_radial_velocities, observe_spectra
    from lamost2csst.io.spectra import spectra_dataset

    if not (np.isfinite(snr) and snr > 0):
        raise InputError(f"snr must be finite and > 0, got {snr}")
    if stars.attrs.get("frame", "rest") != "rest":
        raise InputError("the library stars must be in the rest frame (attrs['frame'] == 'rest')")
    fwhm = stars.attrs.get("fwhm_angstrom")
    options = (
        {"input_fwhm": float(fwhm)}
        if fwhm is not None
        else {"input_resolution": float(stars.attrs.get("resolution", np.inf))}
    )
    if not np.isfinite(options.get("input_resolution", 1.0)):
        options = {}
    wave = stars["wave"].values
    mask_in = stars["mask"].values if "mask" in stars else None
    flux_in = stars["flux"].values.astype(np.float64)
    op = degradation_operator(wave, resolution=resolution, wave_out=LAMOST_WAVE, **options)
    rest = degrade(wave, flux_in, resolution=resolution, wave_out=LAMOST_WAVE, mask=mask_in, **options)
    covered = np.isfinite(rest) & (op.coverage >= MIN_COVERAGE)[None, :]
    rest = _fill_uncovered(rest, covered)
    n = rest.shape[0]
    z = draw_radial_velocities(n, np.random.default_rng([seed, 31])) / C_KMS
    flux, ivar, mask = observe_spectra(
        rest, wave=LAMOST_WAVE, z=z, snr=snr, scale=np.ones(n), rng=np.random.default_rng([seed, 32])
    )
    shift = 1.0 / (1.0 + z) - 1.0  # as observe_spectra shifts the rest-frame spectrum
    mask |= resample(LAMOST_WAVE, rest, wave_out=LAMOST_WAVE, mask=~covered, z=shift, method="flux").mask
    if sky_residual or junction_bump:
        flux = _injected(
            flux,
            ivar,
            mask,
            sky_residual=float(sky_residual),
            junction_bump=float(junction_bump),
            resolution=resolution,
            rng=np.random.default_rng([seed, 33]),
        )
    flux[mask] = np.nan
    ivar[mask] = 0.0
    ds = spectra_dataset(
        wave=LAMOST_WAVE,
        flux=flux,
        ivar=ivar,
        mask=mask,
        obsid=stars["obsid"].values.astype(np.int64),
        ra=np.zeros(n),
        dec=np.zeros(n),
        z=z,
        resolution=resolution,
        frame="observed",
        source=SOURCE,
        snr_g=np.full(n, float(snr)),
        name=stars["name"].values.astype(str)
        if "name" in stars.coords
        else stars["obsid"].values.astype(str),
    )
    ds.attrs.update(
        injected_sky_residual=float(sky_residual),
        injected_junction_bump=float(junction_bump),
        seed=int(seed),
    )
    return ds


@contextlib.contextmanager
def _dask_client(client):
    """``client``, or a one-worker, one-thread in-process LocalCluster for the duration."""
    if client is not None:
        yield client
        return
    from distributed import Client, LocalCluster

    with (
        LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=":0") as cluster,
        Client(cluster) as made,
    ):
        yield made


def _prepared_dir(out_dir, overwrite: bool) -> Path:
    """``out_dir`` without outputs of an earlier run (removed with ``overwrite``, else refused)."""
    out_dir = Path(out_dir)
    old = [out_dir / name for name in _OUTPUTS if (out_dir / name).exists()]
    if old and not overwrite:
        raise InputError(f"{old[0]} exists: pass overwrite=True, or another out_dir")
    for path in old:
        shutil.rmtree(path)
    out_dir.mkdir(parents=True, exist_ok=True)
    return out_dir


def _read_predictions(path: Path, obsid: np.ndarray) -> dict:
    """sed, sigma, sigma_net, flags of a predictions store, in the order of ``obsid``."""
    with xr.open_zarr(path, consolidated=False) as ds:
        where = {int(o): i for i, o in enumerate(ds["obsid"].values)}
        missing = [int(o) for o in obsid if int(o) not in where]
        if missing:
            raise InputError(f"{len(missing)} stars are missing from {path} (e.g. obsid {missing[0]})")
        rows = np.array([where[int(o)] for o in obsid])
        out = {name: ds[name].values[rows] for name in ("sed", "sigma", "sigma_net", "flags")}
        out["summary"] = ds.attrs.get("summary", {})
    return out


def miles_through_files(
    model_path,
    stars: xr.Dataset,
    *,
    out_dir,
    snr: float = 100.0,
    seed: int = 2024,
    client=None,
    trouble="mask",
    sky_residual: float = 0.0,
    junction_bump: float = 0.0,
    layout: str = "image",
    overwrite: bool = False,
) -> dict:
    """Library stars as LAMOST FITS files through ``ingest_lamost`` and ``predict_catalogue``.

    Parameters
    ----------
    model_path : path or None
        The ``.keras`` model (None: the shipped one).
    stars : xarray.Dataset
        Rest-frame library stars (the caller selects which, e.g. :func:`select_miles`); each
        must cover the SED scaling window 5526-5586 A.
    out_dir : path
        Receives ``fits/``, ``catalogue.zarr`` and ``predictions-<mode>.zarr``.
    snr, seed, sky_residual, junction_bump
        As for :func:`lamost_observations`.
    client : distributed.Client, optional
        Default: a one-worker, one-thread LocalCluster for the call.
    trouble : str or sequence of str
        The trouble-spot treatment(s) of ``predict_catalogue`` (``lamost_trouble``: "mask", the
        job's default, "inflate" or "keep"), each one a prediction run on the same files.
    layout : {"image", "table", "mixed"}
        LAMOST file layout (:func:`lamost2csst.io.lamost_export.export_lamost`).
    overwrite : bool
        Remove the outputs of an earlier run in ``out_dir`` first (else they are refused).

    Returns
    -------
    dict
        ``obsid``, ``name``, ``z`` (n,); ``target`` (n, 574) the scaled R = 200 SEDs (NaN
        outside the library's coverage); ``ingest`` (the ingest summary); ``modes``: per
        treatment ``residual`` (n, 574; NaN where the target is or where the job gave no
        SED), ``sigma`` (total), ``sigma_net``, ``flags`` (n,), ``errors``
        (:func:`lamost2csst.core.evaluation.wavelength_errors`) and ``summary``; and the first
        treatment's ``residual``, ``sigma``, ``errors`` at the top level.
    """
    from lamost2csst.core.evaluation import wavelength_errors
    from lamost2csst.core.metrics import relative_residual
    from lamost2csst.io.lamost_export import export_lamost
    from lamost2csst.io.training import gridded_library
    from lamost2csst.parallel.ingest import ingest_lamost
    from lamost2csst.parallel.predict import predict_catalogue

    modes = (trouble,) if isinstance(trouble, str) else tuple(trouble)
    out_dir = _prepared_dir(out_dir, overwrite)
    target = gridded_library(stars, inputs=False)
    obs = lamost_observations(
        stars, snr=snr, seed=seed, sky_residual=sky_residual, junction_bump=junction_bump
    )
    export_lamost(obs, out_dir / "fits", layout=layout)
    result = {
        "obsid": obs["obsid"].values,
        "name": obs["name"].values,
        "z": obs["z"].values,
        "target": target.sed,
        "modes": {},
    }
    with _dask_client(client) as c:
        result["ingest"] = ingest_lamost(
            out_dir / "fits", out_dir / "catalogue.zarr", client=c, progress=False
        )
        for mode in modes:
            path = out_dir / f"predictions-{mode}.zarr"
            predict_catalogue(
                out_dir / "catalogue.zarr",
                path,
                client=c,
                model=model_path,
                progress=False,
                lamost_trouble=mode,
            )
            got = _read_predictions(path, result["obsid"])
            unusable = target.target_mask | ~np.isfinite(got["sed"])
            residual = relative_residual(np.where(unusable, 1.0, got["sed"]), target.sed, mask=unusable)
            result["modes"][mode] = {**got, "residual": residual, "errors": wavelength_errors(residual)}
    first = result["modes"][modes[0]]
    result.update(residual=first["residual"], sigma=first["sigma"], errors=first["errors"])
    return result


def miles_direct(model_path, stars: xr.Dataset, *, snr: float = 100.0, seed: int = 2024) -> dict:
    """The direct path on the same stars: Eq. 1 noise on ``INPUT_WAVE`` (the real-star evaluation's).

    Returns ``residual``, ``sigma_net`` (n, 574) and ``errors``. The stars must have complete
    inputs (4000-7000 A covered).
    """
    from lamost2csst.core.evaluation import wavelength_errors
    from lamost2csst.io.training import gridded_library
    from lamost2csst.nn.inference import default_model_path
    from lamost2csst.workflows.realstars import predict_real_stars

    lib = gridded_library(stars)
    incomplete = lib.input_mask.any(axis=1)
    if incomplete.any():
        raise InputError(f"{int(incomplete.sum())} stars do not cover the input range 4000-7000 A")
    lib = lib.replace(flux_in=lib.flux_in.astype(np.float32), sed=lib.sed.astype(np.float32))
    residual, sigma, _, _ = predict_real_stars(model_path or default_model_path(), lib, snr=snr, seed=seed)
    return {"residual": residual, "sigma_net": sigma, "errors": wavelength_errors(residual)}


def select_miles(n_star: int = 80, *, seed: int = 2024, stars: xr.Dataset | None = None) -> xr.Dataset:
    """A seeded sample of the MILES stars of the real-star test (5000-9750 K, complete inputs).

    The candidates are :func:`lamost2csst.workflows.realstars.miles_library` with
    ``screen_rmsae=0`` (no GPR screen); ``n_star`` of them are drawn with
    ``default_rng([seed, 41])`` and returned in library order.
    """
    from lamost2csst.workflows.realstars import miles_library

    if stars is None:
        from lamost2csst.io.readers.mangadap import read_mangadap_miles

        stars = read_mangadap_miles()
    names = miles_library(stars, screen_rmsae=0.0).names
    if not 1 <= n_star <= names.size:
        raise InputError(f"n_star must be in 1..{names.size} (the usable MILES stars), got {n_star}")
    chosen = set(np.random.default_rng([seed, 41]).choice(names, size=n_star, replace=False))
    return stars.isel(star=np.flatnonzero([str(n) in chosen for n in stars["name"].values]))


def _ratio(a: list[dict], b: list[dict]) -> list[float]:
    return [round(x["error"] / y["error"], 3) for x, y in zip(a, b)]


def lamost_files_study(
    model_path=None,
    *,
    out_dir,
    n_star: int = 80,
    snr: float = 100.0,
    seed: int = 2024,
    sky_residual: float = 5.0,
    junction_bump: float = 0.0,
    modes=("keep", "inflate", "mask"),
    client=None,
    sample_seed: int | None = None,
) -> dict:
    """Direct path vs through-files, and the trouble-spot treatments on injected files (JSON-ready).

    ``out_dir/clean`` holds the files without injected trouble, ``out_dir/injected`` those
    with ``sky_residual`` and ``junction_bump``; every treatment of ``modes`` is predicted on both.
    The stars are :func:`select_miles` with ``sample_seed`` (default ``seed``); ``seed`` sets
    the noise and radial velocities of both paths.
    """
    sample_seed = seed if sample_seed is None else sample_seed
    stars = select_miles(n_star, seed=sample_seed)
    direct = miles_direct(model_path, stars, snr=snr, seed=seed)
    out = {
        "n_star": int(stars.sizes["star"]),
        "snr": snr,
        "seed": seed,
        "sample_seed": sample_seed,
        "model": str(model_path or "shipped"),
        "direct": direct["errors"],
    }
    with _dask_client(client) as c:
        for label, sky, bump in (("clean", 0.0, 0.0), ("injected", sky_residual, junction_bump)):
            got = miles_through_files(
                model_path,
                stars,
                out_dir=Path(out_dir) / label,
                snr=snr,
                seed=seed,
                client=c,
                trouble=modes,
                sky_residual=sky,
                junction_bump=bump,
                overwrite=True,
            )
            out[label] = {
                "sky_residual": sky,
                "junction_bump": bump,
                "flag_counts": {m: got["modes"][m]["summary"].get("flag_counts") for m in modes},
                "errors": {m: got["modes"][m]["errors"] for m in modes},
                "ratio_to_direct": {m: _ratio(got["modes"][m]["errors"], direct["errors"]) for m in modes},
            }
    return out
