"""The command line starts without the heavy libraries: ``--help`` loads typer and rich only.

Each command imports the library functions it wires inside its body, so building the click
command and printing any ``--help`` never loads torch, Lightning, pandas and the rest. The
guard is behavioural (which modules load), not a timing.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import typer
from typer.testing import CliRunner

from amlcyto.cli.main import app

HEAVY = ("torch", "lightning", "pandas", "sklearn", "matplotlib", "optuna", "tifffile")
COMMANDS = sorted(typer.main.get_command(app).commands)


def _modules_loaded_by(code: str) -> list[str]:
    """Run ``code`` in a fresh interpreter; the HEAVY top-level packages it loaded."""
    probe = (
        f"{code}\nimport json, sys\n"
        f"print(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}} & set({HEAVY!r}))))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1])


def test_building_the_cli_loads_no_heavy_library():
    code = "import typer\nfrom amlcyto.cli.main import app\ntyper.main.get_command(app)"
    assert _modules_loaded_by(code) == []


def test_every_help_loads_no_heavy_library():
    code = (
        "from typer.testing import CliRunner\n"
        "from amlcyto.cli.main import app\n"
        f"for args in [['--help']] + [[name, '--help'] for name in {COMMANDS!r}]:\n"
        "    result = CliRunner().invoke(app, args)\n"
        "    assert result.exit_code == 0, (args, result.output)"
    )
    assert _modules_loaded_by(code) == []


def test_training_package_loads_train_on_first_use():
    # TrainConfig comes with the package; `train` (torch, Lightning) only when asked for, and
    # it names the function, also after its module has been imported.
    code = (
        "import sys, types\n"
        "import amlcyto.training\n"
        "assert 'torch' not in sys.modules\n"
        "from amlcyto.training.fit import is_launch_rank_zero\n"
        "from amlcyto.training import TrainConfig, train\n"
        "assert not isinstance(train, types.ModuleType)\n"
        "assert train is sys.modules['amlcyto.training.fit'].train\n"
        "from amlcyto.poster import reproduce_poster\n"
        "assert callable(reproduce_poster)"
    )
    assert "torch" in _modules_loaded_by(code)


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_prints_help(command):
    result = CliRunner().invoke(app, [command, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.output and "--help" in result.output


def test_top_level_help_lists_every_command():
    result = CliRunner().invoke(app, ["--help"])
    assert result.exit_code == 0, result.output
    for command in COMMANDS:
        assert command in result.output
