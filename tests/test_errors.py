"""The one-line errors' helpers (amlcyto.errors)."""

from __future__ import annotations

import shlex

from amlcyto.errors import command_line


def test_a_suggested_command_quotes_what_a_shell_would_split_and_nothing_else():
    odd = "odd out ü/ft run2"
    assert command_line("amlcyto quantize {} --force", odd) == f"`amlcyto quantize '{odd}' --force`"
    assert command_line("amlcyto embed {} DATA", "/runs/a") == "`amlcyto embed /runs/a DATA`"
    tricky = "it's $HOME; rm -rf `x`"
    suggested = command_line("amlcyto scan {}", tricky).strip("`")
    assert shlex.split(suggested) == ["amlcyto", "scan", tricky]
