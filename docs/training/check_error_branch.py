"""Is the uncertainty branch of these UaRA-net files alive?  (the table in EVALUATION.md)

    python docs/training/check_error_branch.py MODEL.keras [MODEL.keras ...]

For each model: lamost2csst.workflows.evaluation.branch_health
(lamost2csst.nn.diagnostics.error_branch_response) on the 506 test models of the complete
grid's split (docs/training/pretrain-2024/split.json) at SNR 20 and 80: active FC'16 units,
and the median factor by which sigma changes when the stated
input errors are doubled (1.0000 exactly: sigma ignores them).
"""

import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import lamost2csst
from lamost2csst.nn.inference import load_model
from lamost2csst.workflows.evaluation import branch_health

ds = lamost2csst.load_grid()
split = json.loads((Path(__file__).parent / "pretrain-2024" / "split.json").read_text())
keys = np.stack([ds[p].values for p in ("teff", "logg", "feh", "alpha")], axis=1)
test = ds.isel(model=[int(np.flatnonzero(np.all(np.isclose(keys, t), axis=1))[0]) for t in split["test"]])
print("| model | SNR | active FC'16 units | active unit-star pairs | σ ratio, input errors x2 |")
print("|---|---:|---:|---:|---:|")
for path in sys.argv[1:] or [None]:
    model = load_model(path)
    for snr in (20.0, 80.0):
        r = branch_health(model, test, seed=2024, snr=snr)
        print(
            f"| {path or 'shipped'} | {snr:g} | {r['active_units']}/{r['units']} "
            f"| {r['active_fraction']:.3f} | {r['sigma_ratio_median']:.4f} |"
        )
