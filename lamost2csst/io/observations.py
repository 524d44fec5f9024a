"""The slitless observation schema: extracted 1D CSST spectra of stars, one row per observation.

::

    <xarray.Dataset>
    Dimensions:  (obs: N, wave_out: 574)
    Coordinates:
      * wave_out  (wave_out) float64  OUTPUT_WAVE, vacuum A
        obsid     (obs) int64    the star (joins lamost2csst.predictions/2 by obsid)   [required]
        band      (obs) str      GU, GV or GI                                           [required]
        detector  (obs) int16    0..3 within the band                                   [required]
        x, y      (obs) float64  pixel position of the spectrum's reference point      [required]
        exposure  (obs) float64  seconds                                                [required]
        scale     (obs) float64  the star's absolute scale at 5526-5586 A where known (NaN if not)
    Data variables:
        flux   (obs, wave_out) float32  extracted flux, instrument units (NaN outside the band)
        error  (obs, wave_out) float32  its 1-sigma error
    Attributes:
        schema  "lamost2csst.slitless_observations/1"

A simulation stores its truth beside the observations, in the Zarr group ``truth`` of the
same store: ``flat`` (band, detector, wave_out, gy, gx) on the pixel grid ``gy``, ``gx``,
normalized to mean 1 per wavelength over the detector.
"""

from __future__ import annotations

import os

import numpy as np
import xarray as xr
import zarr

from lamost2csst.core.grids import BANDS
from lamost2csst.core.slitless import DETECTOR_SHAPE, DETECTORS_PER_BAND
from lamost2csst.errors import InputError
from lamost2csst.io.storage import resolve

__all__ = ["OBSERVATIONS_SCHEMA", "validate_observations"]

OBSERVATIONS_SCHEMA = "lamost2csst.slitless_observations/1"
REQUIRED_COORDS = ("obsid", "band", "detector", "x", "y", "exposure")


def validate_observations(ds: xr.Dataset) -> xr.Dataset:
    """Check the layout (not the values, which the flat-cube job flags one by one); list every problem."""
    problems = []
    if ds.attrs.get("schema") != OBSERVATIONS_SCHEMA:
        problems.append(f"attrs['schema'] is {ds.attrs.get('schema')!r}, expected {OBSERVATIONS_SCHEMA!r}")
    for name in ("flux", "error"):
        if name not in ds.data_vars:
            problems.append(f"missing data variable {name!r}")
        elif ds[name].dims != ("obs", "wave_out"):
            problems.append(f"{name} has dims {ds[name].dims}, expected ('obs', 'wave_out')")
    for name in REQUIRED_COORDS:
        if name not in ds.coords:
            problems.append(f"missing per-observation coordinate {name!r}")
        elif ds[name].dims != ("obs",):
            problems.append(f"{name} has dims {ds[name].dims}, expected ('obs',)")
    if "wave_out" not in ds.coords:
        problems.append("missing coordinate 'wave_out'")
    if problems:
        raise ValueError("not a lamost2csst slitless observation store:\n  - " + "\n  - ".join(problems))
    return ds


def open_observations(path) -> xr.Dataset:
    """The observation store at ``path``, opened lazily and validated (``ValueError`` lists the problems)."""
    return validate_observations(xr.open_zarr(resolve(path), consolidated=False))


def read_scales(path) -> tuple[np.ndarray, np.ndarray]:
    """``(obsid, scale)`` of every observation of the store at ``path`` (scale as float64)."""
    group = zarr.open_group(resolve(path), mode="r")
    return group["obsid"][...], group["scale"][...].astype(np.float64)


def read_truth(path) -> xr.Dataset | None:
    """The injected truth of a simulated store (group ``truth``), loaded; None for real observations."""
    try:
        return xr.open_zarr(resolve(path), group="truth", consolidated=False).load()
    except Exception:  # noqa: BLE001 - no truth group: real observations
        return None


def band_names() -> tuple[str, ...]:
    return tuple(BANDS)


def detector_grid(n: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """Pixel centres (gy, gx) of the coarse ``n x n`` grid on which flats are evaluated."""
    ny, nx = DETECTOR_SHAPE
    return (np.linspace(0, ny - 1, n), np.linspace(0, nx - 1, n))


def _check_seds(sed, obsid) -> tuple[np.ndarray, np.ndarray]:
    """``sed`` as float64 and ``obsid`` as int64, checked: one finite SED on OUTPUT_WAVE per star.

    Parameters
    ----------
    sed : array-like, (n_star, n_wave_out)
        True SEDs on ``OUTPUT_WAVE``.
    obsid : array-like, (n_star,)
        The stars' obsids.

    Returns
    -------
    tuple of numpy.ndarray
        ``(sed, obsid)``.

    Raises
    ------
    ValueError
        Wrong shape, or a non-finite SED value.
    """
    from lamost2csst.core.grids import OUTPUT_WAVE

    sed = np.asarray(sed, dtype=np.float64)
    obsid = np.asarray(obsid, dtype=np.int64)
    if sed.ndim != 2 or sed.shape != (obsid.size, OUTPUT_WAVE.size):
        raise ValueError(f"sed must be (n_star, {OUTPUT_WAVE.size}) with one obsid per star")
    if not np.all(np.isfinite(sed)):
        raise ValueError("true SEDs must be finite")
    return sed, obsid


def _simulate_band(
    band: str,
    *,
    sed: np.ndarray,
    obsid: np.ndarray,
    mag: np.ndarray,
    scale_true: np.ndarray,
    scale_known: np.ndarray,
    rng: np.random.Generator,
    n_exposures: int,
    exposure: float,
    amplitude: float,
    throughputs: dict,
    max_order: int,
) -> dict:
    """The observations of every star in one band: ``n_exposures`` per star, on random detectors.

    Parameters
    ----------
    band : str
        GU, GV or GI.
    sed, obsid, mag, scale_true, scale_known : numpy.ndarray
        Per star: true SED (n_star, n_wave_out), obsid, magnitude, true and stored scale.
    rng : numpy.random.Generator
        Draws, in this order: detectors, x, y, then the noise of ``observe_slitless``.
    n_exposures, exposure, amplitude, throughputs, max_order
        As in :func:`simulate_observations`.

    Returns
    -------
    dict
        Per-observation arrays: flux, error, obsid, band, detector, x, y, exposure, scale,
        scale_true, mag.
    """
    from lamost2csst.core.grids import OUTPUT_WAVE
    from lamost2csst.core.slitless import default_throughput, injected_response, observe_slitless

    ny, nx = DETECTOR_SHAPE
    star = np.repeat(np.arange(obsid.size), n_exposures)
    n = star.size
    detector = rng.integers(0, DETECTORS_PER_BAND, n).astype(np.int16)
    x, y = rng.uniform(0, nx - 1, n), rng.uniform(0, ny - 1, n)
    throughput = throughputs.get(band, default_throughput(band))
    flat = np.empty((n, OUTPUT_WAVE.size))
    for d in range(DETECTORS_PER_BAND):
        on = detector == d
        flat[on] = injected_response(
            x[on], y[on], band=band, detector=d, amplitude=amplitude, max_order=max_order
        )
    flux, error = observe_slitless(
        sed[star],
        scale=scale_true[star],
        throughput=throughput,
        flat=flat,
        exposure=np.full(n, exposure),
        rng=rng,
    )
    return dict(
        flux=flux,
        error=error,
        obsid=obsid[star],
        band=np.full(n, band, dtype=object),
        detector=detector,
        x=x,
        y=y,
        exposure=np.full(n, exposure),
        scale=scale_known[star],
        scale_true=scale_true[star],
        mag=mag[star],
    )


def _truth_flats(
    gy: np.ndarray, gx: np.ndarray, *, grid_points: int, amplitude: float, max_order: int, throughputs: dict
) -> np.ndarray:
    """The injected flats on the grid ``gy`` x ``gx``, float32 (band, detector, wave_out, gy, gx).

    Parameters
    ----------
    gy, gx : numpy.ndarray
        Pixel centres of the coarse grid (:func:`detector_grid`).
    grid_points, amplitude, max_order, throughputs
        As in :func:`simulate_observations`.

    Returns
    -------
    numpy.ndarray
        The flats, NaN at wavelengths outside the band's throughput.
    """
    from lamost2csst.core.grids import OUTPUT_WAVE
    from lamost2csst.core.slitless import default_throughput, injected_response

    yy, xx = np.meshgrid(gy, gx, indexing="ij")
    truth = np.stack(
        [
            np.stack(
                [
                    injected_response(
                        xx.ravel(),
                        yy.ravel(),
                        band=band,
                        detector=d,
                        amplitude=amplitude,
                        max_order=max_order,
                    ).T.reshape(OUTPUT_WAVE.size, grid_points, grid_points)
                    for d in range(DETECTORS_PER_BAND)
                ]
            )
            for band in BANDS
        ]
    )
    inside = np.stack([(throughputs.get(b, default_throughput(b)) > 0) for b in BANDS])  # (band, wave)
    return np.where(inside[:, None, :, None, None], truth, np.nan).astype(np.float32)


def _observation_dataset(cat: dict, *, wave: tuple, attrs: dict) -> xr.Dataset:
    """The observation Dataset (schema of the module doc) of the concatenated per-observation arrays.

    Parameters
    ----------
    cat : dict
        Per-observation arrays, as :func:`_simulate_band` returns them.
    wave : tuple
        The ``wave_out`` coordinate (dims, values, attrs).
    attrs : dict
        The simulation's attrs (besides ``schema``).

    Returns
    -------
    xarray.Dataset
    """
    return xr.Dataset(
        {
            "flux": (
                ("obs", "wave_out"),
                cat["flux"],
                {"long_name": "extracted slitless flux", "units": "counts/s"},
            ),
            "error": (
                ("obs", "wave_out"),
                cat["error"],
                {"long_name": "1-sigma error of flux", "units": "counts/s"},
            ),
        },
        coords={
            "wave_out": wave,
            **{
                k: ("obs", cat[k])
                for k in ("obsid", "band", "detector", "x", "y", "exposure", "scale", "scale_true", "mag")
            },
        },
        attrs={"schema": OBSERVATIONS_SCHEMA, **attrs},
    )


def _truth_dataset(
    truth: np.ndarray, *, wave: tuple, gy: np.ndarray, gx: np.ndarray, attrs: dict
) -> xr.Dataset:
    """The truth Dataset: ``flat`` (band, detector, wave_out, gy, gx), schema ``lamost2csst.flat_truth/1``.

    Parameters
    ----------
    truth : numpy.ndarray
        The flats, as :func:`_truth_flats` returns them.
    wave : tuple
        The ``wave_out`` coordinate (dims, values, attrs).
    gy, gx : numpy.ndarray
        Pixel centres of the grid.
    attrs : dict
        The simulation's attrs (besides ``schema``).

    Returns
    -------
    xarray.Dataset
    """
    return xr.Dataset(
        {
            "flat": (
                ("band", "detector", "wave_out", "gy", "gx"),
                truth,
                {"long_name": "injected large-scale flat (mean 1 per wavelength over the detector)"},
            )
        },
        coords={
            "wave_out": wave,
            "band": ("band", np.array(list(BANDS), dtype=object)),
            "detector": ("detector", np.arange(DETECTORS_PER_BAND)),
            "gy": ("gy", gy),
            "gx": ("gx", gx),
        },
        attrs={"schema": "lamost2csst.flat_truth/1", **attrs},
    )


def simulate_observations(
    sed,
    obsid,
    *,
    n_exposures: int = 3,
    seed: int = 0,
    mag_range=(12.0, 16.0),
    exposure: float = 150.0,
    scale_error: float = 0.0,
    amplitude: float = 0.03,
    throughputs: dict | None = None,
    grid_points: int = 16,
    max_order: int = 3,
):
    """Simulated CSST slitless observations of stars with true SEDs, and the injected truth.

    Every star is observed ``n_exposures`` times in each band, each time on a random
    detector of the band at a random position, with ``lamost2csst.core.slitless``'s photon and
    read noise. Brightness: a magnitude uniform in ``mag_range``; ``scale`` = 50 counts/s per
    pixel at 5526-5586 A at magnitude 15 (x 10^(-0.4 (mag - 15))). ``scale_error`` > 0 stores
    a scale off by a relative N(0, scale_error) per star (the star's scale is only as well
    known as its absolute photometry).

    Returns ``(observations, truth)``: the observation Dataset (schema above, with the extra
    per-observation ``scale_true`` and ``mag``) and the truth Dataset, ``flat`` (band,
    detector, wave_out, gy, gx): the injected flats on a ``grid_points`` x ``grid_points``
    grid (stored by the simulation job in the group ``truth`` of the observation store).
    """
    from lamost2csst.core.grids import OUTPUT_WAVE

    sed, obsid = _check_seds(sed, obsid)
    rng = np.random.default_rng(seed)
    n_star = obsid.size
    mag = rng.uniform(*mag_range, n_star)
    scale_true = 50.0 * 10.0 ** (-0.4 * (mag - 15.0))
    scale_known = scale_true * (1.0 + rng.normal(0.0, scale_error, n_star)) if scale_error > 0 else scale_true
    throughputs = throughputs or {}
    parts = [
        _simulate_band(
            band,
            sed=sed,
            obsid=obsid,
            mag=mag,
            scale_true=scale_true,
            scale_known=scale_known,
            rng=rng,
            n_exposures=n_exposures,
            exposure=exposure,
            amplitude=amplitude,
            throughputs=throughputs,
            max_order=max_order,
        )
        for band in BANDS
    ]
    cat = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    gy, gx = detector_grid(grid_points)
    truth = _truth_flats(
        gy, gx, grid_points=grid_points, amplitude=amplitude, max_order=max_order, throughputs=throughputs
    )
    wave = ("wave_out", OUTPUT_WAVE, {"units": "Angstrom", "medium": "vacuum"})
    attrs = {
        "source": "lamost2csst.io.observations.simulate_observations",
        "seed": int(seed),
        "n_exposures": int(n_exposures),
        "scale_error": float(scale_error),
        "amplitude": float(amplitude),
        "detector_shape": list(DETECTOR_SHAPE),
        "max_order": int(max_order),
    }
    obs = _observation_dataset(cat, wave=wave, attrs=attrs)
    return obs, _truth_dataset(truth, wave=wave, gy=gy, gx=gx, attrs=attrs)


def write_observations(
    obs: xr.Dataset, path, *, truth: xr.Dataset | None = None, chunk_obs: int = 4096
) -> None:
    """Write observations (chunked along ``obs``; numpy data written directly, no dask graph)
    and, if given, the truth into the group ``truth`` of the same store."""
    validate_observations(obs)
    chunk = max(1, min(int(chunk_obs), obs.sizes["obs"]))
    encoding = {
        name: {"chunks": tuple(chunk if d == "obs" else obs.sizes[d] for d in var.dims)}
        for name, var in obs.variables.items()
        if "obs" in var.dims
    }
    obs.to_zarr(path, mode="w-", zarr_format=3, consolidated=False, encoding=encoding)
    if truth is not None:
        truth.to_zarr(path, group="truth", zarr_format=3, consolidated=False)


def _simulate_from_catalogue(catalogue: str, *, n_stars: int | None, throughput_files, **kwargs):
    """``(observations, truth, n_stars)`` simulated for the catalogue's stars with a usable z."""
    from lamost2csst.core.slitless import read_throughput

    cat = xr.open_zarr(catalogue, consolidated=False)
    if "sed_true" not in cat:
        raise ValueError(f"{catalogue} has no sed_true (true SEDs): simulate from a demo catalogue")
    usable = np.flatnonzero(np.isfinite(cat["z"].values))
    rows = usable[:n_stars] if n_stars else usable
    throughputs = {}
    for item in throughput_files:
        band, _, path = item.partition("=")
        if band not in ("GU", "GV", "GI") or not path:
            raise ValueError(f"--throughput expects BAND=FILE with BAND in GU, GV, GI, got {item!r}")
        throughputs[band] = read_throughput(path)
    obs, truth = simulate_observations(
        cat["sed_true"].values[rows], cat["obsid"].values[rows], throughputs=throughputs, **kwargs
    )
    return obs, truth, int(rows.size)


def simulate_observation_store(
    catalogue, out, *, n_stars: int | None = None, throughput_files=(), chunk_obs: int = 4096, **kwargs
) -> dict:
    """Simulate observations of the stars of a spectra catalogue with ``sed_true`` into the store ``out``.

    The first ``n_stars`` stars with a finite ``z`` (default: all) are observed by
    :func:`simulate_observations` (``kwargs``: ``n_exposures``, ``seed``, ``mag_range``,
    ``scale_error``, ``amplitude``, ``max_order``); ``throughput_files`` are ``BAND=FILE``
    items (:func:`lamost2csst.core.slitless.read_throughput`). The truth goes into the group
    ``truth`` of ``out``. Returns ``{"out", "stars", "observations"}``.

    Raises
    ------
    InputError
        ``out`` exists, the catalogue cannot be read or has no ``sed_true``, a bad
        throughput item or file, unusable SEDs (nothing is written).
    """
    catalogue, out = os.fspath(catalogue), os.fspath(out)
    try:
        if os.path.exists(out):
            raise ValueError(f"{out} already exists; choose another --out or remove it")
        obs, truth, stars = _simulate_from_catalogue(
            catalogue, n_stars=n_stars, throughput_files=throughput_files, **kwargs
        )
    except (OSError, ValueError) as err:
        raise InputError(str(err)) from None
    obs.attrs["catalogue"] = os.path.abspath(catalogue)
    write_observations(obs, out, truth=truth, chunk_obs=chunk_obs)
    return {"out": os.path.abspath(out), "stars": stars, "observations": int(obs.sizes["obs"])}


__all__ += [
    "DETECTORS_PER_BAND",
    "band_names",
    "detector_grid",
    "open_observations",
    "read_scales",
    "read_truth",
    "simulate_observation_store",
    "simulate_observations",
    "write_observations",
]
