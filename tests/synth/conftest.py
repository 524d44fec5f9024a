"""Shared skips and fixtures of the synthesis tests."""

from pathlib import Path

import pytest

#: A tiny Castelli-Kurucz grid: the whole index, the blocks of five models (tests/data/synth).
KURUCZ_FIXTURE = Path(__file__).resolve().parent.parent / "data" / "synth" / "kurucz"


@pytest.fixture(scope="module", autouse=True)
def kurucz_fixture():
    """Every synthesis test reads the ATLAS9 grid from the committed fixture (no download).

    It holds the full index (so :func:`~lamost2csst.synth.atmospheres.grid` is the real grid)
    and the model blocks of (Teff, log g, [M/H], [alpha/M]) = (5000, 4.5, 0, 0),
    (5250, 4.5, 0, 0), (5500, 4.5, 0, 0), (5000, 4.5, -1, 0.4) and (9000, 4.0, 0, 0) only.
    """
    from lamost2csst.synth.atmospheres import grid

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LAMOST2CSST_KURUCZ_DIR", str(KURUCZ_FIXTURE))
        grid.cache_clear()
        yield KURUCZ_FIXTURE
    grid.cache_clear()


@pytest.fixture(scope="session")
def synspec_ready():
    """Synspec built and line lists converted (cache); skip when that is impossible here."""
    from lamost2csst.synth.build import SynspecBuildError, ensure_synspec
    from lamost2csst.synth.linelists import ensure_linelists

    try:
        ensure_synspec()
        ensure_linelists()
    except SynspecBuildError as err:  # no gfortran, or no registry to download sdists from
        pytest.skip(f"Synspec or line lists unavailable: {err}")
    return True
