"""The tests of a run folder damage their own copy of the shared trained run."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest


@pytest.fixture
def run_copy(trained_run: Path, tmp_path: Path) -> Path:
    """A copy of the shared trained run that a test may damage."""
    return Path(shutil.copytree(trained_run, tmp_path / "run"))
