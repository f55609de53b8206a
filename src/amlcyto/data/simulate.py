"""SIMULATED patients drawn from real single-cell images, for testing patient-level methods.

A tool for testing patient-level (multiple-instance) methods, not patients: each simulated
patient is a bag of real cell images from a pool of labelled single cells (like PBC), drawn
by the proportions of a real patient's manual blood differential, under that patient's class
(``bag_label``). A method that tells the simulated classes apart has learnt which cell
categories each class has more of, which is what a patient-level method must at least do.

How :func:`simulate_patients` draws:

1. The patient tables are read and checked; empty differential cells read as 0.
2. The pool's images are found (:func:`amlcyto.data.discovery.discover`), hashed, and each
   byte-identical copy set aside (the first path in sorted order is kept), so no image can
   sit in two places. Each image belongs to the source class of one category (see
   :mod:`amlcyto.data.mappings`) or to none.
3. Per source class, the seeded generator shuffles the images and sets the first
   ``ceil(encoder_share * n)`` aside for the cell encoder; the rest, in that shuffled order,
   is the queue the bags draw from. Images of no source class (none with the ``pbc``
   mapping, which uses every PBC image) are never in a bag: the same share of each of their
   class folders goes to the encoder too, so it keeps the pool's class proportions, and the
   rest is not used.
4. Each patient's bag holds ``max(1, round(instance_count * scale))`` cells (halves rounded
   up), shared out over the categories by the differential's proportions with the largest
   remainder method (ties to the earlier category), so the counts sum exactly to the bag
   size. Patients take their cells from the queues in table order: no image is in two bags.
"""

from __future__ import annotations

import hashlib
import heapq
import math
import os
import shutil
import warnings
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from amlcyto.data.discovery import SKIPPED, check_data_dir, discover
from amlcyto.data.mappings import CATEGORIES, SourceClass, load_mapping
from amlcyto.data.patient_tables import read_patient_tables
from amlcyto.errors import AmlcytoError, command_line
from amlcyto.io import building_folder, check_output_dir, write_csv_atomic, write_json_atomic

NOTE = (
    "SIMULATED patients for testing patient-level (multiple-instance) methods, not patients: "
    "bags of real single-cell images drawn by real patients' blood differentials."
)
CELL_COLUMNS = ["patient", "label", "path", "source", "category"]
CELLS, SETTINGS = "cells.csv", "simulation.json"  # the files of a simulated-patients folder


@dataclass
class Pool:
    """A pool's images, deduplicated, by stratum (a category's source class, or the class
    folder of the images no category uses); paths relative to ``root``, sorted."""

    root: Path
    strata: dict[SourceClass, list[str]]
    categories: dict[SourceClass, str]  # source class -> its category
    duplicates: int  # byte-identical copies set aside


@dataclass(frozen=True)
class ScaleLimit:
    """The largest scale a pool allows: every scale below ``bound`` works; ``scale`` is a short
    number just below it. ``category`` runs out first, at ``bound``: it has ``images`` images
    and would need ``needed``."""

    scale: float
    bound: float
    category: str
    images: int
    needed: int


@dataclass
class SimulationResult:
    """What :func:`simulate_patients` wrote to ``out``."""

    out: Path
    cells: pd.DataFrame  # one row per drawn cell: CELL_COLUMNS
    scale: float
    limit: ScaleLimit
    bag_sizes: pd.Series  # patient id -> cells in its bag
    encoder_images: int
    duplicates: int
    settings: dict = field(default_factory=dict)  # simulation.json


def simulate_patients(
    pool: str | Path,
    tables: Sequence[str | Path],
    out: str | Path,
    mapping: str | Path = "pbc",
    scale: float | None = None,
    encoder_share: float = 0.0,
    seed: int = 0,
    force: bool = False,
    log: Callable[[str], None] = print,
) -> SimulationResult:
    """Write SIMULATED patients (bags of pool images drawn by real differentials) to ``out``.

    Parameters
    ----------
    pool
        Folder of single-cell images, ``class/image`` (like PBC).
    tables
        One or more patient tables (CSV with ``patient_id``, ``bag_label``,
        ``instance_count`` and the ``pb_*`` differential), concatenated.
    out
        Folder to create: ``patients/<bag_label>/<patient_id>/<image>``, ``encoder/<class
        folder>/<image>`` (when ``encoder_share`` > 0), ``cells.csv`` and ``simulation.json``.
        Written into a hidden folder beside it, then renamed into place.
    mapping
        A name in :data:`amlcyto.data.mappings.MAPPINGS` or a YAML file of the same shape.
    scale
        Bag size = ``round(instance_count * scale)``, at least 1; None: the largest the pool
        allows (:func:`largest_scale`).
    encoder_share
        Share of each stratum set aside for the cell encoder, never in a bag; 0 <= share < 1.
    seed
        The same seed and inputs give the same dataset, file for file.
    force
        Replace an earlier simulated dataset in ``out`` whole.
    log
        Called with each progress line.

    Raises
    ------
    AmlcytoError
        Bad tables, mapping, pool, share or scale, or an ``out`` that cannot be written;
        all checked before anything is written.
    """
    if not 0 <= encoder_share < 1:
        raise AmlcytoError(f"encoder share {encoder_share}: use 0 <= share < 1 (e.g. 0.3).")
    if isinstance(seed, bool) or not 0 <= seed < 2**32:
        raise AmlcytoError(f"--seed must be from 0 to {2**32 - 1}, got {seed}.")
    tables = [tables] if isinstance(tables, str | Path) else list(tables)
    sources = load_mapping(mapping)
    patients = read_patient_tables(tables)
    out = _check_out(Path(out), force, pool, tables)
    found = read_pool(pool, sources, log)
    queues, encoder = _set_aside(found, encoder_share, np.random.default_rng(seed))
    available = {c: len(queues.get(s, [])) for c, s in sources.items()}
    limit = largest_scale(patients, available)
    log(f"largest scale this pool allows: {_describe(limit, sources)}")
    scale = limit.scale if scale is None else _check_scale(scale, limit, sources)
    sizes = bag_sizes(patients["instance_count"], scale)
    counts = draw_counts(patients[list(CATEGORIES)].to_numpy(float), sizes)
    have = np.array([available[c] for c in CATEGORIES])
    if (counts.sum(axis=0) > have).any():  # never a short bag, whatever the rounding
        raise _too_small(counts.sum(axis=0), have, f"scale {scale}")
    by_category = {c: queues.get(s, []) for c, s in sources.items()}
    cells = _draw_cells(patients, counts, by_category, found.root)
    log(f"drawing {len(cells)} cells for {len(patients)} simulated patients at scale {scale}")
    settings = {
        "note": NOTE,
        "pool": str(found.root),
        "tables": [str(Path(t).resolve()) for t in tables],
        "mapping": {"name": str(mapping), "categories": {c: str(s) for c, s in sources.items()}},
        "scale": scale,
        "largest_scale": limit.scale,
        "limited_by": {"category": limit.category, "images": limit.images},
        "encoder_share": encoder_share,
        "seed": seed,
        **_summary(patients, counts, available, len(encoder), found.duplicates),
    }
    _write_dataset(out, found.root, cells, encoder, settings)
    log(f"wrote {len(patients)} SIMULATED patients and {len(encoder)} encoder images to {out}")
    bags = pd.Series(sizes, index=patients["patient_id"], name="cells")
    return SimulationResult(
        out, cells, scale, limit, bags, len(encoder), found.duplicates, settings
    )


# ----------------------------------------------------------------------------------------------
# The pool


def read_pool(
    pool: str | Path, sources: dict[str, SourceClass], log: Callable[[str], None] = print
) -> Pool:
    """The images of ``pool`` by stratum, byte-identical copies set aside; refuses a source
    class with no image. Files that are not images are counted in one warning."""
    found = discover(pool)
    root = check_data_dir(pool)
    skipped = Counter(p.problem for p in found.problems if p.action == SKIPPED)
    if skipped:
        what = ", ".join(f"{k}: {n}" for k, n in sorted(skipped.items()))
        warnings.warn(
            f"{root}: {sum(skipped.values())} entries skipped ({what}); "
            f"{command_line('amlcyto scan {}', root)} lists them.",
            stacklevel=2,
        )
    paths = sorted(str(Path(r["path"]).relative_to(root)) for r in found.records)
    _check_sources(paths, sources, root)
    kept, duplicates = _deduplicate(root, paths)
    log(
        f"pool: {len(paths)} images; {duplicates} byte-identical copies set aside "
        "(each counted once)"
    )
    by_source = {s: c for c, s in sources.items()}
    strata: dict[SourceClass, list[str]] = defaultdict(list)
    for path in kept:
        strata[_stratum(path, sources.values())].append(path)
    return Pool(root, dict(sorted(strata.items())), by_source, duplicates)


def _stratum(path: str, sources) -> SourceClass:
    """The source class holding ``path``, or its class folder when none does."""
    parts = Path(path).parts
    for source in sources:
        if source.holds(parts[0], parts[-1]):
            return source
    return SourceClass(parts[0], "*")


def _check_sources(paths: list[str], sources: dict[str, SourceClass], root: Path) -> None:
    held = Counter()
    for path in paths:
        parts = Path(path).parts
        held.update(s for s in sources.values() if s.holds(parts[0], parts[-1]))
    folders = sorted({Path(p).parts[0] for p in paths})
    for category, source in sources.items():
        if held[source]:
            continue
        if source.folder not in folders:
            problem = f"no class folder {source.folder!r} (it has {', '.join(folders)})"
        else:
            problem = f"no {source.folder}/{source.prefix}_* images"
        raise AmlcytoError(
            f"{root}: {problem}, which the mapping gives {category}; choose a mapping that "
            "names this pool's classes or another --pool."
        )


def _deduplicate(root: Path, paths: list[str]) -> tuple[list[str], int]:
    """``paths`` without the byte-identical copies of an earlier path (by SHA-256)."""
    seen, kept = set(), []
    for path in paths:
        try:
            digest = hashlib.sha256((root / path).read_bytes()).hexdigest()
        except OSError as error:
            raise AmlcytoError(
                f"{root / path}: cannot read ({error.strerror}); fix or remove the file."
            ) from None
        if digest not in seen:
            seen.add(digest)
            kept.append(path)
    return kept, len(paths) - len(kept)


def _set_aside(
    pool: Pool, share: float, rng: np.random.Generator
) -> tuple[dict[SourceClass, list[str]], list[str]]:
    """Per stratum, shuffled: the queue for the bags (mapped strata only) and, over all
    strata, the ``ceil(share * n)`` images for the encoder."""
    queues, encoder = {}, []
    for stratum, paths in pool.strata.items():
        order = [paths[i] for i in rng.permutation(len(paths))]
        aside = math.ceil(share * len(paths) - 1e-9)
        encoder += order[:aside]
        if stratum in pool.categories:
            queues[stratum] = order[aside:]
    return queues, encoder


# ----------------------------------------------------------------------------------------------
# Bag sizes and the largest scale


def bag_sizes(instance_counts, scale: float) -> np.ndarray:
    """``max(1, round(instance_count * scale))`` per patient, halves rounded up."""
    counts = np.asarray(instance_counts, dtype=float)
    return np.maximum(1, np.floor(counts * scale + 0.5)).astype(np.int64)


def draw_counts(differential: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """Cells per category: ``(P, C)`` differential counts and ``(P,)`` bag sizes -> ``(P, C)``
    integers summing to ``sizes``, by the largest remainder method (ties to the earlier
    category)."""
    differential = np.asarray(differential, dtype=float)
    sizes = np.asarray(sizes, dtype=np.int64)
    quota = differential * sizes[:, None] / differential.sum(axis=1, keepdims=True)
    counts = np.floor(quota).astype(np.int64)
    short = sizes - counts.sum(axis=1)
    order = np.argsort(-(quota - counts), axis=1, kind="stable")
    rank = np.argsort(order, axis=1, kind="stable")
    return counts + (rank < short[:, None])


def largest_scale(patients: pd.DataFrame, available: dict[str, int]) -> ScaleLimit:
    """The largest scale for which every category has enough images for every patient.

    Bag sizes change only at the scales ``(n + 0.5) / instance_count``, so the scales are
    walked through in order from 0, each patient's bag growing by one cell at a time, until a
    category needs more images than it has. Every scale below that one (``bound``) works; as
    the largest-remainder counts can shrink when a bag grows (the Alabama paradox), a larger
    scale is refused even where it would fit.
    """
    instances = patients["instance_count"].to_numpy(float)
    differential = patients[list(CATEGORIES)].to_numpy(float)
    have = np.array([available[c] for c in CATEGORIES])

    def fits(scale: float) -> bool:
        return bool((draw_counts(differential, bag_sizes(instances, scale)).sum(0) <= have).all())

    sizes = bag_sizes(instances, 0.0)
    counts = draw_counts(differential, sizes)
    need = counts.sum(axis=0)
    if (need > have).any():
        raise _too_small(need, have, "one cell per patient")
    events = [((sizes[i] + 0.5) / instances[i], i) for i in range(len(sizes))]
    heapq.heapify(events)
    previous = 0.0
    while True:
        at = events[0][0]
        while events and events[0][0] == at:
            _, i = heapq.heappop(events)
            sizes[i] += 1
            row = draw_counts(differential[i : i + 1], sizes[i : i + 1])[0]
            need += row - counts[i]
            counts[i] = row
            heapq.heappush(events, ((sizes[i] + 0.5) / instances[i], i))
        if (need > have).any():
            k = int(np.flatnonzero(need > have)[0])
            scale = _short_number(previous, at, fits)
            return ScaleLimit(scale, float(at), CATEGORIES[k], int(have[k]), int(need[k]))
        previous = at


def _short_number(low: float, high: float, fits: Callable[[float], bool]) -> float:
    """The number with fewest significant digits in ``[low, high)`` that ``fits``."""
    for digits in range(1, 18):
        step = 10.0 ** (math.floor(math.log10(high)) - digits + 1)
        candidate = math.floor(high / step) * step
        candidate = float(f"{candidate:.{digits}g}")
        if low <= candidate < high and candidate > 0 and fits(candidate):
            return candidate
    return low


def _too_small(need: np.ndarray, have: np.ndarray, what: str) -> AmlcytoError:
    k = int(np.flatnonzero(need > have)[0])
    return AmlcytoError(
        f"the pool is too small for {what}: {CATEGORIES[k]} has {have[k]} images, "
        f"{need[k]} needed; use a larger pool or a smaller --encoder-share."
    )


def _describe(limit: ScaleLimit, sources: dict[str, SourceClass]) -> str:
    return (
        f"{limit.scale} (limited by {limit.category} -> {sources[limit.category]}: "
        f"{limit.images} images)"
    )


def _check_scale(scale: float, limit: ScaleLimit, sources: dict[str, SourceClass]) -> float:
    if not scale > 0 or not math.isfinite(scale):
        raise AmlcytoError(f"scale {scale}: use a number > 0 (bag size = instance_count * it).")
    if scale >= limit.bound:
        raise AmlcytoError(
            f"scale {scale} is too large for this pool: the largest it allows is "
            f"{_describe(limit, sources)}; lower --scale, lower --encoder-share or use a "
            "larger pool."
        )
    return float(scale)


# ----------------------------------------------------------------------------------------------
# Drawing and writing


def _draw_cells(
    patients: pd.DataFrame, counts: np.ndarray, queues: dict[str, list[str]], root: Path
) -> pd.DataFrame:
    """One row per cell (``CELL_COLUMNS``): each patient takes its counts from the front of
    each category's queue (pool paths relative to ``root``)."""
    taken = dict.fromkeys(CATEGORIES, 0)
    rows = []
    for i, (pid, label) in enumerate(
        zip(patients["patient_id"], patients["bag_label"], strict=True)
    ):
        for k, category in enumerate(CATEGORIES):
            n = int(counts[i, k])
            chosen = queues[category][taken[category] : taken[category] + n]
            taken[category] += n
            rows += [(pid, label, "", path, category) for path in chosen]
    cells = pd.DataFrame(rows, columns=CELL_COLUMNS)
    used: dict[tuple[str, str], set[str]] = defaultdict(set)
    cells["path"] = [
        f"patients/{label}/{pid}/{_unique_name(Path(src).parts, used[label, pid])}"
        for pid, label, src in zip(cells["patient"], cells["label"], cells["source"], strict=True)
    ]
    cells["source"] = [str(root / s) for s in cells["source"]]
    return cells


def _unique_name(parts: tuple[str, ...], used: set[str]) -> str:
    """``parts`` joined by ``_``, with ``_2``, ``_3``... before the suffix if taken."""
    name = "_".join(parts)
    stem, suffix = os.path.splitext(name)
    number = 1
    while name in used:
        number += 1
        name = f"{stem}_{number}{suffix}"
    used.add(name)
    return name


def _check_out(out: Path, force: bool, pool: str | Path, tables) -> Path:
    """Refuse an ``out`` that cannot be written, a non-empty one without ``force``, with it
    one that is not an earlier simulated dataset, and one holding the pool or a table."""
    check_output_dir(out, force)
    target = out.resolve()
    for path in (pool, *tables):
        inside = Path(path).resolve()
        if inside == target or target in inside.parents or inside in target.parents:
            raise AmlcytoError(
                f"{out}: the output folder and {path} overlap; choose an --out outside both."
            )
    if out.is_dir() and any(out.iterdir()) and not (out / SETTINGS).is_file():
        raise AmlcytoError(
            f"{out} holds files but no simulation.json; --force replaces only an earlier "
            "simulated dataset: choose a new folder or empty it."
        )
    return out


def _summary(patients, counts: np.ndarray, available: dict, encoder: int, duplicates: int):
    """The counts of ``simulation.json``."""
    sizes = counts.sum(axis=1)
    return {
        "patients": len(patients),
        "patients_per_label": patients["bag_label"].value_counts().to_dict(),
        "cells": int(sizes.sum()),
        "cells_per_category": dict(zip(CATEGORIES, map(int, counts.sum(axis=0)), strict=True)),
        "images_per_category": {c: available[c] for c in CATEGORIES},
        "bag_sizes": {
            "min": int(sizes.min()),
            "median": float(np.median(sizes)),
            "mean": round(float(sizes.mean()), 3),
            "max": int(sizes.max()),
        },
        "encoder_images": encoder,
        "duplicates_set_aside": duplicates,
    }


def _write_dataset(out: Path, root: Path, cells, encoder: list[str], settings: dict) -> None:
    """Write everything into a hidden folder beside ``out``, then swap it into place."""
    with building_folder(out) as work:
        copies = sum(
            _link(Path(s), work / p) for p, s in zip(cells["path"], cells["source"], strict=True)
        )
        used: dict[str, set[str]] = defaultdict(set)
        for source in encoder:
            folder, *rest = Path(source).parts
            name = _unique_name(tuple(rest), used[folder])
            copies += _link(root / source, work / "encoder" / folder / name)
        write_csv_atomic(work / CELLS, cells)
        write_json_atomic(work / SETTINGS, {**settings, "copied_files": copies})


def _link(source: Path, target: Path) -> bool:
    """A symbolic link to ``source`` (absolute) at ``target``, or a copy where links fail
    (then True)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.symlink(source, target)
        return False
    except OSError:
        shutil.copyfile(source, target)
        return True
