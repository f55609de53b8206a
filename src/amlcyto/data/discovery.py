"""Find the images of a dataset folder and what is wrong with its layout (files are not opened).

Two layouts are understood, decided per class folder:

- ``DATA_DIR/class/patient/image`` (the AML cohort): the patient id is the patient folder name;
- ``DATA_DIR/class/image`` (no patient folders): the patient column holds
  ``class_folder/file_stem`` (:func:`amlcyto.data.manifest.image_group_id`), so every image is
  its own group.

Hidden files and folders (name starting with ``.``: ``.DS_Store``, macOS ``._x.jpg``
resource forks, ``.ipynb_checkpoints``) are not read, and each is reported as a skipped
:class:`Problem` (code ``hidden``; a hidden folder once, not the files inside it), like every
other file that is not an image, or not where an image belongs.
"""

from __future__ import annotations

import os
import re
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from amlcyto.data.decoding import is_image_file
from amlcyto.data.labels import canonical_label
from amlcyto.data.manifest import image_group_id
from amlcyto.errors import AmlcytoError

PATIENT_LAYOUT = "class/patient/image"
FLAT_LAYOUT = "class/image"

SKIPPED = "skipped"  # not in the manifest
KEPT = "kept"  # in the manifest, but worth a look
HIDDEN = "hidden"  # the problem code of a hidden file or folder


@dataclass(frozen=True)
class Problem:
    """One thing wrong with one file or folder."""

    path: str  # absolute path of the file or folder
    problem: str  # short kebab-case code, e.g. ``truncated`` or ``empty-patient``
    detail: str  # what is wrong and how to fix it
    action: str  # SKIPPED (not in the manifest) or KEPT (in the manifest, worth a look)


@dataclass
class Discovery:
    """The images found under a dataset folder."""

    layout: str  # PATIENT_LAYOUT if any image sits in a patient folder, else FLAT_LAYOUT
    # one {"path", "label", "patient"} per image file (absolute paths)
    records: list[dict[str, str]] = field(default_factory=list)
    # layout problems found without opening any file
    problems: list[Problem] = field(default_factory=list)
    # canonical label -> the class folder names that were read as that label
    class_folders: dict[str, list[str]] = field(default_factory=dict)


def discover(data_dir: str | Path) -> Discovery:
    """List the images of ``data_dir`` (one subfolder per class) with their class and patient,
    and the layout problems.

    Raises ``AmlcytoError`` if ``data_dir`` is missing, not a folder, has no class folders, or
    holds no images where images belong.
    """
    root = check_data_dir(data_dir)
    problems: list[Problem] = []
    class_dirs, top_files = _list_dir(root, problems)
    problems += [
        Problem(
            str(f),
            "stray-file",
            "file at the top of the dataset folder, outside any class folder; move it into "
            "its class folder or delete it",
            SKIPPED,
        )
        for f in top_files
    ]
    if not class_dirs:
        images = sum(is_image_file(f) for f in top_files)
        where = f" (it holds {images} images directly)" if images else ""
        raise AmlcytoError(
            f"{root}: no class folders{where}; amlcyto needs one subfolder per class: "
            "DATA_DIR/class/patient/image.tif or DATA_DIR/class/image.tif."
        )

    folders_by_label: dict[str, list[Path]] = defaultdict(list)
    for folder in class_dirs:
        folders_by_label[canonical_label(folder.name)].append(folder)
    problems += _spelling_problems(folders_by_label)

    records: list[dict[str, str]] = []
    layouts: dict[str, str] = {}
    patient_folders: dict[str, list[tuple[str, Path]]] = defaultdict(list)
    for label, folders in sorted(folders_by_label.items()):
        for folder in folders:
            found, layout = _read_class_folder(folder, label, problems, patient_folders)
            records += found
            if layout:
                layouts[folder.name] = layout
    problems += _shared_patient_problems(patient_folders)
    problems += _mixed_layout_problems(root, layouts)

    if not records:
        nested = sum(p.problem == "unexpected-nesting" for p in problems)
        hint = (
            f"; {nested} images lie deeper: point DATA_DIR at the folder that holds the class "
            "folders"
            if nested
            else "; expected DATA_DIR/class/patient/image.tif or DATA_DIR/class/image.tif"
        )
        raise AmlcytoError(f"{root}: no images found in its class folders{hint}.")

    layout = PATIENT_LAYOUT if PATIENT_LAYOUT in layouts.values() else FLAT_LAYOUT
    class_folders = {
        label: [f.name for f in folders] for label, folders in folders_by_label.items()
    }
    return Discovery(layout, records, problems, dict(sorted(class_folders.items())))


def check_data_dir(data_dir: str | Path) -> Path:
    """Return ``data_dir`` resolved, or raise an ``AmlcytoError`` if it is not a folder."""
    root = Path(data_dir)
    if not root.is_dir():
        what = "not a folder" if root.exists() else "no such folder"
        raise AmlcytoError(
            f"{root}: {what}; give the dataset folder that holds one subfolder per class."
        )
    return root.resolve()


def _list_dir(folder: Path, problems: list[Problem]) -> tuple[list[Path], list[Path]]:
    """Sorted non-hidden subfolders and files of ``folder`` (symbolic links followed); the
    hidden ones go to ``problems``."""
    dirs, files, hidden = [], [], []
    with os.scandir(folder) as entries:
        for entry in entries:
            if entry.name.startswith("."):
                hidden.append((Path(entry.path), entry.is_dir()))
                continue
            (dirs if entry.is_dir() else files).append(Path(entry.path))
    problems += [hidden_problem(path, is_dir) for path, is_dir in sorted(hidden)]
    return sorted(dirs), sorted(files)


def hidden_problem(path: Path, is_dir: bool) -> Problem:
    """The ``hidden`` problem of a file or folder whose name starts with a dot (not read)."""
    what = "folder" if is_dir else "file"
    inside = "; nothing in it was read" if is_dir else ""
    return Problem(
        str(path),
        HIDDEN,
        f"hidden {what} (its name starts with '.'){inside}; not in the manifest: rename it "
        "without the dot if it holds images of the dataset, else ignore it",
        SKIPPED,
    )


def _read_class_folder(
    folder: Path,
    label: str,
    problems: list[Problem],
    patient_folders: dict[str, list[tuple[str, Path]]],
) -> tuple[list[dict[str, str]], str | None]:
    """Records of one class folder and its layout (None when it holds no images)."""
    sub_dirs, files = _list_dir(folder, problems)
    images = _images_and_report_others(files, problems)
    records = [{"path": str(p), "label": label, "patient": image_group_id(str(p))} for p in images]
    if images and sub_dirs:
        problems.append(
            Problem(
                str(folder),
                "mixed-layout",
                f"class folder holds both {len(images)} images and {len(sub_dirs)} subfolders; "
                "subfolders were read as patients, loose images each as its own group: move "
                "the loose images into patient folders",
                KEPT,
            )
        )
    with_patients = False
    for patient_dir in sub_dirs:
        patient_images = _read_patient_folder(patient_dir, problems)
        if patient_images:
            with_patients = True
            patient_folders[patient_dir.name].append((label, patient_dir))
        records += [
            {"path": str(p), "label": label, "patient": patient_dir.name} for p in patient_images
        ]
    if not records:
        problems.append(
            Problem(
                str(folder),
                "empty-class",
                "class folder holds no images; this class is left out: add its images or "
                "remove the folder",
                SKIPPED,
            )
        )
        return records, None
    return records, PATIENT_LAYOUT if with_patients else FLAT_LAYOUT


def _read_patient_folder(folder: Path, problems: list[Problem]) -> list[Path]:
    sub_dirs, files = _list_dir(folder, problems)
    images = _images_and_report_others(files, problems)
    nested = [p for sub in sub_dirs for p in _images_below(sub, problems)]
    for path in nested:
        problems.append(
            Problem(
                str(path),
                "unexpected-nesting",
                f"image nested below the patient folder {folder.name}; not in the manifest: "
                "move it up into the patient folder",
                SKIPPED,
            )
        )
    if not images:
        more = f" ({len(nested)} only in deeper subfolders)" if nested else ""
        problems.append(
            Problem(
                str(folder),
                "empty-patient",
                f"patient folder holds no images{more}; this patient is left out: add the "
                "images or remove the folder",
                SKIPPED,
            )
        )
    return images


def _images_below(folder: Path, problems: list[Problem]) -> list[Path]:
    """Images anywhere below ``folder``; the hidden entries there go to ``problems``."""
    found = []
    for dirpath, dirnames, filenames in os.walk(folder):
        for names, is_dir in ((dirnames, True), (filenames, False)):
            hidden = sorted(n for n in names if n.startswith("."))
            problems += [hidden_problem(Path(dirpath, n), is_dir) for n in hidden]
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        found += [
            Path(dirpath, f)
            for f in sorted(filenames)
            if not f.startswith(".") and is_image_file(f)
        ]
    return found


def _images_and_report_others(files: list[Path], problems: list[Problem]) -> list[Path]:
    images = []
    for path in files:
        if is_image_file(path):
            images.append(path)
        else:
            problems.append(
                Problem(
                    str(path),
                    "non-image-file",
                    f"not an image file name ({path.suffix or 'no suffix'}; images end in "
                    ".tif .tiff .png .jpg .jpeg .bmp); not in the manifest: rename it if it "
                    "is an image, else move it out of the dataset",
                    SKIPPED,
                )
            )
    return images


def _spelling_problems(folders_by_label: dict[str, list[Path]]) -> list[Problem]:
    problems = []
    for label, folders in folders_by_label.items():
        if len(folders) > 1:
            names = ", ".join(f.name for f in folders)
            problems += [
                Problem(
                    str(folder),
                    "duplicate-class-spelling",
                    f"folders {names} all name class {label}; their images were merged into "
                    f"{label}: keep one folder per class",
                    KEPT,
                )
                for folder in folders
            ]
    by_fold: dict[str, list[str]] = defaultdict(list)
    for label in folders_by_label:
        by_fold[re.sub(r"[^a-z0-9]", "", label.lower())].append(label)
    for labels in by_fold.values():
        if len(labels) > 1:
            for label in labels:
                for folder in folders_by_label[label]:
                    problems.append(
                        Problem(
                            str(folder),
                            "similar-class-names",
                            f"classes {', '.join(sorted(labels))} differ only in case or "
                            "punctuation and are kept apart: merge the folders if they are "
                            "one class",
                            KEPT,
                        )
                    )
    return problems


def _shared_patient_problems(
    patient_folders: dict[str, list[tuple[str, Path]]],
) -> list[Problem]:
    problems = []
    for patient, places in sorted(patient_folders.items()):
        if len(places) < 2:
            continue
        labels = sorted({label for label, _ in places})
        for label, folder in places:
            others = ", ".join(str(f.parent.name) for _, f in places if f != folder)
            if len(labels) > 1:
                code = "patient-in-two-classes"
                detail = (
                    f"(classes {', '.join(labels)}); its images share one patient id: check "
                    "whether the patient was filed twice or two patients share a name"
                )
            else:
                code = "patient-in-two-folders"
                detail = f"(same class {label}); their images were merged into one patient"
            detail = f"patient {patient} also appears under {others} {detail}"
            problems.append(Problem(str(folder), code, detail, KEPT))
    return problems


def _mixed_layout_problems(root: Path, layouts: dict[str, str]) -> list[Problem]:
    if len(set(layouts.values())) < 2:
        return []
    flat = sorted(name for name, layout in layouts.items() if layout == FLAT_LAYOUT)
    with_patients = sorted(name for name, layout in layouts.items() if layout == PATIENT_LAYOUT)
    return [
        Problem(
            str(root),
            "mixed-layout",
            f"class folders {', '.join(with_patients)} hold patient folders but "
            f"{', '.join(flat)} hold images directly (each image its own group there): "
            "use one layout for all classes",
            KEPT,
        )
    ]


def check_some_readable(unreadable: dict[int, Problem], count: int, source: str) -> None:
    """A one-line error when every one of the ``count`` images of ``source`` is unreadable."""
    if count and len(unreadable) == count:
        first = next(iter(unreadable.values()))
        raise AmlcytoError(
            f"{source}: none of its {count} images can be read (the first: {first.path}: "
            f"{first.detail})."
        )
