"""Every file of every kind of run folder amlcyto writes, named once: the one place to look
up what a folder holds and which module writes each file.

```
RUN/ (a cell classifier: amlcyto train, finetune)
  config.json            RunInfo (runs.record)
  model.safetensors      the weights, tensors only (runs.store)
  split.csv              the rows trained, validated and tested on (training.fit)
  history.csv            one row per epoch (training.fit)
  int8.json              optional: the int8 calibration, numbers only (deploy.int8)
  eval-<name>/           one evaluation each (evaluation.evaluate), see below
  ../.RUN.partial/       while training, beside RUN: checkpoint/ (state.json, state-<epochs>
                         .safetensors: the resumable state, training.checkpoint)
EVAL/ (amlcyto evaluate)
  predictions.csv  patients.csv  metrics.json  report.txt  problems.csv
  confusion_matrix.png  patient_confusion_matrix.png  roc.png  loss_curves.png
ENCODER/ (a cell encoder: amlcyto pretrain, encoder)
  config.json  model.safetensors (the backbone alone, no head)  and, when pretrained here,
  split.csv (the rows it saw; labels unused)  history.csv (the loss curve)
MIL/ (amlcyto mil train: config.json and model.safetensors as a cell run's, and)
  folds.csv  patients.csv  attention.csv  metrics.json  report.txt  history.csv
  confusion_matrix.png
CV/ (amlcyto cv)       folds.csv  cv.csv  cv.json  fold-<k>/ (a cell run each)
SEARCH/ (amlcyto search)  search.db  trials.csv  best.yaml  best.json  search.json
                          history.png  importance.png  trial-<n>/  final/
POSTER/ (amlcyto reproduce-poster)  comparison.csv  split_by_<protocol>.csv  <task>-<protocol>/
CURATION/ (amlcyto curate)  cells.csv  patients.csv  curated.csv  problems.csv  montage_<class>.png
PROBE/ (amlcyto probe)  probe.csv  folds.csv  map-<features file>.png
```
"""

from __future__ import annotations

# a run of any kind
CONFIG = "config.json"
WEIGHTS = "model.safetensors"
HISTORY = "history.csv"
METRICS = "metrics.json"
REPORT = "report.txt"
PATIENTS = "patients.csv"
CONFUSION = "confusion_matrix.png"

# a cell classifier
SPLIT = "split.csv"
INT8 = "int8.json"
EVAL_PREFIX = "eval-"  # + the evaluation's name: eval-test, eval-<data>, eval-test-int8

# an evaluation folder (besides METRICS, REPORT, PATIENTS, CONFUSION)
PREDICTIONS = "predictions.csv"
PROBLEMS = "problems.csv"
PATIENT_CONFUSION = "patient_confusion_matrix.png"
ROC = "roc.png"
LOSS_CURVES = "loss_curves.png"
EVALUATION_FILES = (
    PREDICTIONS,
    PATIENTS,
    METRICS,
    REPORT,
    PROBLEMS,
    CONFUSION,
    PATIENT_CONFUSION,
    ROC,
    LOSS_CURVES,
)

# a patient MIL run (besides CONFIG, WEIGHTS, METRICS, REPORT, PATIENTS, HISTORY, CONFUSION)
FOLDS = "folds.csv"
ATTENTION = "attention.csv"

# a cross-validation folder (besides FOLDS)
CV_TABLE = "cv.csv"
CV_SUMMARY = "cv.json"

# a curation folder (besides PATIENTS, PROBLEMS)
CELLS = "cells.csv"
CURATED = "curated.csv"

# a search folder
STUDY = "search.db"
TRIALS = "trials.csv"
BEST_YAML = "best.yaml"
BEST = "best.json"
SEARCH = "search.json"
SEARCH_HISTORY = "history.png"
IMPORTANCE = "importance.png"


# a run's working folder while it trains (.RUN.partial, beside RUN)
CHECKPOINT = "checkpoint"  # its folder of the resumable state:
STATE = "state.json"  # the state, naming its tensors file
STATE_TENSORS = "state-{epochs}.safetensors"  # the tensors after that many epochs

# a search folder's final run, and a reproduce-poster folder
FINAL = "final"
COMPARISON = "comparison.csv"  # one row per task, protocol and class, beside the poster
POSTER_SPLIT = "split_by_{protocol}.csv"


# What each kind of folder holds, as patterns of amlcyto.io (``--force`` replaces these and
# nothing else; a file of another name inside one of their folders is refused)
CELL_RUN_FILES = (
    CONFIG,
    WEIGHTS,
    SPLIT,
    HISTORY,
    INT8,
    f"{EVAL_PREFIX}*",  # a linked evaluation
    *(f"{EVAL_PREFIX}*/{name}" for name in EVALUATION_FILES),
)
ENCODER_RUN_FILES = (CONFIG, WEIGHTS, SPLIT, HISTORY)
MIL_RUN_FILES = (CONFIG, WEIGHTS, FOLDS, PATIENTS, ATTENTION, METRICS, REPORT, HISTORY, CONFUSION)
FOLD_RUN = "fold-{k}"  # a cross-validation's run of fold k
CV_FILES = (FOLDS, CV_TABLE, CV_SUMMARY, *(f"{FOLD_RUN.format(k='*')}/{p}" for p in CELL_RUN_FILES))


def evaluation_folder(name: str) -> str:
    """The folder name of a run's evaluation ``name`` (``test`` -> ``eval-test``)."""
    return f"{EVAL_PREFIX}{name}"


# a probe folder (amlcyto probe; besides FOLDS: each cell's patient, label and fold)
PROBE_TABLE = "probe.csv"  # one row per features file and method: mean and sd over folds
PROBE_MAP = "map-{name}.png"  # a features file's 2-D map (t-SNE), named after the file
PROBE_FILES = (PROBE_TABLE, FOLDS, PROBE_MAP.format(name="*"))
