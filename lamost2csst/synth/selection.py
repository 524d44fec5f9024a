"""Which models of the Castelli-Kurucz grid a synthesis run takes: value specs, random subsets, parts.

A *spec* of one parameter is ``("range", (lo, hi, step))`` (inclusive; ``step`` None means
every grid node in between) or ``("list", [v1, v2, ...])``; ``jobs.synthesize_grid`` parses
them from ``a:b``, ``a:b:step`` and ``x,y``. Numpy only (and the grid of
:mod:`lamost2csst.synth.atmospheres`).
"""

from __future__ import annotations

import numpy as np

from lamost2csst.errors import InputError

__all__ = ["PARAMETERS", "select_models"]

PARAMETERS = ("teff", "logg", "feh", "alpha")
#: How close a value must be to a node to be that node.
_TOL = {"teff": 0.5, "logg": 0.005, "feh": 0.005, "alpha": 0.005}


def _matches(values: np.ndarray, spec, tol: float) -> np.ndarray:
    kind, v = spec
    if kind == "list":
        return np.any(np.abs(values[:, None] - np.asarray(v)[None, :]) <= tol, axis=1)
    lo, hi, step = v
    ok = (values >= lo - tol) & (values <= hi + tol)
    if step is not None:
        k = np.round((values - lo) / step)
        ok &= np.abs(values - (lo + k * step)) <= tol
    return ok


def _requested_values(spec, available: np.ndarray, tol: float) -> np.ndarray:
    """The values a spec asks for: the list, or the range's lattice/available nodes."""
    kind, v = spec
    if kind == "list":
        return np.asarray(v, dtype=float)
    lo, hi, step = v
    if step is None:
        return np.unique(available[_matches(available, spec, tol)])
    return lo + step * np.arange(int(np.floor((hi - lo) / step + 1e-9)) + 1)


def select_models(
    *,
    teff,
    logg,
    feh,
    alpha,
    n_random: int | None = None,
    seed: int = 0,
    part: tuple[int, int] | None = None,
    exclude=(),
    grid=None,
) -> tuple[np.ndarray, int]:
    """The grid models a run synthesizes, and how many requested combinations are no grid node.

    Parameters
    ----------
    teff, logg, feh, alpha : spec
        ``("range", (lo, hi, step))`` or ``("list", values)`` (module docstring).
    n_random : int, optional
        Keep a random subset of this many models (``numpy.random.default_rng(seed)``).
    seed : int
        Seed of ``n_random`` and ``part``.
    part : (k, n), optional
        Keep part ``k`` of ``n`` disjoint parts, dealt at random (``default_rng([seed, n])``).
    exclude : set of (teff, logg, feh, alpha)
        Models to leave out, parameters rounded to 4 decimals (e.g. those of the shipped grid).
    grid : structured array, optional
        The grid to select from; default :func:`lamost2csst.synth.atmospheres.grid`.

    Returns
    -------
    rows : structured array
        The selected rows of the grid (fields ``teff``, ``logg``, ``feh``, ``alpha``, ...).
    not_in_grid : int
        Requested combinations that are not grid nodes.

    Raises
    ------
    InputError
        ``n_random`` above the number of matching models, or no model left.
    """
    if grid is None:
        from lamost2csst.synth.atmospheres import grid as atlas_grid

        grid = atlas_grid()
    specs = {"teff": teff, "logg": logg, "feh": feh, "alpha": alpha}
    sel = np.ones(grid.size, bool)
    n_requested = 1
    for name, spec in specs.items():
        sel &= _matches(grid[name], spec, _TOL[name])
        n_requested *= _requested_values(spec, np.unique(grid[name]), _TOL[name]).size
    rows = grid[sel]
    not_in_grid = max(n_requested - rows.size, 0)
    if n_random is not None:
        if n_random > rows.size:
            raise InputError(f"--n-random {n_random}: only {rows.size} grid models match the ranges")
        rng = np.random.default_rng(seed)
        pick = np.sort(rng.choice(rows.size, size=n_random, replace=False))
        rows = rows[pick]
    if part is not None:
        k, n = part
        order = np.random.default_rng([seed, n]).permutation(rows.size)
        rows = rows[np.sort(order[k::n])]
    if exclude:
        keys = zip(rows["teff"], rows["logg"], rows["feh"], rows["alpha"])
        rows = rows[~np.array([tuple(np.round(v, 4)) in exclude for v in keys], dtype=bool)]
    if rows.size == 0:
        raise InputError("no model of the Castelli-Kurucz grid matches --teff/--logg/--feh/--alpha")
    return rows, not_in_grid
