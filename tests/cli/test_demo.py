"""Tests of `amlcyto demo-data` through the command line (``amlcyto.cli.demo``)."""

from __future__ import annotations

from cli_helpers import invoke, ok, one_line_error
from data_helpers import _demo_files

from amlcyto.data.demo import make_demo_dataset


def test_demo_data_force_replaces_an_earlier_demo_folder_and_nothing_else(tmp_path):
    out = tmp_path / "demo"
    ok(invoke("demo-data", out, "--patients", "2", "--cells", "2"))
    assert len(_demo_files(out)) == 5 * 2 * 2
    ok(invoke("demo-data", out, "--patients", "1", "--cells", "1", "--seed", "5", "--force"))
    fresh = make_demo_dataset(tmp_path / "fresh", 1, 1, seed=5)
    assert _demo_files(out) == _demo_files(fresh)  # only the new images, none of the old
    assert sorted(p.name for p in tmp_path.iterdir()) == ["demo", "fresh"]  # no temp folder

    mine = tmp_path / "mine"
    (mine / "control").mkdir(parents=True)
    (mine / "control" / "notes.txt").write_text("keep me")
    result = invoke("demo-data", mine, "--patients", "1", "--cells", "1", "--force")
    one_line_error(result, "notes.txt", "not part of a demo dataset")
    assert _demo_files(mine) == ["control/notes.txt"]
