"""The training run's checks before any training: the library fits the input path, a resume fits its split."""

import json

import numpy as np
import pytest

pytest.importorskip("tensorflow")

from lamost2csst.core.grids import INPUT_WAVE, OUTPUT_WAVE
from lamost2csst.core.pairs import GriddedLibrary
from lamost2csst.errors import InputError
from lamost2csst.nn.training import TrainConfig
from lamost2csst.workflows import training as training_workflow
from lamost2csst.workflows.libraries import LibrarySpec, TrainingLibrary


@pytest.fixture
def tiny_library(monkeypatch):
    """Eight stars without spectra on LAMOST_WAVE, served in place of the grid."""
    n = 8
    lib = GriddedLibrary(
        np.ones((n, INPUT_WAVE.size), np.float32),
        np.zeros((n, INPUT_WAVE.size), bool),
        np.ones((n, OUTPUT_WAVE.size), np.float32),
        np.zeros((n, OUTPUT_WAVE.size), bool),
        teff=5000.0 + 100 * np.arange(n),
    )
    served = TrainingLibrary(lib, [f"s{i}" for i in range(n)], ["name"], {"library": "tiny"})
    monkeypatch.setattr(training_workflow, "training_library", lambda spec, *, seed: served)
    return served


def _run(run_dir, *, config, resume=False):
    return training_workflow.run_training(
        stage="finetune",
        run_dir=run_dir,
        config=config,
        library=LibrarySpec(),
        test_fraction=0.25,
        resume=resume,
        progress=False,
    )


def test_the_lamost_input_path_needs_spectra_on_lamost_wave(tmp_path, tiny_library):
    with pytest.raises(InputError, match="flux_lamost"):
        _run(tmp_path / "run", config=TrainConfig(epochs=1, input_path="lamost"))
    assert not (tmp_path / "run").exists()  # refused before anything was written


def test_a_resume_with_another_split_is_refused(tmp_path, tiny_library):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    split = {"columns": ["name"], "train": ["s0"], "test": ["s1"], "seed": 0, "test_fraction": 0.25}
    (run_dir / "split.json").write_text(json.dumps(split))
    with pytest.raises(InputError, match="different library or split"):
        _run(run_dir, config=TrainConfig(epochs=1), resume=True)
    assert json.loads((run_dir / "split.json").read_text()) == split
