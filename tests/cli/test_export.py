"""Tests of `amlcyto export` through the command line (``amlcyto.cli.export``)."""

from __future__ import annotations

from cli_helpers import invoke, ok, one_line_error


def test_export_command_says_it_checked_and_refuses_to_overwrite(trained_run, tmp_path):
    out = tmp_path / "m.onnx"
    result = invoke("export", trained_run, "--out", out)
    ok(result)
    assert result.stdout.strip() == str(out)
    assert "checked with onnxruntime on" in result.stderr and "of the run's cells" in result.stderr
    stamp = out.stat().st_mtime_ns
    one_line_error(invoke("export", trained_run, "--out", out), "--force")
    assert out.stat().st_mtime_ns == stamp
    ok(invoke("export", trained_run, "--out", out, "--force"))
    one_line_error(invoke("export", trained_run, "--out", tmp_path / "m.txt"), ".onnx")
    one_line_error(invoke("export", trained_run, "--out", out, "--format", "tflite"), "onnx only")
