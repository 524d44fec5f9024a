"""The plotting jobs run in the common CLI frame: the user's mistakes are one line and exit 2."""

import json

import pytest

from jobs import plot_grid, plot_training


def test_plot_training_without_history_is_exit_2(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        plot_training.main([str(tmp_path)])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err == f"python -m jobs.plot_training: error: no history.jsonl in {tmp_path}\n"


def test_plot_training_tabulates_every_nth_epoch_and_the_last(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    errors = {
        f"error_snr{s}_{b}": 0.01 * k
        for k, (s, b) in enumerate([(s, b) for s in (20, 40) for b in ("GU", "GV", "GI")], start=1)
    }
    with open(tmp_path / "history.jsonl", "w") as f:
        for epoch in (500, 700, 1000, 1200):
            row = dict(epoch=epoch, passes=10 * epoch, seconds=6.0 * epoch, lr=1e-3, val_nll=-2.5, **errors)
            f.write(json.dumps(row) + "\n")
    assert plot_training.main([str(tmp_path), "--every", "500"]) == 0
    rows = capsys.readouterr().out.strip().splitlines()[2:]
    assert [row.split(" | ")[0] for row in rows] == ["| 500", "| 1000", "| 1200"]
    assert rows[0] == (
        "| 500 | 5,000 | 50.0 | 1.00e-03 | -2.500 | 0.0100 | 0.0200 | 0.0300 | 0.0400 | 0.0500 | 0.0600 |"
    )
    assert (tmp_path / "training_curve.png").stat().st_size > 0


def test_plot_grid_without_such_models_is_exit_2(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    with pytest.raises(SystemExit) as exit_info:
        plot_grid.main(["--out", str(tmp_path / "g.png"), "--logg", "9.9"])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err == (
        "python -m jobs.plot_grid: error: no model with logg 9.9, [M/H] 0.0, [alpha/M] 0.0\n"
    )
    assert not (tmp_path / "g.png").exists()
