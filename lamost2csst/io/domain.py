"""The domain check's template spectra and the synthetic sets around the training domain.

Two sets of synthetic spectra are shipped beside the training grid, made with the same
synthesis (``python -m jobs.synthesize_grid``, ATLAS9 + Synspec; commands and timings in
``lamost2csst/data/domain/README.md``), in the grid's packed-part format
(:func:`lamost2csst.io.grid.load_grid` reads them):

* ``reference/``: models BEYOND the network's domain (3500-4500 K and 10250-20000 K). With the
  network's own training models they are the templates of the domain check
  (:mod:`lamost2csst.core.domain`): a Teff estimate can only leave the domain if templates
  exist outside it.
* ``test/``: the out-of-domain TEST set (4000-4500 K dwarfs and giants, 10500-15000 K), never
  used as templates; the flag's thresholds were chosen on it and on the grid's test split
  (EVALUATION.md, "Domain check").

:func:`domain_templates` builds the templates: the training models of a model (its card's
split; all grid models when the card has none) and the reference models, normalized like the
network's input (:func:`lamost2csst.core.normalize` of the noise-free ``flux_in``) and binned
(:func:`lamost2csst.core.domain.bin_spectra`), with their colours
(:func:`lamost2csst.core.domain.spectrum_color` of ``flux_in``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lamost2csst.core.domain import DEFAULT_PIXELS_PER_BIN, DomainTemplates, bin_spectra, spectrum_color
from lamost2csst.core.grids import INPUT_WAVE
from lamost2csst.core.normalization import normalize
from lamost2csst.io.grid import GRID_DIR, load_grid

__all__ = ["DOMAIN_DIR", "REFERENCE_DIR", "TEST_DIR", "domain_templates", "load_domain_test_set"]

DOMAIN_DIR = Path(__file__).resolve().parent.parent / "data" / "domain"
REFERENCE_DIR = DOMAIN_DIR / "reference"
TEST_DIR = DOMAIN_DIR / "test"
_PARAMETERS = ("teff", "logg", "feh", "alpha")


def _keys(ds) -> np.ndarray:
    return np.round(np.stack([ds[p].values.astype(np.float64) for p in _PARAMETERS], axis=1), 3)


def _binned_templates(ds, pixels_per_bin: int) -> np.ndarray:
    flux, _ = normalize(ds["flux_in"].values.astype(np.float64))
    return bin_spectra(flux, pixels_per_bin=pixels_per_bin)[0]


def domain_templates(
    *,
    train_keys=None,
    grid=None,
    reference=None,
    pixels_per_bin: int = DEFAULT_PIXELS_PER_BIN,
) -> DomainTemplates:
    """Templates of the domain check: a model's training models plus the reference models beyond its domain.

    Parameters
    ----------
    train_keys : array_like (n, 4), optional
        (teff, logg, feh, alpha) of the network's training models (its model card's
        ``split["train"]``); only those grid models become templates, so that the grid's test
        split stays a fair in-domain test. None: every grid model.
    grid, reference : path, optional
        Directories of packed parts (default: the shipped grid and ``data/domain/reference``).
    pixels_per_bin : int

    Returns
    -------
    DomainTemplates
        ``quantization``: the median relative Teff step between the grid's distinct Teff values
        over the domain, divided by sqrt(12) (a uniform step's standard deviation).

    Raises
    ------
    ValueError
        ``train_keys`` names models that are not in the grid.
    """
    grid_ds = load_grid(grid)
    ref_ds = load_grid(REFERENCE_DIR if reference is None else reference)
    if train_keys is not None:
        wanted = {tuple(k) for k in np.round(np.asarray(train_keys, dtype=np.float64), 3)}
        keys = [tuple(k) for k in _keys(grid_ds)]
        keep = np.array([k in wanted for k in keys])
        if keep.sum() != len(wanted):
            raise ValueError(
                f"{len(wanted) - int(keep.sum())} training models of the model card are not in the grid"
            )
        grid_ds = grid_ds.isel(model=np.flatnonzero(keep))
    flux = np.vstack([_binned_templates(grid_ds, pixels_per_bin), _binned_templates(ref_ds, pixels_per_bin)])
    teff = np.concatenate([grid_ds["teff"].values, ref_ds["teff"].values]).astype(np.float64)
    color = np.concatenate([spectrum_color(INPUT_WAVE, ds["flux_in"].values) for ds in (grid_ds, ref_ds)])
    steps = np.diff(np.log(np.unique(grid_ds["teff"].values.astype(np.float64))))
    return DomainTemplates(
        flux=flux,
        teff=teff,
        pixels_per_bin=pixels_per_bin,
        quantization=float(np.median(steps) / np.sqrt(12.0)) if steps.size else 0.0,
        color=color,
        provenance={
            "grid": str(GRID_DIR if grid is None else grid),
            "grid_models": int(grid_ds.sizes["model"]),
            "grid_models_from": "model card split['train']" if train_keys is not None else "all",
            "reference": str(REFERENCE_DIR if reference is None else reference),
            "reference_models": int(ref_ds.sizes["model"]),
            "pixels_per_bin": int(pixels_per_bin),
        },
    )


def load_domain_test_set(path=None):
    """The out-of-domain synthetic test set (a grid Dataset; default ``data/domain/test``)."""
    return load_grid(TEST_DIR if path is None else path)
