"""Tests of ``amlcyto.probe.cells``: features files of the same cells, lined up."""

from __future__ import annotations

import numpy as np
import pytest
from probe_helpers import probe_cells, write_features

from amlcyto.errors import AmlcytoError
from amlcyto.mil.features import read_features
from amlcyto.probe.cells import read_probe_cells


def test_rows_are_matched_by_path_in_the_first_files_order(tmp_path):
    cells = probe_cells(patients=2, cells=3)
    a = write_features(tmp_path / "a.h5", cells, width=6)
    b = write_features(tmp_path / "b.h5", cells, width=4, seed=1, shuffle=True, encoder=True)
    data = read_probe_cells([a, b], log=str)
    assert data.cells["path"].tolist() == cells["path"].tolist()
    assert [f.shape for f in data.features] == [(18, 6), (18, 4)]
    written = read_features(b)
    assert not np.array_equal(written.cells["path"], cells["path"])  # b's rows are shuffled
    by_path = dict(zip(written.cells["path"], written.features, strict=True))
    for path, row in zip(data.cells["path"], data.features[1], strict=True):
        np.testing.assert_array_equal(row, by_path[path])
    assert data.sources == [str(a), str(b)] and data.classes == sorted(set(cells["label"]))


def test_files_of_different_cells_are_one_line_naming_what_differs(tmp_path):
    cells = probe_cells(patients=2, cells=3)
    a = write_features(tmp_path / "a.h5", cells)
    b = write_features(tmp_path / "b.h5", cells.iloc[2:])
    with pytest.raises(AmlcytoError) as error:
        read_probe_cells([a, b], log=str)
    message = str(error.value)
    assert "\n" not in message
    assert message.startswith(f"{b}: holds 16 cells, {a} 18; 2 of a.h5's are not in b.h5")
    assert f"(first: {cells['path'][0]})" in message
    assert "embed the same data with each extractor" in message


def test_a_cell_labelled_otherwise_in_another_file_is_refused(tmp_path):
    cells = probe_cells(patients=2, cells=3)
    a = write_features(tmp_path / "a.h5", cells)
    relabelled = cells.copy()
    relabelled.loc[4, "label"] = "control"
    b = write_features(tmp_path / "b.h5", relabelled, shuffle=True)
    with pytest.raises(AmlcytoError, match=r"1 cell\(s\) have another label than in .*"):
        read_probe_cells([a, b], log=str)


def test_unlabelled_cells_are_left_out_and_counted(tmp_path):
    cells = probe_cells(patients=2, cells=3)
    cells.loc[[0, 7], "label"] = ""
    a = write_features(tmp_path / "a.h5", cells)
    said = []
    data = read_probe_cells([a, a], log=said.append)  # a file given twice counts once
    assert len(data.cells) == 16 and data.unlabelled == 2 and len(data.features) == 1
    assert said == ["left out 2 of 18 cells without a label (in every file)"]
    assert "" not in set(data.cells["label"])


@pytest.mark.parametrize(
    "labels, expected",
    [("", "none of its 18 cells has a label"), ("NPM1", "every labelled cell is 'NPM1'")],
)
def test_no_labels_or_one_class_is_refused(tmp_path, labels, expected):
    cells = probe_cells(patients=2, cells=3).assign(label=labels)
    a = write_features(tmp_path / "a.h5", cells)
    with pytest.raises(AmlcytoError, match=expected):
        read_probe_cells([a], log=str)


def test_a_cell_listed_twice_is_refused(tmp_path):
    cells = probe_cells(patients=2, cells=3)
    cells.loc[1, "path"] = cells.loc[0, "path"]
    a = write_features(tmp_path / "a.h5", cells)
    with pytest.raises(AmlcytoError, match=r"lists 1 cell\(s\) more than once"):
        read_probe_cells([a], log=str)
