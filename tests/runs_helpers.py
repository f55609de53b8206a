"""Helpers of the run-folder tests."""

from __future__ import annotations

import json
from pathlib import Path

from amlcyto.runs.files import CONFIG


def edit_config(run: Path, edit) -> None:
    """Change the run's record in place: ``edit`` mutates the parsed config.json."""
    config = json.loads((run / CONFIG).read_text())
    edit(config)
    (run / CONFIG).write_text(json.dumps(config))
