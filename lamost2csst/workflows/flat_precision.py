"""The figure of the flat-precision Monte Carlo
(:func:`lamost2csst.parallel.flat_precision.flat_precision_study`)."""

from __future__ import annotations

import numpy as np

__all__ = ["plot_precision"]


def plot_precision(summary: dict, path) -> None:
    """Precision per band against the number of stars (log-log), the paper's 400-star values marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = summary["vs_stars"]
    stars = np.array([r["n_stars"] for r in rows], dtype=float)
    fig, ax = plt.subplots(figsize=(6, 4.2))
    for band, colour in (("GU", "tab:blue"), ("GV", "tab:green"), ("GI", "tab:red")):
        ax.plot(stars, [r[band] for r in rows], "o-", color=colour, label=f"{band}, shipped model")
        ax.plot([400], [summary["paper"][band]], "*", color=colour, markersize=12, markeredgecolor="k")
    ax.plot(
        stars,
        rows[0]["GV"] * np.sqrt(stars[0] / stars),
        ":",
        color="grey",
        label="1/sqrt(N) from 100 stars (GV)",
    )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("flux-standard stars per detector")
    ax.set_ylabel("flat precision (rms of fitted / true - 1)")
    ax.set_title("Sect. 5 Monte Carlo, order-2 2D polynomial (stars: the paper at 400)", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
