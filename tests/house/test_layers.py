"""The layers of the README's Layout section hold: import-linter's contracts in pyproject.toml
(layers that only point down, no circles between a package's modules) are kept, and none of
them ignores an import."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_import_contracts_are_kept():
    lint = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    assert lint, "import-linter is a dev dependency: pip install -e '.[dev]'"
    done = subprocess.run([lint], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-3000:]
    assert "0 broken" in done.stdout


def test_the_contracts_cover_every_package_and_ignore_nothing():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    kinds = {contract["type"] for contract in config["contracts"]}
    assert kinds == {"layers", "acyclic_siblings"}
    for contract in config["contracts"]:
        assert not contract.get("ignore_imports")
    layers = next(c for c in config["contracts"] if c["type"] == "layers")
    assert layers["exhaustive"] is True  # a new top-level module must be given a layer
    named = {part.strip() for layer in layers["layers"] for part in layer.split("|")}
    source = ROOT / "src" / "amlcyto"
    modules = {p.stem for p in source.glob("*.py") if p.stem != "__init__"}
    modules |= {p.name for p in source.iterdir() if (p / "__init__.py").is_file()}
    assert modules == named
