"""Plot normalized inputs and scaled SEDs of the synthetic grid across Teff (a PNG for docs/).

python -m jobs.plot_grid --out docs/grid.png [--grid DIR] [--logg 4.0] [--feh 0.0] [--alpha 0.0]
"""

from __future__ import annotations

import argparse

import numpy as np

from jobs._cli import run_cli


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m jobs.plot_grid",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--out", default="docs/grid.png", help="PNG file to write (default %(default)s)")
    parser.add_argument("--grid", default=None, help="directory of grid parts (default: the shipped grid)")
    parser.add_argument(
        "--logg", type=float, default=4.0, help="log g of the models shown (default %(default)s)"
    )
    parser.add_argument(
        "--feh", type=float, default=0.0, help="[M/H] of the models shown (default %(default)s)"
    )
    parser.add_argument(
        "--alpha", type=float, default=0.0, help="[alpha/M] of the models shown (default %(default)s)"
    )
    return parser


def main(argv=None) -> str:
    args = build_parser().parse_args(argv)
    return run_cli("plot_grid", args, plot, client=False)


def plot(args: argparse.Namespace) -> str:
    """Write the PNG ``args.out`` and print its path; a missing grid or model is an InputError."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from lamost2csst.core import INPUT_WAVE, OUTPUT_WAVE, normalize
    from lamost2csst.errors import InputError
    from lamost2csst.io.grid import load_grid

    try:
        grid = load_grid(args.grid)
    except ValueError as err:
        raise InputError(str(err)) from None
    sel = np.asarray(
        np.isclose(grid.logg, args.logg) & np.isclose(grid.feh, args.feh) & np.isclose(grid.alpha, args.alpha)
    )
    if not sel.any():
        raise InputError(f"no model with logg {args.logg}, [M/H] {args.feh}, [alpha/M] {args.alpha}")
    models = grid.isel(model=np.flatnonzero(sel)).sortby("teff")
    colors = plt.cm.coolwarm_r(np.linspace(0, 1, models.sizes["model"]))
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 5.5))
    for i, color in enumerate(colors):
        m = models.isel(model=i)
        flux, _ = normalize(m["flux_in"].values)
        label = f"{m.teff.item():.0f} K"
        left.plot(INPUT_WAVE, flux + 0.5 * i, color=color, lw=0.6, label=label)
        right.plot(OUTPUT_WAVE, m["sed"].values, color=color, lw=1.0, label=label)
    left.set(
        xlabel="vacuum wavelength (Å)",
        ylabel="normalized flux + offset",
        title="UaRA-net input: R=2000, normalized (INPUT_WAVE)",
    )
    right.set(
        xlabel="vacuum wavelength (Å)",
        ylabel="flux / mean(5526–5586 Å)",
        yscale="log",
        title="target: R=200 SED, scaled (OUTPUT_WAVE)",
    )
    for lo, hi, name in ((2550, 4200, "GU"), (4000, 6500, "GV"), (6200, 10000, "GI")):
        right.axvspan(lo, hi, alpha=0.06, color="k")
        right.text((lo + hi) / 2, 0.012, name, ha="center")
    right.legend(fontsize=8, loc="lower right")
    fig.suptitle(
        f"lamost2csst synthetic grid (ATLAS9 + Synspec), log g {args.logg}, [M/H] {args.feh}, "
        f"[α/M] {args.alpha}: {grid.sizes['model']} models shipped"
    )
    fig.tight_layout()
    fig.savefig(args.out, dpi=110)
    print(args.out)
    return args.out


if __name__ == "__main__":
    main()
