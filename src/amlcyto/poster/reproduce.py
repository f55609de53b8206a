"""Train and score the poster's four binary models, on an honest and on the poster's split."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pandas as pd

from amlcyto.data.manifest import read_manifest
from amlcyto.data.scan import scan
from amlcyto.data.splits import (
    PatientLeakWarning,
    split_by_image,
    split_by_patient,
    write_or_check_split,
)
from amlcyto.errors import AmlcytoError
from amlcyto.evaluation.evaluate import evaluate, test_evaluation
from amlcyto.io import prepare_output_dir, write_csv_atomic
from amlcyto.poster.reference import POSTER_LEARNING_RATES, POSTER_RESULTS, POSTER_TASKS
from amlcyto.runs.files import COMPARISON, POSTER_SPLIT
from amlcyto.runs.results import EvaluationMetrics
from amlcyto.training import TrainConfig, train
from amlcyto.training.config import on_one_device
from amlcyto.training.fit import finished_run, plan_training, work_dir

PROTOCOLS = {
    "patient": "split by patient (no leakage)",
    "image": "split by image, as the poster (LEAKY: a patient's cells in train and test)",
}


def reproduce_poster(
    data: str | Path,
    out: str | Path,
    base: TrainConfig | None = None,
    protocols: tuple[str, ...] = ("patient", "image"),
    tasks: tuple[str, ...] | None = None,
    force: bool = False,
    resume: bool = False,
    log: Callable[[str], None] = print,
) -> pd.DataFrame:
    """Train each poster preset on control against its subtype and score it on held-out data.

    Parameters
    ----------
    data : path
        The dataset folder (``class/patient/image``) or a manifest of it.
    out : path
        Folder for the two split files, one run per task and protocol, and ``comparison.csv``.
    base : TrainConfig, optional
        Shared settings (epochs, image size, ``max_per_class`` ...); model, task and
        positive class are set per task.
    protocols : tuple of str
        ``patient`` (leak-free) and/or ``image`` (the poster's leaky protocol).
    tasks : tuple of str, optional
        Subtypes to run; default all four that the data holds.
    force : bool
        Overwrite an ``out`` that holds files, retraining everything.
    resume : bool
        Continue in an ``out`` made earlier with the same data and settings: runs that
        finished are kept (and their evaluations reused), the others are trained. Refused
        where the split or a finished run's settings differ.

    Returns
    -------
    DataFrame
        One row per task, protocol and class: precision, recall, f1, support, accuracy, the
        patient-level accuracy, and the poster's published precision, recall and f1.
    """
    base = on_one_device(
        (base or TrainConfig(epochs=20, max_per_class=5000)).check(),
        "reproduce-poster",
        "to use several GPUs, run one `amlcyto reproduce-poster --tasks SUBTYPE` per GPU "
        "(CUDA_VISIBLE_DEVICES=0, 1, ...) into its own --out.",
    )
    unknown = set(protocols) - set(PROTOCOLS)
    if unknown:
        raise AmlcytoError(f"unknown protocol(s) {sorted(unknown)}; use patient and/or image.")
    if Path(data).is_dir():
        frame = scan(data).manifest
    else:
        frame = read_manifest(data).drop(columns=["split", "fold"], errors="ignore")
    labels = set(frame["label"])
    if "control" not in labels:
        raise AmlcytoError(
            f"{data}: no 'control' class; the poster's tasks are control against a subtype."
        )
    tasks = tasks or tuple(t for t in POSTER_TASKS if t in labels)
    if not tasks:
        raise AmlcytoError(f"{data}: none of the subtypes {', '.join(POSTER_TASKS)} is present.")
    for subtype in tasks:
        if subtype not in POSTER_TASKS or subtype not in labels:
            raise AmlcytoError(
                f"task {subtype!r}: not a poster subtype present in {data}; "
                f"use some of {', '.join(t for t in POSTER_TASKS if t in labels)}."
            )
    splits = {}
    for protocol in protocols:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", PatientLeakWarning)
            splitter = split_by_patient if protocol == "patient" else split_by_image
            splits[protocol] = splitter(frame, test=base.test, val=base.val, seed=base.seed)
        for subtype in tasks:  # fail before hours of training, and before writing anything
            try:
                plan_training(splits[protocol], task_config(base, subtype))
            except AmlcytoError as error:
                preset = POSTER_TASKS[subtype]
                raise AmlcytoError(f"control vs {subtype} ({preset}): {error}") from None
    resuming = resume and not force
    if resuming and Path(out).is_dir() and any(Path(out).iterdir()):
        if not any(Path(out).glob(POSTER_SPLIT.format(protocol="*"))):
            raise AmlcytoError(
                f"{out}: not a reproduce-poster folder, nothing to resume; choose another --out."
            )
    out = prepare_output_dir(out, force or resume)

    rows = []
    for protocol in protocols:
        split = splits[protocol]
        split_file = out / POSTER_SPLIT.format(protocol=protocol)
        write_or_check_split(split, split_file, resuming, "seed, test/val shares")
        for subtype in tasks:
            config = task_config(base, subtype)
            run = out / f"{subtype}-{protocol}"
            if resuming and finished_run(run, config, log):
                log(f"[{protocol}] control vs {subtype}: finished earlier, kept")
                metrics = test_evaluation(run).metrics
            else:
                interrupted = resuming and work_dir(run).is_dir()
                doing = "resuming" if interrupted else "training"
                log(f"[{protocol}] control vs {subtype}: {doing} {POSTER_TASKS[subtype]}")
                train(split_file, run, config, force=not interrupted, resume=interrupted)
                metrics = evaluate(run, force=True).metrics
            rows.extend(_rows(subtype, protocol, metrics))
    table = pd.DataFrame(rows)
    write_csv_atomic(out / COMPARISON, table)
    return table


def task_config(base: TrainConfig, subtype: str) -> TrainConfig:
    """The settings of the poster's task control against ``subtype``: its preset, binary, at
    the poster's learning rate for it unless ``base`` names one."""
    return replace(
        base,
        model=POSTER_TASKS[subtype],
        task="binary",
        positive=subtype,
        negative="control",
        lr=base.lr or POSTER_LEARNING_RATES[subtype],
    )


def _rows(subtype: str, protocol: str, metrics: EvaluationMetrics) -> list[dict]:
    poster = POSTER_RESULTS[subtype]
    result = []
    for name, role in (("control", "control"), (subtype, "subtype")):
        scores = metrics.per_class[name]
        published = poster[role]
        result.append(
            {
                "task": subtype,
                "protocol": protocol,
                "class": name,
                "precision": round(scores.precision, 3),
                "recall": round(scores.recall, 3),
                "f1": round(scores.f1, 3),
                "support": scores.support,
                "accuracy": round(metrics.accuracy, 3),
                "patient_accuracy": round(metrics.patients.accuracy, 3),
                "poster_precision": published[0],
                "poster_recall": published[1],
                "poster_f1": published[2],
                "poster_accuracy": poster["accuracy"],
            }
        )
    return result
