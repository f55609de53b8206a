"""Patient tables with a manual blood differential, as the target cohort's metadata holds them.

Columns read: ``patient_id``, ``bag_label``, ``instance_count`` (cell images of the patient)
and the 100-cell differential ``pb_myeloblast`` ... ``pb_other`` (one per category of
:data:`amlcyto.data.mappings.CATEGORIES`; ``pb_total`` is not read). Empty differential cells
read as 0, with one warning that counts them.
"""

from __future__ import annotations

import warnings
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from amlcyto.data.mappings import CATEGORIES
from amlcyto.errors import AmlcytoError

PATIENT_COLUMNS = ("patient_id", "bag_label", "instance_count")
DIFFERENTIAL_COLUMNS = tuple(f"pb_{c}" for c in CATEGORIES)


def read_patient_tables(paths: Sequence[str | Path]) -> pd.DataFrame:
    """The patients of one or more tables, checked: ``patient_id``, ``bag_label``,
    ``instance_count`` (int), one float column per category (empty read as 0) and ``table``
    (the file). Warns once with the number of empty differential cells."""
    if not paths:
        raise AmlcytoError("no patient table; give one or more with --patients TABLE.csv.")
    frames = [_read_table(Path(p)) for p in paths]
    patients = pd.concat(frames, ignore_index=True)
    repeated = patients[patients["patient_id"].duplicated(keep=False)]
    if len(repeated):
        pid = repeated["patient_id"].iloc[0]
        where = " and ".join(sorted(set(repeated.loc[repeated["patient_id"] == pid, "table"])))
        raise AmlcytoError(f"{where}: patient {pid!r} is listed twice; keep one row per patient.")
    empty = sum((Counter(f.attrs["empty"]) for f in frames), Counter())
    if empty:
        where = ", ".join(f"{c}: {n}" for c, n in sorted(empty.items()))
        warnings.warn(
            f"{sum(empty.values())} empty differential cells read as 0 ({where}).", stacklevel=2
        )
    return patients


def _read_table(path: Path) -> pd.DataFrame:
    try:
        raw = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (OSError, ValueError, UnicodeDecodeError) as error:
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise AmlcytoError(
            f"{path}: cannot read the patient table ({reason}); give a CSV file."
        ) from None
    missing = [c for c in (*PATIENT_COLUMNS, *DIFFERENTIAL_COLUMNS) if c not in raw]
    if missing:
        raise AmlcytoError(
            f"{path}: no column {', '.join(missing)}; a patient table needs patient_id, "
            "bag_label, instance_count and the differential pb_myeloblast ... pb_other."
        )
    table = pd.DataFrame({c: raw[c].str.strip() for c in PATIENT_COLUMNS[:2]})
    for column in PATIENT_COLUMNS[:2]:
        _check_names(table, column, path)
    instances = _numbers(raw, "instance_count", path, table)
    wrong = ~(instances >= 1) | (instances % 1 != 0)  # NaN (empty) is wrong too
    if wrong.any():
        raise AmlcytoError(
            f"{path}: instance_count of patient {table['patient_id'][wrong].iloc[0]!r} is not "
            "a whole number of cells >= 1; fix the table."
        )
    table["instance_count"] = instances.astype(int)
    for category, column in zip(CATEGORIES, DIFFERENTIAL_COLUMNS, strict=True):
        table[category] = _numbers(raw, column, path, table).fillna(0.0)
    zero = table[table[list(CATEGORIES)].sum(axis=1) <= 0]
    if len(zero):
        raise AmlcytoError(
            f"{path}: the differential of patient {zero['patient_id'].iloc[0]!r} sums to 0; "
            "fill in its pb_* counts or leave the patient out."
        )
    table["table"] = str(path)
    empty = {c: int((raw[c].str.strip() == "").sum()) for c in DIFFERENTIAL_COLUMNS}
    table.attrs["empty"] = {c: n for c, n in empty.items() if n}
    return table


def _check_names(table: pd.DataFrame, column: str, path: Path) -> None:
    """Refuse an empty name, or one that cannot be a folder name (``/``, leading ``.``)."""
    bad = table[column].map(lambda s: not s or s.startswith(".") or "/" in s or "\\" in s)
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise AmlcytoError(
            f"{path}: row {row + 1}: {column} {table[column].iloc[row]!r} cannot name a folder; "
            "give a name without '/' that does not start with '.'."
        )


def _numbers(raw: pd.DataFrame, column: str, path: Path, table: pd.DataFrame) -> pd.Series:
    """``column`` as floats (empty: NaN); refuses text and negative numbers."""
    text = raw[column].str.strip()
    values = pd.to_numeric(text.where(text != ""), errors="coerce")
    bad = (values.isna() & (text != "")) | np.isinf(values) | (values < 0)
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise AmlcytoError(
            f"{path}: {column} of patient {table['patient_id'].iloc[row]!r} is "
            f"{text.iloc[row]!r}; write a count >= 0 (an empty cell reads as 0)."
        )
    return values.astype(float)
