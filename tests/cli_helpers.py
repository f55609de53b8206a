"""Running the command line in tests: one way to invoke it and to check its outcome."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from amlcyto.cli.main import app

# Training options that make a run take a second on the CPU.
FAST = ["--epochs", "1", "--image-size", "16", "--batch-size", "8", "--accelerator", "cpu"]
FAST += ["--precision", "32-true", "--lr", "0.003", "--no-channels-last"]


def invoke(*args: str | Path, env: dict[str, str] | None = None):
    """Run ``amlcyto ARGS...`` in this process; stdout and stderr are kept apart."""
    return CliRunner().invoke(app, [str(a) for a in args], env=env)


def ok(result) -> None:
    """The command succeeded."""
    assert result.exit_code == 0, result.output + repr(result.exception)


def one_line_error(result, *fragments: str, code: int = 2) -> str:
    """The command failed with exit ``code`` and a single ``error:`` line, no traceback; each
    fragment is in that line. Returns the line."""
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]
