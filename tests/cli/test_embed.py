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


def test_workers_beyond_the_usable_cpus_are_capped_with_a_warning(
    trained_run: Path, tiny_manifest: Path, tmp_path: Path, monkeypatch
):
    import amlcyto.evaluation.inference as inference

    started, real = [], inference.DataLoader

    def counting(*args, num_workers=0, **kwargs):
        started.append(num_workers)
        return real(*args, num_workers=0, **kwargs)  # decode here: the test starts no process

    monkeypatch.setattr(inference, "DataLoader", counting)
    monkeypatch.setattr("amlcyto.machine.usable_cpus", lambda: 2)
    out = tmp_path / "c.h5"
    result = invoke("embed", trained_run, tiny_manifest, "--out", out, "--workers", "500")
    ok(result)
    assert started == [2]
    assert "warning: --workers 500: this machine has 2 usable CPUs" in result.stderr


def test_an_encoder_embeds_but_not_in_int8(encoder_run: Path, tiny_manifest: Path, tmp_path: Path):
    out = tmp_path / "c.h5"
    result = invoke("embed", encoder_run, tiny_manifest, "--out", out, "--precision", "int8")
    one_line_error(result, f"{encoder_run}: an encoder has no int8 calibration", "--precision")
    assert not out.exists()
    ok(invoke("embed", encoder_run, tiny_manifest, "--out", out, "--precision", "32"))
    assert read_features(out).extractor.origin == "random-init"
