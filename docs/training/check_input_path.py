"""Where does the survey job's input path add error?  (the noise-free table in EVALUATION.md)

    python docs/training/check_input_path.py [MODEL.keras]

The 506 test models of the complete grid's split (docs/training/pretrain-2024/split.json), two
noise draws each at S/N 1000 (practically noise-free), predicted by MODEL (default: the shipped
model) from inputs made four ways:

* direct: the grid's ``flux_in`` (R = 2000 on INPUT_WAVE), as in training and in the paper;
* the model's ``flux_lamost`` (R = 2000 on LAMOST_WAVE) observed at z and shifted back onto
  INPUT_WAVE, with z = 0 or z from the disc + halo radial-velocity mixture, and with the
  job's resampling done flux-conserving (what the job did until 2026-11-26) or by linear
  interpolation (the job now uses cubic convolution: EVALUATION.md).

Prints the typical error (DESIGN.md) per band: what the path costs without any noise.
"""

import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import lamost2csst
from lamost2csst.core import INPUT_WAVE, LAMOST_WAVE
from lamost2csst.core.noise import add_noise
from lamost2csst.core.normalization import normalize
from lamost2csst.core.resampling import resample
from lamost2csst.core.simulate import C_KMS, draw_radial_velocities
from lamost2csst.nn.inference import load_model, predict
from lamost2csst.nn.training import validation_metrics

SNR = 1000.0
model = load_model(sys.argv[1] if len(sys.argv) > 1 else None)
ds = lamost2csst.load_grid()
split = json.loads((Path(__file__).parent / "pretrain-2024" / "split.json").read_text())
keys = np.stack([ds[p].values for p in ("teff", "logg", "feh", "alpha")], axis=1)
test = np.repeat([int(np.flatnonzero(np.all(np.isclose(keys, t), axis=1))[0]) for t in split["test"]], 2)
n = test.size
sed = ds["sed"].values[test].astype(np.float64)
target_mask = ~np.isfinite(sed)
rest = ds["flux_lamost"].values[test].astype(np.float64)
rest /= np.median(rest, axis=1, keepdims=True)


def typical_errors(flux_in):
    """Noise at SNR on INPUT_WAVE, normalize, predict; typical error per band."""
    mask = ~np.isfinite(flux_in)
    noisy, error = add_noise(np.where(mask, 1.0, flux_in), snr=np.full(n, SNR), rng=np.random.default_rng(1))
    norm_flux, norm_error = normalize(np.where(mask, np.nan, noisy), np.where(mask, np.inf, error), mask=mask)
    mask |= ~np.isfinite(norm_flux) | ~np.isfinite(norm_error)
    pred, sigma = predict(
        np.where(mask, 1.0, norm_flux), np.where(mask, 1.0, norm_error), mask=mask, model=model
    )
    m = validation_metrics(sed, target_mask, pred, sigma, snr=np.full(n, SNR))
    return [m[f"error_snr{SNR:g}_{band}"] for band in ("GU", "GV", "GI")]


rows = [("direct (flux_in on INPUT_WAVE)", typical_errors(ds["flux_in"].values[test].astype(np.float64)))]
velocity = draw_radial_velocities(n, np.random.default_rng(5))
for method in ("flux", "linear"):
    for label, z in (("z = 0", np.zeros(n)), ("disc + halo z", velocity / C_KMS)):
        observed = resample(LAMOST_WAVE, rest, wave_out=LAMOST_WAVE, z=1 / (1 + z) - 1, method="flux").flux
        back = resample(
            LAMOST_WAVE, observed, wave_out=INPUT_WAVE, z=z, method=method, mask=~np.isfinite(observed)
        ).flux
        rows.append((f"LAMOST_WAVE, {label}, job resampling {method}", typical_errors(back)))
print(f"| input (S/N {SNR:g}, {n} spectra) | GU | GV | GI |\n|---|---:|---:|---:|")
for label, errors in rows:
    print(f"| {label} | " + " | ".join(f"{e:.4f}" for e in errors) + " |")
