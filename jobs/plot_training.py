"""Plot and tabulate a training run's validation curve (for EVALUATION.md).

    python -m jobs.plot_training RUN_DIR [--out docs/training_curve.png] [--every 500]

Reads RUN_DIR/history.jsonl (one line per validation, written by jobs.train_model) and
writes a PNG of the validation typical error per band (SNR 20 and 40) and of the fraction of
|r|/sigma < 1 against spectrum passes; prints a Markdown table of every --every-th epoch.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from jobs._cli import run_cli

BANDS = ("GU", "GV", "GI")


def build_parser():
    p = argparse.ArgumentParser(
        prog="python -m jobs.plot_training",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("run_dir", help="a jobs.train_model run directory")
    p.add_argument("--out", default=None, help="PNG to write (default RUN_DIR/training_curve.png)")
    p.add_argument("--every", type=int, default=500, help="epochs between table rows (default 500)")
    return p


def read_history(run_dir) -> list[dict]:
    from lamost2csst.errors import InputError

    path = Path(run_dir) / "history.jsonl"
    if not path.exists():
        raise InputError(f"no history.jsonl in {run_dir}")
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def markdown_table(history, *, every: int) -> str:
    snrs = sorted(
        {k.split("_")[1] for k in history[0] if k.startswith("error_snr")}, key=lambda s: float(s[3:])
    )
    head = (
        "| epoch | spectrum passes | minutes | lr | val NLL | "
        + " | ".join(f"{b} {s.upper()}" for s in snrs for b in BANDS)
        + " |"
    )
    lines = [head, "|" + "---:|" * (5 + len(snrs) * len(BANDS))]
    rows = [h for h in history if h["epoch"] % every == 0]
    if history[-1] not in rows:
        rows.append(history[-1])
    for h in rows:
        cells = " | ".join(f"{h[f'error_{s}_{b}']:.4f}" for s in snrs for b in BANDS)
        lines.append(
            f"| {h['epoch']} | {h['passes']:,} | {h['seconds'] / 60:.1f} | {h['lr']:.2e} | "
            f"{h['val_nll']:.3f} | {cells} |"
        )
    return "\n".join(lines)


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    return run_cli("plot_training", args, plot, client=False)


def plot(args: argparse.Namespace) -> int:
    """Write the PNG, print the Markdown table; a run directory without history is an InputError."""
    history = read_history(args.run_dir)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    passes = [h["passes"] for h in history]
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.6))
    for band, color in zip(BANDS, ("tab:blue", "tab:green", "tab:red")):
        for snr, style in (("snr20", "-"), ("snr40", "--")):
            key = f"error_{snr}_{band}"
            if key in history[0]:
                axes[0].plot(passes, [h[key] for h in history], style, color=color, label=f"{band} {snr}")
            key = f"within1sigma_{snr}_{band}"
            if key in history[0]:
                axes[1].plot(passes, [h[key] for h in history], style, color=color, label=f"{band} {snr}")
    axes[0].set_yscale("log")
    axes[0].set_ylabel("validation typical error (all test models)")
    axes[1].axhline(0.683, color="k", lw=0.8)
    axes[1].set_ylabel("fraction |r|/σ < 1")
    for ax in axes:
        ax.set_xlabel("spectrum passes")
        ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    out = Path(args.out) if args.out else Path(args.run_dir) / "training_curve.png"
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    print(markdown_table(history, every=args.every))
    print(f"\n[plot_training] wrote {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
