"""Demo catalogues of the jobs: built once, deterministically, and reused while they match."""

from __future__ import annotations

import os
import shutil


def write_with_progress(ds, path, *, client, chunk_stars: int, desc: str, progress: bool = True) -> None:
    """Write a lazy catalogue on ``client`` with a progress bar on stderr (stdout stays for the JSON line).

    ``progress=False`` (the jobs' ``--no-progress``) writes ``desc`` only, no bar.
    """
    import contextlib
    import sys

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


def ensure_demo_catalogue(path: str, *, wanted: dict, build, log) -> str:
    """Build the demo catalogue at ``path`` with ``build(tmp_path)`` unless it already holds ``wanted``.

    ``wanted`` are attrs the store must have (seed, size, source, ...); a store at ``path``
    with another ``source`` is never removed (it is not ours). The catalogue is written to a
    temporary name and renamed, so it is either complete or absent.
    """
    from lamost2csst.io import open_spectra
    from lamost2csst.parallel import JobInputError

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
            raise JobInputError(f"{path} exists but is not a demo catalogue of this job; move it away")
        log(f"{path} holds another demo ({attrs.get('demo_n_star')} stars, grid {attrs.get('demo_grid', '-')}); "
            f"rebuilding it with {n_star} stars")
        shutil.rmtree(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.tmp-{os.getpid()}"
    build(tmp)
    os.replace(tmp, path)
    return path
