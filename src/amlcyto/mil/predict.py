"""``mil_predict(run, data, out)``: new patients' calls, and the cells that drove each one.

``data`` is a features file of ``amlcyto embed`` (made by the run's own cell model), a manifest
or split file (its ``patient`` column makes the bags), or folders of images, each image's
patient being its folder (``NEW/PATIENT/*.tif``, or ``class/PATIENT/*.tif``). Images are
embedded here by the cell run the MIL run was trained on, which must be unchanged.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from amlcyto.data.manifest import read_manifest
from amlcyto.data.scan import PROBLEM_COLUMNS
from amlcyto.errors import AmlcytoError
from amlcyto.evaluation.inference import load_for_inference
from amlcyto.evaluation.predict import collect_images
from amlcyto.evaluation.tables import probability_columns
from amlcyto.mil.bags import make_bags
from amlcyto.mil.embed import embedded_chunks, extractor_of
from amlcyto.mil.features import (
    CellFeatures,
    Extractor,
    check_same_extractor,
    is_features_file,
    read_feature_files,
)
from amlcyto.mil.fit import class_branch, predict_bags
from amlcyto.runs import CELL_MODELS, RunInfo, load_mil_run

TOP_CELLS = 5  # the highest-attention cells listed per patient


def mil_predict(
    run_dir: str | Path,
    inputs: Sequence[str | Path],
    batch_size: int = 256,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """One row per patient: cells, called class, class probabilities, the true class where the
    data has one, and its ``TOP_CELLS`` highest-attention cells (``cell_1`` ... with
    ``attention_1`` ...). Also the images left out (cannot be decoded), listed. Images are
    embedded first, calling ``progress(done, total)`` as they go."""
    info, model = load_mil_run(run_dir)
    data, problems = mil_inputs(info, inputs, batch_size, progress)
    bags = make_bags(data, labelled=False)
    probabilities, attention = predict_bags(model, data.features, bags.rows)
    called = probabilities.argmax(axis=1)
    table = pd.DataFrame(
        {
            "patient": bags.patients,
            "cells": bags.sizes(),
            "predicted": np.asarray(info.classes)[called],
            **dict(zip(probability_columns(info.classes), probabilities.T, strict=True)),
        }
    )
    if any(bags.labels):
        table.insert(2, "true", bags.labels)
    paths = data.cells["path"].to_numpy()
    for rank in range(TOP_CELLS):
        table[f"cell_{rank + 1}"], table[f"attention_{rank + 1}"] = "", np.nan
    for i, rows in enumerate(bags.rows):
        weights = class_branch(attention[i], called[i])
        for rank, j in enumerate(np.argsort(-weights, kind="stable")[:TOP_CELLS]):
            table.loc[i, f"cell_{rank + 1}"] = paths[rows[j]]
            table.loc[i, f"attention_{rank + 1}"] = weights[j]
    return table, problems


def mil_inputs(
    info: RunInfo,
    inputs: Sequence[str | Path],
    batch_size: int = 256,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[CellFeatures, pd.DataFrame]:
    """The cell features of ``inputs`` for the MIL run ``info`` (checked to come from its
    extractor), and the images that could not be read."""
    expected = Extractor(**info.input.extractor)
    features = [p for p in inputs if is_features_file(p)]
    if features:
        others = [p for p in inputs if p not in features]
        if others:
            raise AmlcytoError(
                f"{others[0]}: not a features file, given with {features[0]}; give features "
                "files (.h5 of `amlcyto embed`) or images, each in a call of their own."
            )
        data = read_feature_files(features)
        check_same_extractor(expected, data, str(info.path))
        return data, pd.DataFrame(columns=PROBLEM_COLUMNS)
    return _embed_in_memory(expected, _image_rows(inputs), batch_size, progress)


def _image_rows(inputs: Sequence[str | Path]) -> pd.DataFrame:
    """``path, patient, label`` of the images: a manifest's rows, or each image under a folder
    with the folder it lies in as its patient (no label: new patients are unlabelled). An image
    given twice is listed once; patients of one name from two places (folders ``a/EOK`` and
    ``b/EOK``, or manifests) are kept apart, each named by its place (``a/EOK``, ``m.csv:EOK``)."""
    frames, folders = [], []
    for item in map(Path, inputs):
        if item.is_file() and item.suffix.lower() == ".csv":
            rows = read_manifest(item)[["path", "patient", "label"]]
            frames.append(rows.assign(place=f"{item}:" + rows["patient"].astype(str)))
        else:
            folders.append(item)
    if folders:
        images = collect_images(folders)[0]
        place = [os.path.dirname(p) for p in images]
        patients = [os.path.basename(p) for p in place]
        frames.append(
            pd.DataFrame({"path": images, "patient": patients, "label": "", "place": place})
        )
    rows = pd.concat(frames, ignore_index=True)
    rows = rows[~rows["path"].map(os.path.realpath).duplicated()].reset_index(drop=True)
    clash = rows.groupby("patient")["place"].transform("nunique") > 1
    rows.loc[clash, "patient"] = rows.loc[clash, "place"]
    return rows.drop(columns="place")


def _embed_in_memory(
    expected: Extractor, rows: pd.DataFrame, batch_size: int, progress
) -> tuple[CellFeatures, pd.DataFrame]:
    # the precision the MIL run's features were computed in, whatever this machine would choose
    run = load_for_inference(expected.run, expected.precision, CELL_MODELS)
    if extractor_of(run).differs_from(expected):
        raise AmlcytoError(
            f"{expected.run}: the cell run that made this MIL run's features has changed since "
            "(other weights, settings or int8 calibration); give features made before the "
            "change, or retrain the MIL run on features of the run as it is now."
        )
    unreadable: dict = {}
    source = ", ".join(sorted(set(rows["patient"])))
    features, probabilities, kept = zip(
        *embedded_chunks(run, rows, source, unreadable, batch_size, progress=progress), strict=True
    )
    cells = pd.concat(kept).reset_index(drop=True)
    problems = pd.DataFrame([vars(p) for p in unreadable.values()], columns=PROBLEM_COLUMNS)
    data = CellFeatures(
        np.concatenate(features), np.concatenate(probabilities), cells, expected, "the images"
    )
    return data, problems
