"""The package layout: layers only look down (the import-linter contract of pyproject.toml), no
import cycle between modules, also through imports inside functions, and ruff's lint and format
checks, mypy and the strict build of the API reference pass (so the README's test command runs
them too)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_layers_only_look_down() -> None:
    exe = shutil.which("lint-imports")
    if exe is None:  # installed with the [test] extra
        pytest.fail("lint-imports is missing: pip install -e '.[test]'")
    run = subprocess.run([exe, "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    assert "1 kept, 0 broken" in run.stdout


@pytest.mark.parametrize("args", [["check"], ["format", "--check"]], ids=["lint", "format"])
def test_ruff_finds_nothing(args: list[str]) -> None:
    # the rule set is in pyproject.toml (pyflakes, pycodestyle, isort, bugbear, pyupgrade, NumPy)
    exe = shutil.which("ruff")
    if exe is None:  # installed with the [test] extra
        pytest.fail("ruff is missing: pip install -e '.[test]'")
    run = subprocess.run(
        [exe, *args, "--no-cache", "src", "tests", "benchmarks", "docs"], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]


def test_the_package_type_checks() -> None:
    # mypy over src/convpress: default mode, strict on the ground floor (core, fileformat); pyproject.toml
    exe = shutil.which("mypy")
    if exe is None:  # installed with the [test] extra
        pytest.fail("mypy is missing: pip install -e '.[test]'")
    run = subprocess.run([exe, "src/convpress"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]


def test_the_api_reference_builds(tmp_path: Path) -> None:
    # mkdocs build --strict (mkdocs.yml): a public name without a docstring, a broken reference or
    # a subcommand whose --help fails stops the build; docs/check_site.py checks the pages in a browser
    exe = shutil.which("mkdocs")
    if exe is None:  # installed with the [test] extra
        pytest.fail("mkdocs is missing: pip install -e '.[test]'")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    run = subprocess.run(
        [exe, "build", "--strict", "--site-dir", str(tmp_path / "site")], cwd=ROOT, capture_output=True, text=True, timeout=600, env=env
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    for page in ("api/convpress/index.html", "api/convpress.codec/index.html", "cli/compress/index.html", "figures/index.html"):
        assert (tmp_path / "site" / page).is_file(), page


def test_no_module_imports_itself_through_a_cycle() -> None:
    import grimp  # import-linter's graph builder: it reads the source and imports nothing

    graph = grimp.build_graph("convpress", include_external_packages=False, exclude_type_checking_imports=True)
    cycles = []
    for module in sorted(graph.modules):
        for imported in graph.find_modules_directly_imported_by(module):
            if module != imported and graph.chain_exists(importer=imported, imported=module):
                cycles.append(f"{module} <-> {imported}")
    assert not cycles, "import cycles:\n" + "\n".join(cycles[:20])


_FIRST_IMPORT = """
import importlib, pkgutil, sys, traceback
import convpress
names = sorted(m.name for m in pkgutil.walk_packages(convpress.__path__, "convpress.") if not m.name.endswith("__main__"))
failed = []
for name in names:
    for loaded in [m for m in sys.modules if m == "convpress" or m.startswith("convpress.")]:
        del sys.modules[loaded]
    try:
        importlib.import_module(name)
    except Exception:
        failed.append(name + ": " + traceback.format_exc(limit=1).strip().splitlines()[-1])
print(len(names))
print("\\n".join(failed))
"""


def test_every_module_imports_first_in_a_fresh_interpreter() -> None:
    # the registries import their packages when first read, a cycle grimp cannot see: a module that
    # registers an entry must import on its own too (``import convpress.codec.models.hyperprior``
    # failed on a registry read inside its own import until 2026-12-04)
    run = subprocess.run([sys.executable, "-c", _FIRST_IMPORT], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    count, *failed = run.stdout.strip().splitlines()
    assert int(count) > 50
    assert not [f for f in failed if f], "modules that fail when imported first:\n" + "\n".join(failed)
