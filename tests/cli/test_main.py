"""Tests of the ``amlcyto`` command as a whole (``amlcyto.cli.main``): its help."""

from __future__ import annotations

import pytest
from cli_helpers import invoke, ok


@pytest.mark.parametrize("command", ["train", "cv", "search", "finetune", "reproduce-poster"])
def test_help_at_80_columns_keeps_the_descriptions_readable(command):
    """The commands with the training options once showed each description in a 17-character
    column at 80 columns."""
    result = invoke(command, "--help", env={"COLUMNS": "80"})
    ok(result)
    lines = result.output.splitlines()
    assert max(map(len, lines)) <= 80
    assert any("Early stopping: epochs without a better val" in line for line in lines)
    assert any("Seed for the split, sampling, augmentation" in line for line in lines)
