"""The public API of lamost2csst and the layering rules of DESIGN.md."""

import inspect
import subprocess
import sys

import numpy as np
import pytest

import lamost2csst


def test_grids_are_the_normative_ones():
    assert lamost2csst.INPUT_WAVE.shape == (2238,)
    assert lamost2csst.OUTPUT_WAVE.shape == (574,)
    # independent closed forms: 4000 exp(i/4000), 2500 exp(j/400)
    assert lamost2csst.INPUT_WAVE[0] == 4000.0
    np.testing.assert_allclose(lamost2csst.INPUT_WAVE[-1], 4000.0 * np.exp(2237 / 4000), rtol=1e-14)
    np.testing.assert_allclose(lamost2csst.OUTPUT_WAVE[-1], 2500.0 * np.exp(573 / 400), rtol=1e-14)
    assert 6990 < lamost2csst.INPUT_WAVE[-1] < 7000  # 4000-7000 A
    assert 10470 < lamost2csst.OUTPUT_WAVE[-1] < 10500
    assert not lamost2csst.INPUT_WAVE.flags.writeable


def test_api_functions_take_their_options_by_keyword_only():
    keyword_only = {
        "degrade": {"resolution", "wave_out", "input_resolution"},
        "add_noise": {"snr", "rng"},
        "resample": {"wave_out", "ivar", "mask", "z", "method"},
        "prepare_inputs": {"ivar", "z", "mask"},
        "predict": {"mask", "model", "batch_size"},
        "check_domain": {"mask", "color", "model", "thresholds"},
    }
    for name, expected in keyword_only.items():
        params = inspect.signature(getattr(lamost2csst, name)).parameters
        kinds = {p for p, v in params.items() if v.kind is inspect.Parameter.KEYWORD_ONLY}
        assert expected <= kinds, (name, expected - kinds)
    for name in ("normalize", "scale_sed", "air_to_vacuum", "vacuum_to_air"):
        assert callable(getattr(lamost2csst, name))


@pytest.mark.parametrize(
    ("modules", "forbidden"),
    [
        ("lamost2csst.core", ("dask", "xarray", "tensorflow", "zarr")),
        ("lamost2csst, lamost2csst.nn", ("dask", "tensorflow", "keras")),
        (
            "lamost2csst.nn.training, lamost2csst.nn.inference, lamost2csst.nn.model, lamost2csst.core.gpr, "
            "lamost2csst.core.evaluation",
            ("dask", "distributed", "xarray"),
        ),
        # the catalogue jobs' Zarr paths need no FITS reader (GPU images often lack astropy)
        (
            "lamost2csst.io, lamost2csst.io.spectra, lamost2csst.io.simulated, lamost2csst.parallel.predict, "
            "jobs.predict_catalogue",
            ("astropy",),
        ),
    ],
)
def test_layering_imports(modules, forbidden):
    """DESIGN.md layering: core has no dask/xarray/tensorflow; the package and nn load no TF on import."""
    code = (
        f"import sys, {modules}; "
        f"bad = [m for m in {forbidden!r} if m in sys.modules]; "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_predict_through_the_public_api_with_a_given_model(tmp_path):
    pytest.importorskip("tensorflow")
    from lamost2csst.nn.model import build_uaranet

    model = build_uaranet(sed_bias=np.full(574, 2.0))
    sed, sigma = lamost2csst.predict(np.ones((2, 2238)), np.full((2, 2238), 0.02), model=model)
    np.testing.assert_allclose(sed, 2.0, rtol=1e-6)  # zero-kernel head: the start SED exactly
    np.testing.assert_allclose(sigma, 0.05, rtol=1e-5)
    for domain in ("real", "synthetic"):  # a model without a real-star branch: the same for both
        np.testing.assert_array_equal(
            lamost2csst.predict(np.ones((2, 2238)), np.full((2, 2238), 0.02), model=model, domain=domain)[0],
            sed,
        )
    with pytest.raises(ValueError, match="domain must be one of"):
        lamost2csst.predict(np.ones((2, 2238)), np.full((2, 2238), 0.02), model=model, domain="lamost")


def test_lazy_io_names_resolve_to_their_modules():
    import lamost2csst.io as io
    from lamost2csst.io.readers import read_lamost
    from lamost2csst.io.spectra import SCHEMA

    assert io.read_lamost is read_lamost and io.SCHEMA is SCHEMA
    assert set(io.__all__) <= set(dir(io))
    with pytest.raises(AttributeError, match="no attribute 'read_nothing'"):
        _ = io.read_nothing


def test_importing_the_package_loads_only_core():
    """The root re-exports core eagerly; io, nn, parallel and workflows load only when a wrapper is called."""
    code = (
        "import sys, lamost2csst; "
        "print(sorted({m.split('.')[1] for m in sys.modules if m.startswith('lamost2csst.')}))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert set(eval(result.stdout)) <= {"_version", "core", "errors"}, result.stdout


def test_version_is_a_leaf_module_agreeing_with_pyproject():
    """``lamost2csst._version`` imports alone (no loop through parallel) and carries pyproject's version."""
    import tomllib
    from pathlib import Path

    code = "import lamost2csst._version as v; print(v.__version__)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    pyproject = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())
    assert result.stdout.strip() == pyproject["project"]["version"] == lamost2csst.__version__


def test_no_subpackage_imports_from_the_root():
    """The root sits above every subpackage: a ``from lamost2csst import ...`` below it is an import loop."""
    import ast
    from pathlib import Path

    package = Path(lamost2csst.__file__).parent
    offenders = []
    for path in sorted(package.rglob("*.py")):
        if path.parent == package:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module == "lamost2csst" and node.level == 0:
                offenders.append(f"{path.relative_to(package)}:{node.lineno}")
            elif isinstance(node, ast.Import) and any(alias.name == "lamost2csst" for alias in node.names):
                offenders.append(f"{path.relative_to(package)}:{node.lineno}")
    assert offenders == []


@pytest.mark.parametrize("package", ["lamost2csst.io", "lamost2csst.parallel"])
def test_every_lazy_name_resolves(package):
    """Each entry of a lazy-export table names a module that defines it (entries are added by hand)."""
    import importlib

    module = importlib.import_module(package)
    for name in module.__all__:
        value = getattr(module, name)
        owner = importlib.import_module(module._EXPORTS[name])
        assert value is getattr(owner, name), name
    with pytest.raises(AttributeError, match="no attribute 'nothing_here'"):
        _ = module.nothing_here


def test_lazy_parallel_names_resolve_to_their_modules():
    import lamost2csst.parallel as parallel
    from lamost2csst.parallel.runtime import dask_client

    assert parallel.dask_client is dask_client
    assert set(parallel.__all__) <= set(dir(parallel))


def test_no_private_name_crosses_a_package_boundary():
    """``_private`` names and modules stay inside their subpackage (core, io, nn, parallel, ...; jobs).

    Leaf helpers meant for every layer are the exception: ``lamost2csst._version``, ``lamost2csst._lazy``,
    ``lamost2csst._provenance``.
    """
    import ast
    from pathlib import Path

    root = Path(lamost2csst.__file__).parents[1]
    shared = {"lamost2csst._version", "lamost2csst._lazy", "lamost2csst._provenance"}
    offenders = []
    for path in sorted([*(root / "lamost2csst").rglob("*.py"), *(root / "jobs").rglob("*.py")]):
        parts = path.relative_to(root).with_suffix("").parts
        home = parts[:2] if parts[0] == "lamost2csst" and len(parts) > 2 else parts[:1]
        for node in ast.walk(ast.parse(path.read_text())):
            if not (isinstance(node, ast.ImportFrom) and node.level == 0 and node.module):
                continue
            target = tuple(node.module.split("."))
            if node.module in shared or target[: len(home)] == home:
                continue
            private = [a.name for a in node.names if a.name.startswith("_") and not a.name.startswith("__")]
            if private or any(part.startswith("_") and not part.startswith("__") for part in target):
                offenders.append(f"{path.relative_to(root)}:{node.lineno} {node.module} {private}")
    assert offenders == []


def test_check_domain_equals_the_jobs_check_on_grid_models():
    """lamost2csst.check_domain on noise-free training-grid inputs: their own Teff, no flag, tiny chi2."""
    from lamost2csst.core.domain import spectrum_color
    from lamost2csst.nn.inference import model_card

    grid = lamost2csst.load_grid()
    train = {tuple(np.round(k, 3)) for k in model_card()["split"]["train"]}
    keys = np.round(np.stack([grid[p].values for p in ("teff", "logg", "feh", "alpha")], 1), 3)
    rows = [i for i, k in enumerate(map(tuple, keys)) if k in train and grid.teff.values[i] in (5500, 8000)][
        :4
    ]
    flux = grid.flux_in.values[rows].astype(np.float64)
    norm, _ = lamost2csst.normalize(flux)
    color = spectrum_color(lamost2csst.INPUT_WAVE, flux)
    estimate, outside = lamost2csst.check_domain(norm, np.full(norm.shape, 1e-3), color=color)
    np.testing.assert_allclose(estimate.teff, grid.teff.values[rows], rtol=1e-3)
    assert not outside.any() and np.all(estimate.chi2 < 1e-3)
    np.testing.assert_array_equal(estimate.n_bins, 279)
