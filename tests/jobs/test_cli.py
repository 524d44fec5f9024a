"""The job command-line frame ``jobs._cli.run_cli``: messages and exit codes, with or without Dask."""

import argparse

import pytest

from jobs._cli import run_cli
from lamost2csst.errors import InputError
from lamost2csst.parallel import JobInputError


def _fill_the_disk(path):
    import errno
    import os

    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), path)


def test_a_full_disk_on_a_worker_is_one_line_and_exit_1(capsys):
    """ENOSPC raised inside a Dask task reaches the client and becomes one line, not a traceback."""

    def run(args, client):
        return client.submit(_fill_the_disk, "/data/out.zarr/sed/c/3/0").result()

    args = argparse.Namespace(resume=False)
    with pytest.raises(SystemExit) as exit_info:
        run_cli("predict_catalogue", args, run, n_workers=1)
    assert exit_info.value.code == 1
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith(
        "python -m jobs.predict_catalogue: error: No space left on device (/data/out.zarr/sed/c/3/0)"
    )
    assert "rerun with --resume" in err


def test_other_os_errors_are_not_disguised():
    def run(args, client):
        raise PermissionError(13, "Permission denied", "/x")

    with pytest.raises(PermissionError):
        run_cli("build_flatcube", argparse.Namespace(), run, n_workers=1)


def test_without_a_client_run_gets_only_the_arguments_and_its_summary_comes_back(capsys):
    seen = []

    def run(args):
        seen.append(args.value)
        return {"value": args.value * 2}

    summary = run_cli(
        "train_model",
        argparse.Namespace(value=21),
        run,
        client=False,
        preflight=lambda args: seen.append("preflight"),
    )
    assert summary == {"value": 42}
    assert seen == ["preflight", 21]
    assert "Dask dashboard" not in capsys.readouterr().err  # no cluster was started


class _Mismatch(Exception):
    pass


@pytest.mark.parametrize(
    "error",
    [InputError("bad --grid"), JobInputError("bad --grid"), _Mismatch("bad --grid")],
    ids=["InputError", "JobInputError_alias", "user_errors"],
)
def test_user_errors_are_one_line_and_exit_2(capsys, error):
    def run(args):
        raise error

    with pytest.raises(SystemExit) as exit_info:
        run_cli("evaluate_model", argparse.Namespace(), run, client=False, user_errors=(_Mismatch,))
    assert exit_info.value.code == 2
    assert capsys.readouterr().err == "python -m jobs.evaluate_model: error: bad --grid\n"


def test_one_error_type_for_the_users_mistakes():
    """The old names are the one type, not siblings of it: a caller catching InputError sees all."""
    assert JobInputError is InputError
    assert issubclass(InputError, ValueError)


def test_a_preflight_error_stops_before_run(capsys):
    def preflight(args):
        raise InputError("no such catalogue")

    def run(args, client):  # pragma: no cover - must not be reached
        raise AssertionError("run after a failed preflight")

    with pytest.raises(SystemExit) as exit_info:
        run_cli("predict_catalogue", argparse.Namespace(), run, preflight=preflight)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err == "python -m jobs.predict_catalogue: error: no such catalogue\n"  # no dashboard: no cluster


def test_a_full_disk_without_a_client_and_without_resume(capsys):
    def run(args):
        _fill_the_disk("/data/run/model.keras")

    with pytest.raises(SystemExit) as exit_info:
        run_cli("train_model", argparse.Namespace(), run, client=False)
    assert exit_info.value.code == 1
    assert capsys.readouterr().err == (
        "python -m jobs.train_model: error: No space left on device "
        "(/data/run/model.keras): free space or write the output elsewhere\n"
    )


def test_the_library_does_not_know_the_command_lines():
    import lamost2csst.parallel
    import lamost2csst.parallel.runtime

    assert not hasattr(lamost2csst.parallel.runtime, "run_cli")
    assert "run_cli" not in lamost2csst.parallel.__all__
