"""Tests of `amlcyto embed` through the command line (``amlcyto.cli.embed``)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from cli_helpers import invoke, ok, one_line_error

from amlcyto.mil.features import read_features


def test_embed_lists_unreadable_cells_and_refuses_a_patient_with_none(
    trained_run: Path, tiny_data: Path, tmp_path: Path
):
    import shutil

    data = Path(shutil.copytree(tiny_data, tmp_path / "data"))
    (data / "NPM1" / "NPM1_P0" / "cell_0.png").write_bytes(b"\x89PNG\r\n\x1a\n cut short")
    out = tmp_path / "f.h5"
    ok(invoke("embed", trained_run, data, "--out", out))
    assert len(read_features(out)) == 53
    assert pd.read_csv(tmp_path / "f.problems.csv")["path"].str.endswith("cell_0.png").all()
    for cell in (data / "NPM1" / "NPM1_P1").iterdir():
        cell.write_bytes(b"not an image at all")
    result = invoke("embed", trained_run, data, "--out", tmp_path / "g.h5")
    one_line_error(result, "patient NPM1_P1", "none of its cells")
    assert not (tmp_path / "g.h5").exists()
