"""The jobs' demo catalogues, written on a Dask client: built once, deterministically, then reused.

Orchestration only. The stars come from :mod:`lamost2csst.io.demo` (the toy catalogue of
``jobs.normalize_catalogue``) and :mod:`lamost2csst.io.simulated` (the grid catalogue of
``jobs.predict_catalogue``); their lazy catalogues compute every block inside the graph from
its block number and the seed (the shipped grid is loaded by each worker), so the graph sent
to the scheduler holds no per-star data whatever the number of stars. This module writes
them to a Zarr store with a progress bar and reuses a store that already holds the same demo.
"""

from __future__ import annotations

import os
import shutil
import sys

__all__ = ["ensure_demo_catalogue", "grid_demo_catalogue", "toy_demo_catalogue", "write_with_progress"]


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def write_with_progress(ds, path, *, client, chunk_stars: int, desc: str, progress: bool = True) -> None:
    """Write a lazy catalogue on ``client`` with a progress bar on stderr (stdout stays for the JSON line).

    ``progress=False`` (the jobs' ``--no-progress``) writes ``desc`` only, no bar.
    """
    import contextlib

    from distributed import progress as progress_bar

    from lamost2csst.io import write_spectra

    with client.as_current():
        delayed = write_spectra(ds, path, chunk_stars=chunk_stars, mode="w", compute=False)
    future = client.compute(delayed)
    print(desc, file=sys.stderr, flush=True)
    if progress:
        with contextlib.redirect_stdout(sys.stderr):
            # this client's scheduler, not the process's default client (another client may be the default)
            progress_bar(future, scheduler=client.scheduler.address)
    future.result()


def ensure_demo_catalogue(path: str, *, wanted: dict, build, log=_stderr) -> str:
    """Build the demo catalogue at ``path`` with ``build(tmp_path)`` unless it already holds ``wanted``.

    ``wanted`` are attrs the store must have (seed, size, source, ...); a store at ``path``
    with another ``source`` is never removed (it is not ours). The catalogue is written to a
    temporary name and renamed, so it is either complete or absent.
    """
    from lamost2csst.errors import InputError
    from lamost2csst.io import open_spectra

    n_star = wanted.get("demo_n_star")
    if os.path.exists(path):
        try:
            attrs = open_spectra(path).attrs
        except ValueError:
            attrs = {}
        if all(attrs.get(k) == v for k, v in wanted.items()):
            log(f"reusing the demo catalogue {path} ({n_star} stars)")
            return path
        if attrs.get("source") != wanted["source"]:
            raise InputError(f"{path} exists but is not a demo catalogue of this job; move it away")
        held = f"{attrs.get('demo_n_star')} stars, grid {attrs.get('demo_grid', '-')}"
        log(f"{path} holds another demo ({held}); rebuilding it with {n_star} stars")
        shutil.rmtree(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.tmp-{os.getpid()}"
    build(tmp)
    os.replace(tmp, path)
    return path


def toy_demo_catalogue(
    path: str, *, n_star: int, seed: int, client, progress: bool = True, log=_stderr
) -> str:
    """The toy demo catalogue (:func:`lamost2csst.io.toy_catalogue`) at ``path``: built once on ``client``.

    Returns ``path``; a store there that holds the same demo (size, seed, blocks, source) is
    reused, one of another toy demo is rebuilt, anything else raises ``InputError``.
    """
    from lamost2csst.io.demo import BLOCK_STARS, SOURCE, toy_catalogue

    def build(tmp):
        log(f"building the demo catalogue {path}: {n_star} toy spectra (analytic stand-in), seed {seed}")
        write_with_progress(
            toy_catalogue(n_star, seed=seed, lazy=True),
            tmp,
            client=client,
            chunk_stars=BLOCK_STARS,
            desc="writing the demo catalogue",
            progress=progress,
        )

    wanted = {
        "demo_n_star": n_star,
        "demo_seed": seed,
        "demo_block_stars": BLOCK_STARS,
        "source": SOURCE,
        "spectra_kind": "synthetic",
    }
    return ensure_demo_catalogue(path, wanted=wanted, build=build, log=log)


def grid_demo_catalogue(
    path: str, *, n_star: int, seed: int, client, progress: bool = True, log=_stderr
) -> str:
    """The demo catalogue simulated from the shipped grid (:func:`lamost2csst.io.simulated.grid_catalogue`).

    Built once at ``path`` on ``client`` and reused while it holds the same demo (size, seed,
    blocks, source and grid digest); returns ``path``.
    """
    from lamost2csst.io.grid import load_grid
    from lamost2csst.io.simulated import BLOCK_STARS, SOURCE, grid_catalogue, grid_digest

    grid = load_grid()

    def build(tmp):
        log(
            f"building the demo catalogue {path}: {n_star} LAMOST-like stars simulated from the shipped grid "
            f"({grid.sizes['model']} models), seed {seed}"
        )
        # grid=None: each worker loads the shipped grid itself, the graph carries none of it
        write_with_progress(
            grid_catalogue(n_star, seed=seed, lazy=True),
            tmp,
            client=client,
            chunk_stars=BLOCK_STARS,
            desc="simulating and writing the demo catalogue",
            progress=progress,
        )

    wanted = {
        "demo_n_star": n_star,
        "demo_seed": seed,
        "demo_block_stars": BLOCK_STARS,
        "source": SOURCE,
        "demo_grid": grid_digest(grid),
        "spectra_kind": "synthetic",
    }
    return ensure_demo_catalogue(path, wanted=wanted, build=build, log=log)
