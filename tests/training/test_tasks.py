"""Tests of ``amlcyto.training.tasks``: the rows and classes of a task."""

from __future__ import annotations

import pandas as pd
import pytest

from amlcyto.errors import AmlcytoError
from amlcyto.training.tasks import cap_per_class, rows_of_classes, task_classes


def test_task_classes_and_row_selection():
    frame = pd.DataFrame(
        {"label": ["control", "NPM1", "NPM1", "PML_RARA", "control"], "path": list("abcde")}
    )
    assert task_classes(frame, "binary", "NPM1", "control") == ["control", "NPM1"]
    assert task_classes(frame, "multiclass", None, "control") == ["NPM1", "PML_RARA", "control"]
    with pytest.raises(AmlcytoError, match="--negative 'healthy'"):
        task_classes(frame, "binary", "NPM1", "healthy")
    with pytest.raises(AmlcytoError, match="at least 2 classes"):
        task_classes(frame[frame["label"] == "NPM1"], "multiclass", None, "control")
    rows = rows_of_classes(frame, ["control", "NPM1"])
    assert list(rows["path"]) == ["a", "b", "c", "e"]
    assert list(rows["target"]) == [0, 1, 1, 0]


def test_cap_per_class_is_seeded_and_caps_each_label():
    frame = pd.DataFrame({"label": ["a"] * 10 + ["b"] * 3, "path": [str(i) for i in range(13)]})
    capped = cap_per_class(frame, 4, seed=1)
    assert capped["label"].value_counts().to_dict() == {"a": 4, "b": 3}
    pd.testing.assert_frame_equal(capped, cap_per_class(frame, 4, seed=1))
    assert cap_per_class(frame, None, seed=1) is frame
