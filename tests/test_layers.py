"""The import-linter contracts in pyproject.toml: kept by the tree, broken by a deliberate bad import.

The second half copies the package (Python files only) and the contract file into a temporary
directory, plants one offending import per contract there, and runs ``lint-imports`` on the copy:
each contract must report exactly the import planted for it (importer, imported and line number),
so a contract that checks nothing, or checks the installed tree instead of the copy, fails here.
"""

import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

pytest.importorskip("importlinter", reason="import-linter comes with the test extra")

REPO = Path(__file__).resolve().parents[1]
CONTRACTS = {
    c["id"]: c["name"]
    for c in tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]
}

# a private module of core (any: private module names may change)
PRIVATE = min(p.stem for p in (REPO / "lamost2csst" / "core").glob("_*.py") if p.stem != "__init__")

# contract id -> (file appended to, line appended, importer, imported), in the copy; package
# __init__ files, so that modules moving between files do not break this test
PLANTED = {
    "layers": (
        "lamost2csst/core/__init__.py",
        "import lamost2csst.parallel",
        "lamost2csst.core",
        "lamost2csst.parallel",
    ),
    "root-on-top": (
        "lamost2csst/parallel/__init__.py",
        "from lamost2csst import __version__",
        "lamost2csst.parallel",
        "lamost2csst",
    ),
    "no-jobs": ("lamost2csst/io/__init__.py", "import jobs", "lamost2csst.io", "jobs"),
    "leaves": ("lamost2csst/errors.py", "import lamost2csst.core", "lamost2csst.errors", "lamost2csst.core"),
    "core-pure": ("lamost2csst/core/__init__.py", "import xarray", "lamost2csst.core", "xarray"),
    "nn-no-dask": ("lamost2csst/nn/__init__.py", "import distributed", "lamost2csst.nn", "distributed"),
    "tf-in-nn": ("lamost2csst/io/__init__.py", "import keras", "lamost2csst.io", "keras"),
    "private": (
        "lamost2csst/parallel/__init__.py",
        f"from lamost2csst.core import {PRIVATE}",
        "lamost2csst.parallel",
        f"lamost2csst.core.{PRIVATE}",
    ),
}


def lint_imports(cwd):
    """Run ``lint-imports`` on the ``pyproject.toml`` in ``cwd``, the packages found from ``cwd``."""
    command = "import sys; from importlinter.cli import lint_imports_command as c; sys.exit(c())"
    result = subprocess.run(
        [sys.executable, "-c", command, "--no-cache", "--no-logo", "pyproject.toml"],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )
    return result.returncode, result.stdout + result.stderr


def broken_sections(report):
    """Split the report's "Broken contracts" part into {contract name: its text}."""
    _, _, broken = report.partition("Broken contracts\n----------------\n")
    headers = [
        (m.start(), m.end(), m.group(1))
        for m in re.finditer(r"^(.+)\n-+\n", broken, re.M)
        if m.group(1) in CONTRACTS.values()
    ]
    return {
        name: broken[end : (headers[i + 1][0] if i + 1 < len(headers) else len(broken))]
        for i, (_, end, name) in enumerate(headers)
    }


def test_every_contract_has_a_planted_violation():
    assert set(PLANTED) == set(CONTRACTS)


def test_the_tree_keeps_every_contract():
    rc, report = lint_imports(REPO)
    assert rc == 0, report
    assert f"Contracts: {len(CONTRACTS)} kept, 0 broken." in report


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    """The report of ``lint-imports`` on a copy of the tree with every PLANTED import added."""
    root = tmp_path_factory.mktemp("tree")
    for package in ("lamost2csst", "jobs"):
        for source in (REPO / package).rglob("*.py"):
            target = root / source.relative_to(REPO)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, target)
    shutil.copyfile(REPO / "pyproject.toml", root / "pyproject.toml")
    lines = {}
    for contract, (path, line, _, _) in PLANTED.items():
        text = (root / path).read_text()
        text = text if text.endswith("\n") else text + "\n"
        (root / path).write_text(f"{text}{line}  # planted by tests/test_layers.py\n")
        lines[contract] = text.count("\n") + 1
    # a new subpackage that nobody placed in the layers: the exhaustive layers contract objects
    (root / "lamost2csst" / "unplaced").mkdir()
    (root / "lamost2csst" / "unplaced" / "__init__.py").write_text("")
    rc, report = lint_imports(root)
    return rc, report, lines


@pytest.mark.parametrize("contract", sorted(PLANTED))
def test_a_planted_import_breaks_its_contract(planted, contract):
    rc, report, lines = planted
    assert rc == 1, report
    name = CONTRACTS[contract]
    assert f"{name} BROKEN" in report
    _, _, importer, imported = PLANTED[contract]
    offence = f"{importer} -> {imported} (l.{lines[contract]})"
    assert offence in broken_sections(report).get(name, ""), report


def test_an_unplaced_subpackage_breaks_the_layers_contract(planted):
    _, report, _ = planted
    section = broken_sections(report)[CONTRACTS["layers"]]
    assert "not listed as layers" in section and "- lamost2csst.unplaced\n" in section
