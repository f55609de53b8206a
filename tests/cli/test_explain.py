"""Tests of `amlcyto explain` through the command line (``amlcyto.cli.explain``)."""

from __future__ import annotations

from pathlib import Path

from cli_helpers import invoke, ok


def test_explain_command(trained_run: Path, tiny_data: Path, tmp_path: Path):
    out = tmp_path / "out"
    result = invoke("explain", trained_run, tiny_data / "NPM1" / "NPM1_P0", "--out", out)
    ok(result)
    assert "wrote 6 overlays" in result.stderr and result.stdout.strip() == str(out)
    again = invoke("explain", trained_run, tiny_data / "NPM1" / "NPM1_P0", "--out", out)
    assert again.exit_code == 2 and "already holds files" in again.stderr


def test_an_interrupted_explain_leaves_no_half_folder(
    trained_run, tiny_data, tmp_path, monkeypatch
):
    import amlcyto.evaluation.explain as explain_module

    drawn = []
    real = explain_module.plot_gradcam

    def ctrl_c_after_two(*args):
        if len(drawn) == 2:
            raise KeyboardInterrupt
        drawn.append(real(*args))

    monkeypatch.setattr(explain_module, "plot_gradcam", ctrl_c_after_two)
    out = tmp_path / "out"
    result = invoke("explain", trained_run, tiny_data / "NPM1" / "NPM1_P0", "--out", out)
    assert result.exit_code == 130 and "interrupted" in result.stderr
    assert len(drawn) == 2 and list(tmp_path.iterdir()) == []  # no overlays, no hidden folder


def test_force_replaces_the_earlier_overlays_and_keeps_other_files(
    trained_run, tiny_data, tmp_path
):
    out, patient = tmp_path / "out", tiny_data / "NPM1" / "NPM1_P0"
    ok(invoke("explain", trained_run, patient, "--out", out))
    (out / "thesis.docx").write_text("mine")
    one = tmp_path / "one"
    one.mkdir()
    (one / "cell.png").write_bytes(sorted(patient.iterdir())[0].read_bytes())
    (one / "notes.txt").write_text("not an image")
    result = invoke("explain", trained_run, one, "--out", out, "--force")
    ok(result)
    assert sorted(p.name for p in out.iterdir()) == [
        "00000_cell.png",
        "explanations.csv",
        "thesis.docx",
    ]
    assert (out / "thesis.docx").read_text() == "mine"
    assert "left out 0 unreadable and 1 non-image entries" in result.stderr
    assert f"left out {one / 'notes.txt'}: passed over: not an image file" in result.stderr
