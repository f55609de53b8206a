"""``evaluate(run, data)``: score a trained run on its test split or on any labelled folder."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from amlcyto.data.decoding import DECODE_PROBLEMS
from amlcyto.data.discovery import SKIPPED, Problem, check_some_readable
from amlcyto.data.manifest import absolute_paths, paths_source, read_manifest, write_manifest
from amlcyto.data.scan import PROBLEM_COLUMNS, labelled_rows, write_problems
from amlcyto.errors import AmlcytoError, first_line
from amlcyto.evaluation.metrics import compute_metrics, report_text
from amlcyto.evaluation.plots import plot_confusion, plot_history, plot_roc
from amlcyto.evaluation.scorer import Scorer, open_scorer
from amlcyto.evaluation.tables import aggregate, predictions_table, rounded
from amlcyto.io import (
    prepare_output_dir,
    read_result_table,
    remove_outputs,
    write_csv_atomic,
    write_text_atomic,
)
from amlcyto.runs import read_run_info
from amlcyto.runs.files import (
    CONFUSION,
    EVALUATION_FILES,
    LOSS_CURVES,
    METRICS,
    PATIENT_CONFUSION,
    PATIENTS,
    PREDICTIONS,
    PROBLEMS,
    REPORT,
    ROC,
    evaluation_folder,
)
from amlcyto.runs.results import EvaluationMetrics, read_metrics, write_metrics


@dataclass
class Evaluation:
    """What :func:`evaluate` measured and where it wrote it."""

    out: Path
    metrics: EvaluationMetrics
    report: str
    patient_report: str
    predictions: pd.DataFrame
    patients: pd.DataFrame
    # the files left out: a scanned folder's problems and every image that could not be read
    problems: pd.DataFrame

    @property
    def left_out(self) -> dict[str, int]:
        """Label -> images not in the run's classes (as ``metrics.json`` has it)."""
        return self.metrics.left_out


def evaluation_rows(
    run: Scorer, data: str | Path | None, split: str | None = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The labelled rows to score (the run's own split, a manifest/split file, or a folder),
    and the problems of a scanned folder: the files it skipped are listed, never dropped."""
    if data is None and run.split_file is None:
        raise AmlcytoError(
            f"{run.path}: an exported model has no split of its own; name the labelled data "
            "to score with --data (a folder, manifest or split file)."
        )
    if data is None:  # the run's own split, looked up from where the run was written too
        frame = read_manifest(run.split_file, run.written_in)
        problems = pd.DataFrame(columns=PROBLEM_COLUMNS)
    else:
        frame, problems = labelled_rows(data)
    if "split" in frame.columns:
        split = split or "test"
        others = ", ".join(sorted(set(frame["split"].dropna()))) or "none"
        frame = frame[frame["split"] == split]
        if frame.empty:
            raise AmlcytoError(
                f"{data or run.split_file}: no rows in split {split!r} (it has: {others}); "
                f"choose one of those with --split."
            )
    elif split is not None:
        raise AmlcytoError(
            f"{data}: has no split column, so --split {split} cannot choose rows; leave --split "
            "out to score all of them."
        )
    return frame.reset_index(drop=True), problems


def default_out(run: Scorer, data: str | Path | None, split: str | None, has_split: bool) -> Path:
    """``RUN/eval-<split>`` for the run's own split, ``RUN/eval-<name>`` for other data (a
    folder's name or a CSV's stem, with the split where the data has a split column); beside
    an exported model, ``<model>-eval-<name>``. An int8 evaluation adds ``-int8``: the run's
    own ``eval-test`` (which ``report`` shows) stays the model's, not its int8 network's."""
    split = split or "test"
    if data is None:
        name = split
    elif Path(data).is_dir():
        name = Path(data).resolve().name
    else:
        name = f"{Path(data).stem}-{split}" if has_split else Path(data).stem
    return run.eval_dir(f"{name}-int8" if run.precision == "int8" else name)


def evaluate(
    run_dir: str | Path,
    data: str | Path | None = None,
    split: str | None = None,
    out: str | Path | None = None,
    force: bool = False,
    batch_size: int = 256,
    workers: int | None = None,
    precision: str = "auto",
    progress: Callable[[int, int], None] | None = None,
) -> Evaluation:
    """Score a run: cell-level and patient-level reports, metrics, predictions and figures.

    Every image is read in one pass: those that cannot be decoded are listed in
    ``problems.csv`` (with a scanned folder's problems) and counted in ``metrics.json``
    (``unreadable_images``), and the rest are scored. The output folder is made only once the
    results are ready, so a failed evaluation leaves none behind.

    Parameters
    ----------
    run_dir : path
        A run made by :func:`amlcyto.training.train`, or an ``.onnx`` model made by
        ``amlcyto export`` (then ``data`` is needed, and only onnxruntime is used).
    data : path, optional
        A manifest or split file, or a labelled folder (scanned on the fly). Default: the run's
        own ``split.csv``.
    split : str, optional
        Which split's rows to score where the data has a ``split`` column (default ``test``);
        data without one is scored whole, and naming a split for it is an error.
    out : path, optional
        Output folder; default :func:`default_out`. With ``force``, the files of an earlier
        evaluation there are removed first.
    progress : callable, optional
        Called as ``progress(done, total)`` while the images are scored.

    Raises
    ------
    AmlcytoError
        No rows of the run's classes, none of them readable, or ``out`` holds files and
        ``force`` is not set.
    """
    run = open_scorer(run_dir, precision)
    frame, problems = evaluation_rows(run, data, split)
    source = str(data or paths_source(run.split_file, run.written_in))
    known = frame["label"].isin(run.classes)
    rows = frame[known].reset_index(drop=True)
    if rows.empty:
        found = ", ".join(sorted(map(str, frame["label"].unique()))) or "none"
        raise AmlcytoError(
            f"{source}: no images of this run's classes "
            f"({', '.join(run.classes)}; found: {found}); name the class folders or labels "
            "as the run does."
        )
    target = Path(out or default_out(run, data, split, "split" in frame.columns))
    if target.exists():
        prepare_output_dir(target, force)  # refuse an earlier evaluation now, not after scoring

    probabilities, unreadable = run.score(rows["path"].tolist(), batch_size, workers, progress)
    check_some_readable(unreadable, len(rows), source)
    problems = _with_problems(problems, list(unreadable.values()))
    readable = ~rows.index.isin(list(unreadable))
    cells = predictions_table(rows[readable], probabilities[readable], run.classes)
    patients = aggregate(cells, "patient", run.classes)
    # images that could not be decoded (other problems of a folder: stray files, empty folders)
    unreadable_rows = problems["action"].eq(SKIPPED) & problems["problem"].isin(DECODE_PROBLEMS)
    metrics = EvaluationMetrics(
        **vars(compute_metrics(cells, run.classes)),
        patients=compute_metrics(patients, run.classes),
        left_out=frame.loc[~known, "label"].value_counts().to_dict(),
        inference_precision=run.precision,
        unreadable_images=int(unreadable_rows.sum()),
    )
    report = report_text(cells, run.classes)
    patient_report = report_text(patients, run.classes)

    out = prepare_output_dir(target, force)  # made only now that the results are ready
    earlier = _file_versions(out, EVALUATION_FILES)  # with --force: an earlier evaluation's
    if len(problems):
        write_problems(problems, out / PROBLEMS)
    write_manifest(rounded(cells), out / PREDICTIONS)
    write_csv_atomic(out / PATIENTS, rounded(patients))
    write_metrics(out, metrics)
    write_text_atomic(
        out / REPORT,
        f"Cells ({len(cells)} images)\n\n{report}\n"
        f"Patients ({len(patients)}, mean cell probability)\n\n{patient_report}",
    )
    plot_confusion(metrics.confusion_matrix, run.classes, out / CONFUSION, "Cells")
    plot_confusion(
        metrics.patients.confusion_matrix, run.classes, out / PATIENT_CONFUSION, "Patients"
    )
    auc = "n/a" if metrics.auc is None else f"{metrics.auc:.3f}"
    plot_roc(cells, run.classes, out / ROC, f"ROC (cells), AUC {auc}")
    if run.history is not None:
        plot_history(pd.read_csv(run.history), out / LOSS_CURVES)
    # Files of the earlier evaluation that this one did not write again (a ROC curve where one
    # class is left, a problems list) go, now that the new results are complete.
    now = _file_versions(out, EVALUATION_FILES)
    remove_outputs(out, [name for name, version in earlier.items() if now.get(name) == version])
    return Evaluation(out, metrics, report, patient_report, cells, patients, problems)


def load_evaluation(folder: str | Path, written_in: str | Path | None = None) -> Evaluation:
    """Read back what :func:`evaluate` wrote into ``folder`` (paths made absolute again, see
    :func:`~amlcyto.data.manifest.absolute_paths` for ``written_in``); one whose tables were
    cut short is a one-line error."""
    folder = Path(folder)
    metrics = read_metrics(folder, EvaluationMetrics)
    try:
        cells = read_result_table(folder / PREDICTIONS)
        patients = read_result_table(folder / PATIENTS)
        problems = (
            pd.read_csv(folder / PROBLEMS, dtype=str, keep_default_na=False)
            if (folder / PROBLEMS).is_file()
            else pd.DataFrame(columns=PROBLEM_COLUMNS)
        )
    except (OSError, ValueError) as error:
        raise AmlcytoError(
            f"{folder}: not a whole evaluation ({first_line(error)}); score the run again with "
            "`amlcyto evaluate RUN --force`."
        ) from None
    for name, table, scores in (
        (PREDICTIONS, cells, metrics),
        (PATIENTS, patients, metrics.patients),
    ):
        whole = table[["true", "predicted"]].notna().all(axis=None)
        if len(table) != scores.n or not whole:
            raise AmlcytoError(
                f"{folder / name}: {len(table)} rows{'' if whole else ', one cut short,'} where "
                f"{METRICS} counts {scores.n}; score the run again with "
                "`amlcyto evaluate RUN --force`."
            )
    cells["path"] = absolute_paths(cells["path"], folder / PREDICTIONS, written_in)
    classes = metrics.classes
    report, patient_report = report_text(cells, classes), report_text(patients, classes)
    return Evaluation(folder, metrics, report, patient_report, cells, patients, problems)


def test_evaluation(run_dir: str | Path, log: Callable[[str], None] | None = None) -> Evaluation:
    """A run's evaluation on its own test split: the one ``evaluate`` wrote into
    ``RUN/eval-test``, read back, or, where there is none whole, made now (replacing the files
    of an incomplete one)."""
    folder = Path(run_dir) / evaluation_folder("test")  # evaluate's default for its test split
    why = "no test evaluation yet"
    if (folder / METRICS).is_file():
        written_in = read_run_info(run_dir).data.written_in  # where the run was, if moved since
        try:
            return load_evaluation(folder, written_in and Path(written_in) / folder.name)
        except AmlcytoError as error:  # incomplete: scored again below
            why = f"its test evaluation is not whole ({first_line(error).split('; ')[0]})"
    if log is not None:
        log(f"{run_dir}: {why}; scoring its test split into {folder}")
    return evaluate(run_dir, force=True)


def _with_problems(problems: pd.DataFrame, more: list[Problem]) -> pd.DataFrame:
    """``problems`` and ``more`` in one table, sorted by path."""
    if not more:
        return problems
    added = pd.DataFrame([vars(p) for p in more], columns=PROBLEM_COLUMNS)
    table = pd.concat([problems, added], ignore_index=True) if len(problems) else added
    return table.sort_values(["path", "problem"], ignore_index=True)


def _file_versions(folder: Path, names) -> dict[str, tuple[int, int]]:
    """``name -> (inode, mtime)`` of the files ``names`` present in ``folder``: an atomic write
    replaces a file, so a changed pair means a rewritten file."""
    versions = {}
    for name in names:
        with suppress(FileNotFoundError):
            status = (folder / name).stat()
            versions[name] = (status.st_ino, status.st_mtime_ns)
    return versions
