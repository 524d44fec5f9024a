"""synth.selection.select_models on a hand-made grid: specs, not-in-grid count, subsets, parts, exclusion."""

import numpy as np
import pytest

from lamost2csst.errors import InputError
from lamost2csst.synth.selection import select_models

ALL = ("range", (-10.0, 1e5, None))


def hand_grid():
    """Teff 5000..6000 step 250 at log g 4.0 and 4.5, [M/H] 0, [alpha/M] 0; log g 2.0 only at 5000 K."""
    rows = [(t, g, 0.0, 0.0) for t in (5000.0, 5250.0, 5500.0, 5750.0, 6000.0) for g in (4.0, 4.5)]
    rows.append((5000.0, 2.0, 0.0, 0.0))
    return np.array(rows, dtype=[("teff", "f8"), ("logg", "f8"), ("feh", "f8"), ("alpha", "f8")])


def keys(rows):
    return [tuple(float(v) for v in r) for r in rows]


def test_range_step_list_and_not_in_grid():
    g = hand_grid()
    rows, missing = select_models(
        teff=("range", (5000.0, 6000.0, 500.0)), logg=("list", [4.5, 2.0]), feh=ALL, alpha=ALL, grid=g
    )
    # requested: Teff 5000, 5500, 6000 x log g 4.5, 2.0 = 6; nodes: 5000/4.5, 5500/4.5, 6000/4.5, 5000/2.0
    assert sorted(keys(rows)) == [
        (5000.0, 2.0, 0.0, 0.0),
        (5000.0, 4.5, 0.0, 0.0),
        (5500.0, 4.5, 0.0, 0.0),
        (6000.0, 4.5, 0.0, 0.0),
    ]
    assert missing == 2
    rows, missing = select_models(
        teff=("range", (5100.0, 5600.0, None)), logg=("list", [4.0]), feh=ALL, alpha=ALL, grid=g
    )
    assert keys(rows) == [(5250.0, 4.0, 0.0, 0.0), (5500.0, 4.0, 0.0, 0.0)] and missing == 0


def test_random_subset_parts_and_exclude():
    g = hand_grid()
    spec = {"teff": ALL, "logg": ALL, "feh": ALL, "alpha": ALL, "grid": g}
    a, _ = select_models(**spec, n_random=4, seed=3)
    b, _ = select_models(**spec, n_random=4, seed=3)
    assert keys(a) == keys(b) and len(set(keys(a))) == 4 and set(keys(a)) <= set(keys(g))
    parts = [set(keys(select_models(**spec, part=(k, 3), seed=1)[0])) for k in range(3)]
    assert sorted(len(p) for p in parts) == [3, 4, 4]
    assert set().union(*parts) == set(keys(g))
    rows, _ = select_models(**spec, exclude={(5000.0, 2.0, 0.0, 0.0), (6000.0, 4.5, 0.0, 0.0)})
    assert set(keys(rows)) == set(keys(g)) - {(5000.0, 2.0, 0.0, 0.0), (6000.0, 4.5, 0.0, 0.0)}


def test_user_errors():
    g = hand_grid()
    with pytest.raises(InputError, match="only 11 grid models"):
        select_models(teff=ALL, logg=ALL, feh=ALL, alpha=ALL, n_random=12, grid=g)
    with pytest.raises(InputError, match="no model"):
        select_models(teff=("list", [7000.0]), logg=ALL, feh=ALL, alpha=ALL, grid=g)
    with pytest.raises(InputError, match="no model"):
        select_models(
            teff=("list", [5000.0]),
            logg=("list", [2.0]),
            feh=ALL,
            alpha=ALL,
            grid=g,
            exclude={(5000.0, 2.0, 0.0, 0.0)},
        )
