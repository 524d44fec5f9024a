"""fort.5 from a real grid model (the committed grid fixture; no Synspec)."""

import pytest

from lamost2csst.synth.atmospheres import load_model
from lamost2csst.synth.synspec import write_fort5


def test_fort5_layout(tmp_path):
    m = load_model(5000, 4.5, 0.0, 0.0)
    write_fort5(tmp_path / "fort.5", m)
    lines = (tmp_path / "fort.5").read_text().splitlines()
    assert lines[0].split()[:2] == ["5000.0", "4.50000"]
    assert lines[2].split()[0] == "'tas'"
    abund = lines[5 : 5 + 99]
    assert [int(r.split()[0]) for r in abund][:2] == [2, 2]  # H, He explicit
    assert float(abund[25].split()[1]) == pytest.approx(m.abundances[25], rel=1e-6)
    assert lines[-1] == "* end"
    assert any("'Fe 2' 'data/tlusty_fe2_topmod.dat'" in r for r in lines)
    assert lines[-3].split()[:4] == ["0", "0", "0", "-1"]
