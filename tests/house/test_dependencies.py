"""Every import is a declared dependency: a package installed by hand on one machine (as
imagecodecs once was) must not make the suite pass there and fail on a new user's machine."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest
from conftest import ROOT


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _requirement_names(requirements: list[str]) -> set[str]:
    return {_normalise(re.split(r"[\s<>=!~;\[]", r, maxsplit=1)[0]) for r in requirements}


def _imported_modules(folder: Path) -> dict[str, str]:
    """Top-level modules imported by the files under ``folder`` -> one file importing each."""
    found: dict[str, str] = {}
    for file in sorted(folder.rglob("*.py")):
        for node in ast.walk(ast.parse(file.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                found.setdefault(name.split(".")[0], str(file.relative_to(ROOT)))
    return found


def _undeclared(folder: str, allowed: set[str]) -> list[str]:
    distributions = packages_distributions()
    problems = []
    for module, file in _imported_modules(ROOT / folder).items():
        local = (ROOT / folder / f"{module}.py").is_file()  # e.g. the tests' own helpers
        if module in sys.stdlib_module_names or module in ("amlcyto", "bench") or local:
            continue
        owners = {_normalise(d) for d in distributions.get(module, [module])}
        if not owners & allowed:
            problems.append(f"{file} imports {module} ({', '.join(sorted(owners))})")
    return problems


@pytest.fixture(scope="module")
def project() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]


def test_the_package_imports_only_its_declared_dependencies(project):
    assert _undeclared("src", _requirement_names(project["dependencies"])) == []


def test_tests_and_benchmarks_import_only_declared_packages(project):
    declared = _requirement_names(project["dependencies"])
    extras = project.get("optional-dependencies", {})
    dev = declared | _requirement_names(extras.get("dev", []))
    assert _undeclared("tests", dev) == []
    bench = dev | {n for names in extras.values() for n in _requirement_names(names)}
    assert _undeclared("bench", bench) == []
