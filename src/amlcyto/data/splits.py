"""Train/val/test splits and cross-validation folds that keep each patient's images together.

Cells of one patient share staining, scanner and disease, so a model evaluated on images of
patients it was trained on looks far better than it is. Every split here is grouped by the
``patient`` column (in the ``class/image`` layout each image is its own group) and
stratified by ``label``. ``split_by_image`` exists only to reproduce the leaky protocol of
the original poster and warns when it leaks.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedGroupKFold, train_test_split

from amlcyto.data.manifest import SPLIT_NAMES, read_manifest, write_manifest
from amlcyto.data.split_settings import DEFAULT_FOLDS, DEFAULT_TEST, DEFAULT_VAL
from amlcyto.errors import AmlcytoError

# When a class has too few patients for every split, they go to these splits in this order.
_FILL_ORDER = ("train", "test", "val")
NO_FOLD = -1  # fold of rows left out of cross-validation (held-out val/test rows)


class SmallClassWarning(UserWarning):
    """A class has too few patients for every split: some splits get none of its rows."""


class PatientLeakWarning(UserWarning):
    """Images of one patient ended up in more than one split."""


def check_fractions(test: float, val: float) -> None:
    """Raise AmlcytoError unless ``0 <= test``, ``0 <= val`` and ``test + val < 1``."""
    for name, value in (("test", test), ("val", val)):
        if not 0 <= value < 1:
            raise AmlcytoError(
                f"--{name} {value}: a fraction of the images must be at least 0 and below 1 "
                f"(e.g. --{name} 0.2)."
            )
    if test + val >= 1:
        raise AmlcytoError(
            f"--test {test} plus --val {val} is {test + val:g}, leaving nothing to train on; "
            "make their sum smaller than 1."
        )


def split_fractions(
    by: str = "patient",
    test: float | None = None,
    val: float | None = None,
    folds: int | None = None,
) -> tuple[float, float]:
    """The ``test`` and ``val`` fractions :func:`make_split` uses, checked: where None, the
    defaults (``DEFAULT_TEST``, ``DEFAULT_VAL``; with ``folds``, 0: every image is folded).
    Refuses ``folds`` with ``by="image"``."""
    if by not in ("patient", "image"):
        raise AmlcytoError(f"--by {by}: split by patient or by image.")
    if folds is not None and by == "image":
        raise AmlcytoError("--folds works with --by patient only; drop one of the two.")
    default_test, default_val = (DEFAULT_TEST, DEFAULT_VAL) if folds is None else (0.0, 0.0)
    test = default_test if test is None else test
    val = default_val if val is None else val
    check_fractions(test, val)
    return test, val


def make_split(
    frame: pd.DataFrame,
    by: str = "patient",
    test: float | None = None,
    val: float | None = None,
    folds: int | None = None,
    seed: int = 0,
) -> pd.DataFrame:
    """The split ``amlcyto split`` writes: ``frame`` (``path``, ``label``, ``patient``), its
    old ``split`` and ``fold`` dropped, split ``by`` patient (:func:`split_by_patient`) or image
    (:func:`split_by_image`, the poster's leaky protocol), with ``test`` and ``val`` fractions
    (defaults: :func:`split_fractions`). ``folds`` adds a ``fold`` column (:func:`assign_folds`;
    by patient only): without ``test`` and ``val`` every image is folded and there is no
    ``split`` column; with them, those rows are held out first (fold -1) and train is folded."""
    test, val = split_fractions(by, test, val, folds)
    frame = frame.drop(columns=[c for c in ("split", "fold") if c in frame.columns])
    if by == "image":
        return split_by_image(frame, test=test, val=val, seed=seed)
    if folds is None:
        return split_by_patient(frame, test=test, val=val, seed=seed)
    if test == 0 and val == 0:
        return assign_folds(frame, folds=folds, seed=seed)
    split = split_by_patient(frame, test=test, val=val, seed=seed)
    return assign_folds(split, folds=folds, seed=seed, only_split="train")


def split_by_patient(
    frame: pd.DataFrame, test: float = DEFAULT_TEST, val: float = DEFAULT_VAL, seed: int = 0
) -> pd.DataFrame:
    """Assign whole patients to train/val/test, stratified by class.

    Returns a copy of ``frame`` (``path``, ``label``, ``patient``; same row order) with a
    ``split`` column. ``test`` and ``val`` are the requested fractions of each class's images;
    the same ``seed`` gives the same split whatever the row order.

    Notes
    -----
    Patients that share a byte-identical image (same ``sha256``) are kept together as one
    group (:func:`leak_groups`). Each patient is filed under its majority class (ties: the
    alphabetically first label).
    Within a class, patients are sorted, shuffled with ``numpy.random.default_rng(seed)``
    and given one by one to the split furthest below its image target (this greedily
    minimises the squared error of the image counts). A class with at least as many
    patients as non-empty splits then gets at least one patient in each (taken, smallest
    first, from the split holding most patients); a class with fewer fills train, then
    test, then val.
    """
    check_fractions(test, val)
    _check_columns(frame, ("path", "label", "patient"))
    fractions = {"train": 1.0 - test - val, "val": val, "test": test}
    wanted = [name for name in _FILL_ORDER if fractions[name] > 0]
    groups = frame.assign(patient=leak_groups(frame))
    patients = _patient_table(groups)
    rng = np.random.default_rng(seed)
    assignment: dict[str, str] = {}
    for _, members in patients.groupby("label", sort=True):
        order = rng.permutation(len(members))
        shuffled = members.iloc[order]
        sizes = dict(zip(shuffled["patient"], shuffled["images"], strict=True))
        assignment.update(_allocate(list(sizes), sizes, fractions, wanted))
        given = {assignment[p] for p in sizes}
        lacking = [name for name in wanted if name not in given]
        if lacking:
            label = members["label"].iloc[0]
            warnings.warn(
                f"class {label!r} has {len(sizes)} patient(s), too few for every split: no "
                f"{' or '.join(lacking)} rows (a class needs a patient in each split to be "
                "validated and tested).",
                SmallClassWarning,
                stacklevel=2,
            )
    out = frame.copy()
    out["split"] = groups["patient"].map(assignment)
    return out


def leak_groups(frame: pd.DataFrame) -> pd.Series:
    """The unit a split must keep whole, per row: the patient, merged with every patient that
    shares a byte-identical image (same ``sha256``) or a listed file (same ``path``) with it.

    Without the merge, a file copied under two patients (or, in the ``class/image`` layout,
    under two names), or one file listed twice, could land in train and test at once.
    """
    patients = frame["patient"].astype(str)
    parent = {p: p for p in patients.unique()}

    def root(p: str) -> str:
        while parent[p] != p:
            parent[p] = parent[parent[p]]
            p = parent[p]
        return p

    keys = [frame["path"].astype(str)]
    if "sha256" in frame.columns:
        keys.append(frame["sha256"].fillna("").astype(str))
    for key in keys:
        known = key != ""
        repeated = known & key.duplicated(keep=False)
        for _, sharing in patients[repeated].groupby(key[repeated]):
            first, *others = sharing.unique()
            for other in others:
                a, b = root(first), root(other)
                if a != b:
                    parent[max(a, b)] = min(a, b)
    return patients.map(root)


def assign_folds(
    frame: pd.DataFrame,
    folds: int = DEFAULT_FOLDS,
    seed: int = 0,
    only_split: str | None = None,
) -> pd.DataFrame:
    """A copy of ``frame`` (``path``, ``label``, ``patient``) with an integer ``fold`` column:
    patient-grouped, class-stratified K-fold. Patients that share a byte-identical image (same
    ``sha256``) stay in one fold.

    ``folds`` is at least 2, and every class needs that many patients. ``seed`` is the
    ``random_state`` of ``StratifiedGroupKFold``; the folds do not depend on the row order.
    ``only_split``: fold only the rows whose ``split`` equals it (e.g. ``"train"``); the other
    rows get fold ``NO_FOLD`` (-1).
    """
    _check_columns(frame, ("path", "label", "patient"))
    if folds < 2:
        raise AmlcytoError(f"--folds {folds}: cross-validation needs at least 2 folds.")
    selected = np.ones(len(frame), dtype=bool)
    if only_split is not None:
        _check_columns(frame, ("split",))
        selected = (frame["split"] == only_split).to_numpy()
    # Patients sharing a byte-identical image are one group here too (see leak_groups).
    subset = frame[["path", "label"]].assign(patient=leak_groups(frame))
    subset = subset.loc[selected].astype(str)
    per_class = subset.groupby("label")["patient"].nunique().sort_values()
    too_few = per_class[per_class < folds]
    if len(too_few):
        label, count = too_few.index[0], int(too_few.iloc[0])
        where = f" in the {only_split} split" if only_split else ""
        raise AmlcytoError(
            f"class {label!r} has only {count} patient(s){where}, fewer than --folds {folds}; "
            f"use --folds {max(count, 2)} or fewer (or drop that class)."
        )
    ordered = subset.sort_values(["patient", "path"], kind="stable")
    splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    out = frame.copy()
    out["fold"] = NO_FOLD
    for fold, (_, held_out) in enumerate(
        splitter.split(ordered, ordered["label"], groups=ordered["patient"])
    ):
        out.loc[ordered.index[held_out], "fold"] = fold
    return out


def split_by_image(
    frame: pd.DataFrame, test: float = DEFAULT_TEST, val: float = DEFAULT_VAL, seed: int = 0
) -> pd.DataFrame:
    """A copy of ``frame`` (same row order) with a ``split`` column drawn at random by image,
    stratified by class, ignoring patients (the poster's protocol).

    Images of one patient land in several splits, so test scores measure memorised patients
    rather than generalisation. Use it only to reproduce the poster; it emits a
    ``PatientLeakWarning`` naming how many patients leak.
    """
    check_fractions(test, val)
    _check_columns(frame, ("path", "label", "patient"))
    ordered = frame.sort_values("path", kind="stable")
    labels = ordered["label"].astype(str)
    small = labels.value_counts()
    if (small < 3).any():
        raise AmlcytoError(
            f"class {small.idxmin()!r} has only {int(small.min())} image(s); a stratified "
            "image split needs at least 3 per class."
        )
    split = pd.Series("train", index=ordered.index, dtype=object)
    rest = ordered.index
    try:
        if test > 0:
            rest, held = train_test_split(
                rest, test_size=test, stratify=labels.loc[rest], random_state=seed
            )
            split.loc[held] = "test"
        if val > 0:
            _, held = train_test_split(
                rest, test_size=val / (1 - test), stratify=labels.loc[rest], random_state=seed
            )
            split.loc[held] = "val"
    except ValueError as error:
        raise AmlcytoError(f"cannot split these images by class: {error}") from None
    out = frame.copy()
    out["split"] = split.loc[frame.index]
    leaked = leaked_patients(out)
    if leaked:
        warnings.warn(
            f"{len(leaked)} patient(s) have images in more than one split: test scores will "
            "be inflated by patient leakage (use a patient split for honest numbers).",
            PatientLeakWarning,
            stacklevel=2,
        )
    return out


def leaked_patients(frame: pd.DataFrame) -> list[str]:
    """Sorted ids of the patients whose images lie in more than one split."""
    _check_columns(frame, ("patient", "split"))
    counts = frame.groupby(frame["patient"].astype(str))["split"].nunique()
    return sorted(counts.index[counts > 1])


def split_summary(frame: pd.DataFrame, by: str = "split") -> pd.DataFrame:
    """Count patients and images per split (or fold, ``by="fold"``) and class.

    Columns ``[by, label, patients, images, fraction]``, where ``fraction`` is the share of the
    class's images in that split; train/val/test (or folds) in order, labels sorted.
    """
    _check_columns(frame, (by, "label", "patient"))
    grouped = frame.groupby([by, "label"], sort=True)
    summary = grouped.agg(patients=("patient", "nunique"), images=("patient", "size"))
    summary = summary.reset_index()
    class_images = summary.groupby("label")["images"].transform("sum")
    summary["fraction"] = (summary["images"] / class_images).round(3)
    if by == "split":
        rank = {name: i for i, name in enumerate(SPLIT_NAMES)}
        summary = summary.sort_values(
            ["split", "label"], key=lambda s: s.map(rank) if s.name == "split" else s
        )
    return summary.reset_index(drop=True)


def _check_columns(frame: pd.DataFrame, columns: tuple[str, ...]) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise AmlcytoError(
            f"the manifest lacks column(s) {', '.join(missing)}; "
            "create it with `amlcyto scan` (and `amlcyto split` for split/fold)."
        )
    for column in ("label", "patient"):
        if column in columns and frame[column].isna().any():
            first = frame.loc[frame[column].isna(), "path"].iloc[0]
            raise AmlcytoError(
                f"{first}: empty {column} in the manifest; fill it in or recreate the "
                "manifest with `amlcyto scan`."
            )


def _patient_table(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per patient: its majority label and image count, sorted by patient id."""
    pairs = frame[["patient", "label"]].astype(str)
    counts = pairs.value_counts().rename("n").reset_index()
    counts = counts.sort_values(["patient", "n", "label"], ascending=[True, False, True])
    majority = counts.drop_duplicates("patient").set_index("patient")["label"]
    images = pairs.groupby("patient").size()
    return pd.DataFrame(
        {"patient": majority.index, "label": majority.to_numpy(), "images": images[majority.index]}
    ).reset_index(drop=True)


def _allocate(
    patients: list[str], sizes: dict[str, int], fractions: dict[str, float], wanted: list[str]
) -> dict[str, str]:
    """Give each of one class's (already shuffled) patients a split name."""
    if len(patients) < len(wanted):
        biggest_first = sorted(patients, key=lambda p: -sizes[p])  # stable: keeps shuffle order
        return dict(zip(biggest_first, _FILL_ORDER, strict=False))
    total = sum(sizes.values())
    target = {name: fractions[name] * total for name in wanted}
    filled = dict.fromkeys(wanted, 0)
    members: dict[str, list[str]] = {name: [] for name in wanted}
    for patient in patients:
        name = max(wanted[::-1], key=lambda s: target[s] - filled[s])  # ties: val, test, train
        members[name].append(patient)
        filled[name] += sizes[patient]
    for name in wanted:
        if not members[name]:
            donor = max(wanted, key=lambda s: (len(members[s]), filled[s]))
            smallest = min(members[donor], key=lambda p: sizes[p])
            members[donor].remove(smallest)
            members[name].append(smallest)
            filled[donor] -= sizes[smallest]
            filled[name] += sizes[smallest]
    return {patient: name for name, group in members.items() for patient in group}


def fold_numbers(frame: pd.DataFrame) -> list[int]:
    """The cross-validation folds of a split file (``fold`` values >= 0), sorted."""
    if "fold" not in frame.columns:
        return []
    return sorted(int(f) for f in pd.unique(frame["fold"]) if int(f) != NO_FOLD)


def holds_out_test(frame: pd.DataFrame) -> bool:
    """Whether a folded split file holds test rows outside the folds (``--folds K --test F``)."""
    if "split" not in frame.columns:
        return False
    return bool(((frame["fold"] == NO_FOLD) & (frame["split"] == "test")).any())


def split_for_fold(
    frame: pd.DataFrame, fold: int, test_fold: int | None = None, source: str = "the split file"
) -> pd.DataFrame:
    """The rows of a folded split file with the ``split`` column that fold ``fold`` trains on.

    Fold ``fold`` is validation, ``test_fold`` (if given) is test, the other folds are train.
    Rows outside the folds (fold -1: the val/test rows held out before folding) keep their
    ``split``. The ``fold`` column stays, so the run's saved split shows both.
    """
    folds = fold_numbers(frame)
    if not folds:
        raise AmlcytoError(
            f"{source}: has no fold column, so --fold cannot choose rows; make folds with "
            f"`amlcyto split MANIFEST --folds {DEFAULT_FOLDS}`, or leave --fold out."
        )
    for value, flag in ((fold, "--fold"), (test_fold, "--test-fold")):
        if value is not None and value not in folds:
            raise AmlcytoError(
                f"{source}: {flag} {value} is not one of its folds ({', '.join(map(str, folds))})."
            )
    if test_fold is not None and test_fold == fold:
        raise AmlcytoError(f"--fold and --test-fold are both {fold}; pick two different folds.")
    if test_fold is not None and holds_out_test(frame):
        raise AmlcytoError(
            f"{source}: has test rows held out of the folds already; leave --test-fold out "
            "(or fold the manifest without --test)."
        )
    if len(folds) - (test_fold is not None) < 2:
        raise AmlcytoError(f"{source}: {len(folds)} folds leave none to train on; use more folds.")
    fold_of = frame["fold"].astype(int)
    outside = fold_of == NO_FOLD
    split = np.where(fold_of == fold, "val", "train").astype(object)
    if test_fold is not None:
        split[(fold_of == test_fold).to_numpy()] = "test"
    if "split" in frame.columns:
        split[outside.to_numpy()] = frame.loc[outside, "split"].to_numpy()
    elif outside.any():
        raise AmlcytoError(
            f"{source}: {int(outside.sum())} row(s) have fold -1 but no split; give every row a "
            "fold, or a split for the rows outside the folds."
        )
    return frame.assign(split=split)


def same_split(a: pd.DataFrame, b: pd.DataFrame) -> bool:
    """Whether two splits hold the same rows (path, label, split, fold) in the same order.

    Compared as text: a reloaded column's dtype may differ from a freshly made one's (``str``
    against ``object`` under pandas 3), which ``DataFrame.equals`` would call a difference.
    """

    def rows(frame: pd.DataFrame) -> list[tuple[str, ...]]:
        columns = [c for c in ("path", "label", "split", "fold") if c in frame.columns]
        return list(frame[columns].astype(str).itertuples(index=False, name=None))

    return len(a) == len(b) and rows(a) == rows(b)


def write_or_check_split(
    frame: pd.DataFrame, split_file: Path, resume: bool, settings: str
) -> Path:
    """Write ``frame`` to ``split_file``; resuming where it exists, refuse (one line naming the
    ``settings`` that make it) a file that holds another split instead."""
    if resume and split_file.is_file():
        if not same_split(read_manifest(split_file), frame):
            raise AmlcytoError(
                f"{split_file}: made from other data or settings ({settings}); resume with the "
                "same ones, or start over with --force."
            )
    else:
        write_manifest(frame, split_file)
    return split_file
