"""The argument types of :mod:`jobs.synthesize_grid`: model ranges (``--teff`` ...), ``--part``, ``--step``.

Kept free of heavy imports, as :mod:`jobs._cli`: ``--help`` stays fast.
"""

from __future__ import annotations

import argparse


def parse_values(text: str, *, name: str) -> tuple[str, object]:
    """'a:b' -> ('range', (a, b, None)); 'a:b:s' -> ('range', (a, b, s)); 'x,y' -> ('list', [x, y])."""
    text = text.strip()
    try:
        if ":" in text:
            parts = [float(p) for p in text.split(":")]
            if len(parts) == 2:
                lo, hi, step = parts[0], parts[1], None
            elif len(parts) == 3:
                lo, hi, step = parts
                if step <= 0:
                    raise ValueError
            else:
                raise ValueError
            if hi < lo:
                raise ValueError
            return "range", (lo, hi, step)
        return "list", [float(p) for p in text.split(",") if p.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--{name} {text!r}: expected a:b, a:b:step (inclusive, b >= a, step > 0) or a comma list"
        ) from None


def parse_part(text: str) -> tuple[int, int]:
    """'K/N' -> (K, N): part K (0..N-1) of N of the selected models (``--part``)."""
    try:
        k, n = (int(v) for v in text.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--part {text!r}: expected K/N, e.g. 0/8") from None
    if not (n >= 1 and 0 <= k < n):
        raise argparse.ArgumentTypeError(f"--part {text!r}: need 0 <= K < N")
    return k, n


def parse_step(text: str):
    """'0.05' -> 0.05; 'upper:step[:nfreqs],...,step' -> a schedule for run_synspec.

    '3300:0.01:40,4500:0.02:40,0.05' -> ((3300.0, 0.01, 40), (4500.0, 0.02, 40), (None, 0.05)).
    """
    try:
        parts = [p.strip() for p in text.split(",") if p.strip()]
        if len(parts) == 1 and ":" not in parts[0]:
            value = float(parts[0])
            if value > 0:
                return value
            raise ValueError
        schedule = []
        for p in parts[:-1]:
            fields = p.split(":")
            if len(fields) == 2:
                schedule.append((float(fields[0]), float(fields[1])))
            elif len(fields) == 3:
                nf = int(fields[2])
                if nf < 3:
                    raise ValueError
                schedule.append((float(fields[0]), float(fields[1]), nf))
            else:
                raise ValueError
        if ":" in parts[-1]:
            raise ValueError
        schedule.append((None, float(parts[-1])))
        uppers = [e[0] for e in schedule[:-1]]
        if any(e[1] <= 0 for e in schedule) or any(b <= a for a, b in zip(uppers, uppers[1:])):
            raise ValueError
        return tuple(schedule)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--step {text!r}: expected a step in A (e.g. 0.05) or a schedule upper:step[:nfreqs],...,step "
            "over air wavelength (e.g. 3300:0.01:40,4500:0.02:40,0.05)"
        ) from None
