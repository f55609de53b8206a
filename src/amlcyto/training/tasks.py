"""Which rows and classes a task uses: control against one subtype, or all classes."""

from __future__ import annotations

import pandas as pd

from amlcyto.errors import AmlcytoError


def task_classes(frame: pd.DataFrame, task: str, positive: str | None, negative: str) -> list[str]:
    """The ordered class list of a task: ``[negative, positive]`` for binary, else sorted labels.

    In a binary task index 1 is the positive class (the sigmoid's output).
    """
    labels = sorted(frame["label"].unique())
    if task == "binary":
        for name, flag in ((negative, "--negative"), (positive, "--positive")):
            if name not in labels:
                raise AmlcytoError(
                    f"{flag} {name!r} is not a class of this data; classes: {', '.join(labels)}."
                )
        return [negative, positive]
    if len(labels) < 2:
        raise AmlcytoError(f"multiclass training needs at least 2 classes, the data has {labels}.")
    return labels


def rows_of_classes(frame: pd.DataFrame, classes: list[str]) -> pd.DataFrame:
    """The rows whose label is one of ``classes``, with a ``target`` column (class index)."""
    rows = frame[frame["label"].isin(classes)].copy()
    rows["target"] = rows["label"].map({name: i for i, name in enumerate(classes)}).astype(int)
    return rows.reset_index(drop=True)


def cap_per_class(frame: pd.DataFrame, limit: int | None, seed: int) -> pd.DataFrame:
    """At most ``limit`` rows per label, drawn at random (seeded); all rows if ``limit`` is None."""
    if limit is None:
        return frame
    # Shuffle, keep each label's first ``limit`` rows. (groupby.apply would drop the ``label``
    # column under pandas >= 3.)
    shuffled = frame.sample(frac=1.0, random_state=seed)
    kept = shuffled[shuffled.groupby("label").cumcount() < limit]
    return kept.sort_index().reset_index(drop=True)
