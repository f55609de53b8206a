"""Tests of ``amlcyto.deploy.run_cells``: the run's own cells used by the checks."""

from __future__ import annotations

from amlcyto.data.manifest import read_manifest
from amlcyto.deploy.run_cells import run_cell_paths
from amlcyto.runs import load_run


def test_calibration_and_check_cells_take_the_classes_in_turn(trained_run):
    run = load_run(trained_run)
    frame = read_manifest(trained_run / "split.csv")
    label_of = dict(zip(frame["path"], frame["label"], strict=True))
    classes = set(frame["label"])
    for split in ("val", "test"):
        paths = run_cell_paths(run, (split,))
        assert sorted(paths) == sorted(frame.loc[frame["split"] == split, "path"])
        assert {label_of[p] for p in paths[: len(classes)]} == classes
    both = run_cell_paths(run, ("test", "val"))
    assert both[: len(both) // 2] == run_cell_paths(run, ("test",))  # test rows first
    assert run_cell_paths(run, ("val",)) == run_cell_paths(run, ("val",))  # a fixed order
