"""Running the command line in tests: one way to invoke it and to check its outcome."""

from __future__ import annotations

import signal
import subprocess
import time
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


def interrupt_after_first_epoch(
    command: list[str], env: dict[str, str], state: Path
) -> tuple[subprocess.Popen, str]:
    """Start ``command`` in a subprocess, send it Ctrl-C (SIGINT) once ``state`` (its first
    checkpoint) exists, and check that it stopped within 30 s with exit code 130, a single
    ``error:`` line and no traceback. Returns the process and that line."""
    process = subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not state.is_file() and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.05)
    assert state.is_file(), "no epoch finished in time"
    process.send_signal(signal.SIGINT)
    started = time.monotonic()
    _, stderr = process.communicate(timeout=60)
    assert time.monotonic() - started < 30
    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr and "[W" not in stderr, stderr
    lines = [line for line in stderr.splitlines() if "error:" in line]  # besides progress bars
    assert len(lines) == 1, stderr
    return process, lines[0]
