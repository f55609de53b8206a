"""Class names: the five canonical AML classes and the spellings users give them.

Class folders keep their own names (amlcyto also serves other leukemias and cell datasets);
only folders that spell one of the five canonical classes differently are renamed.
"""

from __future__ import annotations

import re

CANONICAL_CLASSES = ("control", "PML_RARA", "NPM1", "CBFB_MYH11", "RUNX1_RUNX1T1")

# Folded spelling (lower case, letters and digits only) -> canonical name.
_ALIASES = {
    "control": "control",
    "controls": "control",
    "normal": "control",
    "healthy": "control",
    "ctrl": "control",
    "pmlrara": "PML_RARA",
    "apl": "PML_RARA",
    "t1517": "PML_RARA",
    "npm1": "NPM1",
    "npm1mut": "NPM1",
    "npm1mutated": "NPM1",
    "cbfbmyh11": "CBFB_MYH11",
    "inv16": "CBFB_MYH11",
    "runx1runx1t1": "RUNX1_RUNX1T1",
    "amleto": "RUNX1_RUNX1T1",
    "t821": "RUNX1_RUNX1T1",
}


def _fold(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


def canonical_label(folder_name: str) -> str:
    """Return the canonical class for a known spelling, else the folder name unchanged.

    >>> canonical_label("PML::RARA"), canonical_label("normal"), canonical_label("basophil")
    ('PML_RARA', 'control', 'basophil')
    """
    return _ALIASES.get(_fold(folder_name), folder_name)
