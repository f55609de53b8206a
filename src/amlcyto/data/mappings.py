"""Mappings from a blood differential's categories to the cell classes of an image pool.

``amlcyto simulate-patients`` (:mod:`amlcyto.data.simulate`) builds SIMULATED patients from a
pool of single-cell images: each patient's bag is drawn by the proportions of that patient's
manual differential (the ``pb_*`` columns of the AML cohort's table). A mapping says which
pool images stand in for each differential category. A *source class* is a pool class folder,
optionally narrowed by a file-name prefix: ``ig/PMY`` is every ``ig/PMY_*`` file. Each
category maps to its own source class, and no two source classes share a file, so every cell
of a bag can be traced to one category.

The ``pbc`` mapping (for ``../shared/data/pbc``, the PBC dataset of normal peripheral blood
cells, Acevedo et al. 2020; images counted before byte-identical copies are set aside;
"cohort" is the category's sum over the 189 patients' 100-cell differentials):

======================  =======================  ======  ======  ==================================
category                source class             images  cohort  why
======================  =======================  ======  ======  ==================================
myeloblast              erythroblast             1318    7806    stand-in: PBC has no blasts; an
                                                                 erythroblast is its one round-
                                                                 nucleus immature nucleated cell,
                                                                 unlike every other category here
promyelocyte            ig/PMY                   508     247     the same cell type
myelocyte               ig/MY                    964     185     the same cell type
metamyelocyte           ig/MMY                   863     24      the same cell type
neutrophil_band         neutrophil/BNE           1399    69      the same cell type
neutrophil_segmented    neutrophil/SNE           1388    4841    the same cell type
eosinophil              eosinophil               2649    185     the same cell type
basophil                basophil                 1035    56      the same cell type
monocyte                monocyte                 1207    1556    the same cell type
lymph_typ               lymphocyte               1032    3901    the same cell type
lymph_atyp_react        ig/IG                    126     16      stand-in: PBC has no atypical
                                                                 lymphocytes; unspecified immature
                                                                 granulocytes are the one class
                                                                 left with enough cells
lymph_atyp_neopl        neutrophil/NEUTROPHIL    43      0       never drawn (0 in every real
                                                                 differential); the last unused
                                                                 class keeps the map one-to-one
other                   platelet                 1996    27      stand-in: "other" cells (smudge
                                                                 cells, plasma cells, ...) have no
                                                                 PBC class; platelets are a
                                                                 distinct class left over
======================  =======================  ======  ======  ==================================

Stand-ins make the simulated patients a test bed, not patients: a method that finds the
leukemic bags finds the erythroblasts standing in for blasts. The myeloblast category limits
how large the simulated cohort can be (about 0.025 of the real cell counts with 30% of each
class kept for the cell encoder).

Other mappings are added to :data:`MAPPINGS`, or read from a YAML file of the same shape, one
``category: source class`` line per category.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from amlcyto.errors import AmlcytoError
from amlcyto.io import read_yaml

# The categories of the AML cohort's manual differential, in its column order (``pb_`` +
# category; ``pb_total`` is their sum, not a category).
CATEGORIES = (
    "myeloblast",
    "promyelocyte",
    "myelocyte",
    "metamyelocyte",
    "neutrophil_band",
    "neutrophil_segmented",
    "eosinophil",
    "basophil",
    "monocyte",
    "lymph_typ",
    "lymph_atyp_react",
    "lymph_atyp_neopl",
    "other",
)

MAPPINGS: dict[str, dict[str, str]] = {
    "pbc": {
        "myeloblast": "erythroblast",
        "promyelocyte": "ig/PMY",
        "myelocyte": "ig/MY",
        "metamyelocyte": "ig/MMY",
        "neutrophil_band": "neutrophil/BNE",
        "neutrophil_segmented": "neutrophil/SNE",
        "eosinophil": "eosinophil",
        "basophil": "basophil",
        "monocyte": "monocyte",
        "lymph_typ": "lymphocyte",
        "lymph_atyp_react": "ig/IG",
        "lymph_atyp_neopl": "neutrophil/NEUTROPHIL",
        "other": "platelet",
    },
}


@dataclass(frozen=True, order=True)
class SourceClass:
    """Pool images standing in for one category: the class folder ``folder``, and of it only
    the files named ``<prefix>_...`` when ``prefix`` is set."""

    folder: str
    prefix: str = ""

    @classmethod
    def parse(cls, text: str) -> SourceClass:
        """``"ig/PMY"`` -> ``SourceClass("ig", "PMY")``; ``"basophil"`` -> no prefix."""
        folder, _, prefix = str(text).strip().partition("/")
        return cls(folder, prefix)

    def __str__(self) -> str:
        return f"{self.folder}/{self.prefix}" if self.prefix else self.folder

    def holds(self, folder: str, file_name: str) -> bool:
        """True if the image ``file_name`` in the class folder ``folder`` belongs here."""
        return folder == self.folder and (
            not self.prefix or file_name.startswith(f"{self.prefix}_")
        )

    def overlaps(self, other: SourceClass) -> bool:
        """True if a file could belong to both (same folder, and a prefix missing or equal)."""
        same_prefix = not self.prefix or not other.prefix or self.prefix == other.prefix
        return self.folder == other.folder and same_prefix


def load_mapping(mapping: str | Path) -> dict[str, SourceClass]:
    """The mapping named ``mapping`` (a key of :data:`MAPPINGS`) or read from a YAML file.

    Returns
    -------
    dict
        Category (each of :data:`CATEGORIES`, in that order) -> its :class:`SourceClass`.

    Raises
    ------
    AmlcytoError
        An unknown name, a file that is not a ``category: source class`` mapping, a category
        missing or unknown, a malformed source class, or two categories sharing pool images.
    """
    name = str(mapping)
    if name in MAPPINGS:
        return check_mapping(MAPPINGS[name], f"mapping {name!r}")
    path = Path(name)
    if path.suffix.lower() not in (".yaml", ".yml") or not path.is_file():
        known = ", ".join(sorted(MAPPINGS))
        raise AmlcytoError(
            f"unknown mapping {name!r}; use one of: {known}, or a YAML file "
            "(category: class_folder[/PREFIX] per line)."
        )
    raw = read_yaml(path, "mapping")
    if not isinstance(raw, dict):
        raise AmlcytoError(
            f"{path}: not a mapping of category: class_folder[/PREFIX]; write one line per "
            f"category ({', '.join(CATEGORIES)})."
        )
    return check_mapping(raw, str(path))


def check_mapping(raw: dict, where: str) -> dict[str, SourceClass]:
    """``raw`` (category -> source class text) checked and parsed; ``where`` names it."""
    unknown = [str(c) for c in raw if c not in CATEGORIES]
    missing = [c for c in CATEGORIES if c not in raw]
    if unknown or missing:
        problem = f"unknown categories {unknown}" if unknown else f"no class for {missing}"
        raise AmlcytoError(
            f"{where}: {problem}; map exactly these categories: {', '.join(CATEGORIES)}."
        )
    parsed = {}
    for category in CATEGORIES:
        source = SourceClass.parse(raw[category]) if isinstance(raw[category], str) else None
        if source is None or not source.folder or "/" in source.prefix or ".." in str(source):
            raise AmlcytoError(
                f"{where}: {category}: {raw[category]!r} is not a source class; write "
                "class_folder or class_folder/PREFIX (files named PREFIX_*)."
            )
        parsed[category] = source
    _check_distinct(parsed, where)
    return parsed


def _check_distinct(mapping: dict[str, SourceClass], where: str) -> None:
    """Refuse two categories whose source classes could hold the same file."""
    items = list(mapping.items())
    for i, (first, a) in enumerate(items):
        for second, b in items[i + 1 :]:
            if a.overlaps(b):
                raise AmlcytoError(
                    f"{where}: {first} ({a}) and {second} ({b}) share pool images; map each "
                    "category to its own class folder or file-name prefix."
                )
