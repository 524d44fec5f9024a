"""The train_model job: command line, run directory contents, resume, refusal to clobber."""

import json
import subprocess
import sys

import pytest

pytest.importorskip("tensorflow")

from jobs import train_model


def _grid_part(tmp_path):
    """A 12-model grid part (a slice of the shipped grid) so the job runs in seconds."""
    import lamost2csst

    ds = lamost2csst.load_grid().isel(model=slice(0, 12))
    path = tmp_path / "grid.zarr"
    ds.to_zarr(path, mode="w", consolidated=False)
    return path


def test_help_is_fast_and_explains_the_stages():
    out = subprocess.run(
        [sys.executable, "-m", "jobs.train_model", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    assert "pretrain" in out and "split BY MODEL" in out
    probe = subprocess.run(
        [sys.executable, "-c", "import sys, jobs.train_model; print('tensorflow' in sys.modules)"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout.strip()
    assert probe == "False"


def test_pretrain_writes_a_complete_run_and_resumes(tmp_path, capsys):
    grid = _grid_part(tmp_path)
    run = tmp_path / "run"
    args = [
        "pretrain",
        "--grid",
        str(grid),
        "--run-dir",
        str(run),
        "--epochs",
        "2",
        "--validate-every",
        "1",
        "--batch-size",
        "16",
        "--seed",
        "3",
        "--export",
        str(tmp_path / "exported.keras"),
    ]
    assert train_model.main(args) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["epoch"] == 2 and summary["train_models"] == 9 and summary["test_models"] == 3
    assert summary["passes"] == 2 * 9 * 5
    for name in (
        "best.keras",
        "best.json",
        "checkpoint.keras",
        "state.json",
        "history.jsonl",
        "split.json",
        "summary.json",
    ):
        assert (run / name).exists(), name
    split = json.loads((run / "split.json").read_text())
    train_set = {tuple(p) for p in split["train"]}
    assert len(train_set) == 9 and train_set.isdisjoint({tuple(p) for p in split["test"]})
    assert (tmp_path / "exported.keras").exists() and (tmp_path / "exported.json").exists()
    card = json.loads((tmp_path / "exported.json").read_text())
    assert card["train_models"] == 9 and card["stage"] == "pretrain"

    # same directory without --resume: refused, nothing overwritten
    before = (run / "history.jsonl").read_text()
    assert train_model.main(args[:-2]) == 2
    assert (run / "history.jsonl").read_text() == before

    # --resume with more epochs continues from epoch 2... but a changed config is refused
    assert train_model.main([*args[:-2], "--resume", "--epochs", "3"]) == 2
    assert "different training config" in capsys.readouterr().err
    # --resume of a finished run with the same config does nothing more
    assert train_model.main([*args[:-2], "--resume"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["epoch"] == 2


def test_ensemble_member_shares_the_split_and_differs_in_weights(tmp_path, capsys):
    """--split-seed fixes the split; --seed alone then changes the initial weights and noise."""
    import keras
    import numpy as np

    grid = _grid_part(tmp_path)
    common = ["pretrain", "--grid", str(grid), "--epochs", "1", "--validate-every", "1", "--batch-size", "16"]
    assert train_model.main([*common, "--run-dir", str(tmp_path / "a"), "--seed", "3"]) == 0
    assert (
        train_model.main([*common, "--run-dir", str(tmp_path / "b"), "--seed", "4", "--split-seed", "3"]) == 0
    )
    capsys.readouterr()
    split = {r: json.loads((tmp_path / r / "split.json").read_text()) for r in "ab"}
    assert split["a"] == split["b"]
    from lamost2csst.nn.training import split_by_model

    # without --split-seed, --seed 4 would have drawn another test set of the 12 models
    assert set(split_by_model(12, test_fraction=0.25, seed=4)[1]) != set(
        split_by_model(12, test_fraction=0.25, seed=3)[1]
    )

    import lamost2csst.nn.layers  # noqa: F401

    a, b = (keras.saving.load_model(tmp_path / r / "best.keras", compile=False) for r in "ab")
    assert any(not np.array_equal(wa, wb) for wa, wb in zip(a.get_weights(), b.get_weights()))


def test_pretrain_through_the_lamost_path_from_an_initial_model(tmp_path, capsys):
    """--input-path lamost reaches the training config; --init starts from that model's weights."""
    import keras
    import numpy as np

    import lamost2csst.nn.layers  # noqa: F401

    grid = _grid_part(tmp_path)
    common = ["pretrain", "--grid", str(grid), "--epochs", "1", "--validate-every", "1", "--batch-size", "16"]
    assert train_model.main([*common, "--run-dir", str(tmp_path / "a")]) == 0
    start = tmp_path / "a" / "best.keras"
    assert (
        train_model.main(
            [
                *common,
                "--run-dir",
                str(tmp_path / "b"),
                "--input-path",
                "lamost",
                "--init",
                str(start),
                "--lr",
                "1e-9",
                "--lr-min",
                "0",
            ]
        )
        == 0
    )
    capsys.readouterr()
    state = json.loads((tmp_path / "b" / "state.json").read_text())
    assert state["config"]["input_path"] == "lamost"
    card = json.loads((tmp_path / "b" / "best.json").read_text())
    assert card["stage"] == "pretrain" and card["init"] == str(start)
    # a learning rate of 1e-9 leaves the initial trainable weights (nearly) as they were: the run
    # began from them (batch-norm statistics move without a learning rate and are not compared)
    a, b = (keras.saving.load_model(p, compile=False) for p in (start, tmp_path / "b" / "best.keras"))
    for wa, wb in zip(a.trainable_weights, b.trainable_weights):
        np.testing.assert_allclose(np.asarray(wb), np.asarray(wa), atol=1e-6)


def test_bad_arguments_exit_2(capsys):
    with pytest.raises(SystemExit) as exc:
        train_model.main(["pretrain", "--run-dir", "x", "--epochs", "0"])
    assert exc.value.code == 2
    assert "positive integer" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--domain-input", "--replay", "0.2"], "--replay must be 0 with --domain-input"),
        (["--extension-check", "6600"], "--extension-check needs --domain-input"),
        (["--domain-input", "--extend", "cubic"], "invalid choice: 'cubic'"),
    ],
)
def test_real_branch_arguments_that_cannot_work_exit_2(argv, message, tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        train_model.main(["real", "--run-dir", str(tmp_path / "r"), *argv])
    assert exc.value.code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_finetune_on_stelib_from_a_pretrained_model(tmp_path, capsys):
    pytest.importorskip("mangadap")
    grid = _grid_part(tmp_path)
    pre = tmp_path / "pre"
    assert train_model.main(["pretrain", "--grid", str(grid), "--run-dir", str(pre), "--epochs", "1"]) == 0
    capsys.readouterr()
    fine = tmp_path / "fine"
    assert (
        train_model.main(
            [
                "finetune",
                "--init",
                str(pre / "best.keras"),
                "--grid",
                str(grid),
                "--run-dir",
                str(fine),
                "--epochs",
                "2",
                "--validate-every",
                "1",
                "--screen-rmsae",
                "0",
            ]
        )
        == 0
    )
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["library"] == "stelib" and summary["stars_read"] == 255
    used = summary["train_models"] + summary["test_models"]
    assert used == summary["in_teff_range"] - summary["dropped_inconsistent_reddening"]
    assert summary["test_models"] == round(0.2 * used)
    card = json.loads((fine / "best.json").read_text())
    assert (
        card["stage"] == "finetune"
        and card["init_sha256"] == json.loads((pre / "best.json").read_text())["sha256"]
    )
    # the SED loss is masked outside STELIB's coverage: the run's targets have masked pixels
    split = json.loads((fine / "split.json").read_text())
    assert split["columns"] == ["name"] and len(split["test"]) == summary["test_models"]


def _write_ngsl_like(folder, ds):
    """NGSL v2-format files whose fluxes are grid SEDs (R=200) on a 2 A grid, 1700-10200 A."""
    import numpy as np
    from astropy.io import fits

    from lamost2csst.core.grids import OUTPUT_WAVE

    folder.mkdir()
    wave = np.arange(1700.0, 10200.0, 2.0)
    rows = ["name,teff,logg,feh"]
    for i in range(ds.sizes["model"]):
        flux = 1e-13 * np.interp(wave, OUTPUT_WAVE, ds.sed.values[i])
        cols = [
            fits.Column(name="WAVELENGTH", format="D", array=wave),
            fits.Column(name="FLUX", format="D", array=flux),
            fits.Column(name="STAT_ERR", format="D", array=flux / 100),
            fits.Column(name="SYS_ERR", format="D", array=flux / 100),
        ]
        name = f"star{i:02d}"
        fits.HDUList([fits.PrimaryHDU(), fits.BinTableHDU.from_columns(cols)]).writeto(
            folder / f"h_stis_ngsl_{name}_v2.fits"
        )
        rows.append(f"{name},{ds.teff.values[i]},{ds.logg.values[i]},{ds.feh.values[i]}")
    (folder / "params.csv").write_text("\n".join(rows) + "\n")


@pytest.mark.slow
def test_finetune_on_ngsl_files_with_gpr_generated_inputs(tmp_path, capsys):
    pytest.importorskip("mangadap")

    import lamost2csst

    ds = lamost2csst.load_grid().isel(model=slice(0, 15))
    _write_ngsl_like(tmp_path / "ngsl", ds)
    grid = _grid_part(tmp_path)
    pre = tmp_path / "pre"
    assert train_model.main(["pretrain", "--grid", str(grid), "--run-dir", str(pre), "--epochs", "1"]) == 0
    capsys.readouterr()
    assert (
        train_model.main(
            [
                "finetune",
                "--library",
                "ngsl",
                "--ngsl",
                str(tmp_path / "ngsl"),
                "--ngsl-params",
                str(tmp_path / "ngsl" / "params.csv"),
                "--init",
                str(pre / "best.keras"),
                "--run-dir",
                str(tmp_path / "fine"),
                "--epochs",
                "1",
                "--screen-rmsae",
                "0",
            ]
        )
        == 0
    )
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["library"] == "ngsl" and summary["stars_read"] == 15
    assert summary["train_models"] + summary["test_models"] == summary["in_teff_range_with_params"]
    assert summary["gpr_miles_stars"] > 200


def test_ngsl_without_params_is_a_usage_error(tmp_path, capsys):
    assert (
        train_model.main(
            ["finetune", "--library", "ngsl", "--ngsl", str(tmp_path), "--run-dir", str(tmp_path / "r")]
        )
        == 2
    )
    assert "--ngsl-params" in capsys.readouterr().err
