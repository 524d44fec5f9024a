"""Job: simulate CSST slitless observations of catalogue stars with known SEDs (and store the truth).

``python -m jobs.simulate_observations --help`` explains the model and the outputs.
"""

from __future__ import annotations

import argparse
import json
import sys

from jobs._cli import positive_int

PROG = "python -m jobs.simulate_observations"

DESCRIPTION = """\
Simulate extracted 1D CSST slitless spectra (GU, GV, GI) of the stars of a catalogue whose
true SEDs are known (a catalogue with a sed_true variable, e.g. the demo catalogue of
jobs.predict_catalogue), for testing jobs.build_flatcube against a known flat.

Model (lamost2csst.core.slitless): 4 detectors of 9232 x 9216 px per band; every star is
observed --exposures times per band, each time at a random position of a random detector;
counts per R=200 pixel = scale * SED * throughput * flat(x, y, lambda) * exposure, with
scale from a magnitude uniform in --mag-range (50 counts/s/pixel at 5526-5586 A at mag 15),
the throughput a documented smooth stand-in per band (or --throughput BAND=FILE, two
columns: wavelength [A], throughput), flat = an injected large-scale response smooth in
x, y and wavelength (+-3 % by default; --max-order 2 leaves out its cubic term), and photon
+ read noise. --scale-error gives each star's known scale a relative Gaussian error.
"""

EPILOG = """\
outputs:
  OUT (Zarr v3, schema lamost2csst.slitless_observations/1): flux, error (obs, wave_out)
      counts/s (NaN outside the band); per-observation obsid, band, detector, x, y, exposure,
      scale (as known), scale_true, mag. Group 'truth': flat (band, detector, wave_out, gy,
      gx), the injected flat on a 16 x 16 pixel grid, mean 1 per wavelength.
  stdout: one JSON line (stars, observations, seconds).

examples:
  python -m jobs.simulate_observations --catalogue outputs/demo_grid_catalogue.zarr \\
      --n-stars 400 --out obs.zarr
"""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG,
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--catalogue", required=True, metavar="C.zarr", help="spectra catalogue with sed_true")
    p.add_argument("--out", required=True, metavar="O.zarr", help="observation store to create")
    p.add_argument(
        "--n-stars", type=positive_int, metavar="N", help="first N stars with a usable z (default: all)"
    )
    p.add_argument(
        "--exposures", type=positive_int, default=3, metavar="K", help="exposures per star and band"
    )
    p.add_argument("--mag-range", type=float, nargs=2, default=(12.0, 16.0), metavar=("BRIGHT", "FAINT"))
    p.add_argument(
        "--scale-error",
        type=float,
        default=0.0,
        metavar="E",
        help="relative error of each star's known scale (default: %(default)s)",
    )
    p.add_argument(
        "--amplitude", type=float, default=0.03, help="amplitude of the injected flat (default: %(default)s)"
    )
    p.add_argument(
        "--max-order",
        type=int,
        default=3,
        choices=(1, 2, 3),
        help="highest total degree of the injected flat's terms (default: %(default)s)",
    )
    p.add_argument(
        "--throughput",
        action="append",
        default=[],
        metavar="BAND=FILE",
        help="throughput file of a band (repeatable)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--chunk-obs", type=positive_int, default=4096, metavar="N", help="observations per chunk")
    return p


def main(argv=None) -> dict:
    args = build_parser().parse_args(argv)
    import time

    from lamost2csst.errors import InputError
    from lamost2csst.io.observations import simulate_observation_store

    t0 = time.perf_counter()
    try:
        result = simulate_observation_store(
            args.catalogue,
            args.out,
            n_stars=args.n_stars,
            throughput_files=args.throughput,
            chunk_obs=args.chunk_obs,
            n_exposures=args.exposures,
            seed=args.seed,
            mag_range=args.mag_range,
            scale_error=args.scale_error,
            amplitude=args.amplitude,
            max_order=args.max_order,
        )
    except InputError as err:
        print(f"{PROG}: error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    summary = {"job": "simulate_observations", **result, "seconds": round(time.perf_counter() - t0, 3)}
    print(json.dumps(summary), flush=True)
    return summary


if __name__ == "__main__":
    main()
