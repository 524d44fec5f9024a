"""One-off check (2026-12-08): the paper's MILES cut E(B-V) < 0.1, with a fitted E(B-V).

The sdss-mangadap MILES files carry no E(B-V). Here each star's E(B-V) is fitted (F99, R_V 3.1,
:func:`lamost2csst.core.extinction.fit_ebv`) between its MILES SED and the SED of its best-matching
grid model (matched on the normalized input spectrum, as STELIB is dereddened), and the shipped
run's out-of-fold MILES errors are shown for all stars and for those with fitted E(B-V) < 0.1.
Caveat: the fit compares the true SED with a synthetic one, so the cut also drops stars whose
SED the grid misses for other reasons; a catalogue E(B-V) (Cenarro et al. 2007) would not.
Run from the repository root after `python -m jobs.train_model real --run-dir runs/cv-branch --domain-input`.
"""

import numpy as np

from lamost2csst.core.evaluation import MILES_WAVELENGTHS, PAPER_MILES, wavelength_errors
from lamost2csst.core.extinction import fit_ebv
from lamost2csst.core.grids import OUTPUT_WAVE
from lamost2csst.core.params import fit_parameters
from lamost2csst.workflows.libraries import grid_library
from lamost2csst.workflows.realstars import real_stars

oof = np.load("runs/cv-branch/oof.npz")
real = real_stars(("miles",))
assert list(real.names) == list(oof["names"])
lib = real.library
grid_lib, grid_params = grid_library()
match = fit_parameters(lib.flux_in, grid_lib.flux_in, grid_params[:, :3], mask=lib.input_mask)
ebv = fit_ebv(OUTPUT_WAVE, lib.sed, grid_lib.sed[match.best], mask=lib.target_mask)
print("fitted E(B-V) percentiles 10/50/90:", np.round(np.nanpercentile(ebv, [10, 50, 90]), 3))
for label, keep in (
    ("all", np.ones(len(ebv), bool)),
    ("E(B-V) < 0.1", ebv < 0.1),
    ("E(B-V) < 0.05", ebv < 0.05),
):
    errors = wavelength_errors(oof["residual"][keep], at=MILES_WAVELENGTHS)
    print(
        f"{label:14s} {int(keep.sum()):3d} stars:",
        " ".join(f"{e['error']:.4f}" for e in errors),
        "| paper",
        PAPER_MILES,
    )
