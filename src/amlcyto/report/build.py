"""``build_report(sources, out)``: runs, reproduce-poster and probe folders as one HTML page."""

from __future__ import annotations

import datetime
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import jinja2

import amlcyto
from amlcyto.data.audit import FINDING_COLUMNS
from amlcyto.data.scan import PROBLEM_COLUMNS
from amlcyto.errors import AmlcytoError
from amlcyto.io import check_output_file, write_text_atomic
from amlcyto.report import DEFAULT_EXAMPLES, DEFAULT_MIL_CELLS
from amlcyto.report.cell_run import cell_run_section, read_given_table
from amlcyto.report.mil_run import mil_run_section
from amlcyto.report.poster_folder import poster_section
from amlcyto.report.probe_folder import is_probe_folder, probe_section
from amlcyto.runs import CELL_CLASSIFIER, CONFIG, PATIENT_MIL, RunInfo, read_run_info
from amlcyto.runs.files import COMPARISON, PROBE_TABLE

TEMPLATE = "report.html.j2"


@dataclass
class Report:
    """What :func:`build_report` wrote: the file, its size and how many cells it shows."""

    path: Path
    size_bytes: int
    sections: int
    cells: int


def build_report(
    sources: Sequence[str | Path],
    out: str | Path,
    force: bool = False,
    examples: int = DEFAULT_EXAMPLES,
    mil_cells: int = DEFAULT_MIL_CELLS,
    audit_file: str | Path | None = None,
    problems_file: str | Path | None = None,
    note: str | None = None,
    log: Callable[[str], None] = print,
) -> Report:
    """Write one self-contained HTML page about ``sources`` into ``out``.

    Parameters
    ----------
    sources : paths
        Run directories (``amlcyto train``: one without a test evaluation is scored first, into
        ``RUN/eval-test``; ``amlcyto mil train``), ``reproduce-poster`` folders and probe
        folders (``amlcyto probe``), each a section of the page.
    out : path
        The HTML file; refused where it exists unless ``force``.
    examples, mil_cells : int
        Cells shown per class and outcome of a cell run, and per patient of a MIL run (see
        :mod:`amlcyto.report`).
    audit_file, problems_file : path, optional
        The CSVs of ``amlcyto audit`` and of ``amlcyto scan`` (its problem list) for the data
        the runs came from. Without an audit file each run's split is checked for shared
        patients and byte-identical files (near-duplicates need ``amlcyto audit``).
    note : str, optional
        A line shown at the top of the page, above every number (the demo says there that its
        data are simulated).
    """
    if Path(out).suffix.lower() not in (".html", ".htm"):
        raise AmlcytoError(
            f"--out {out}: the report is one HTML page; name it .html (a browser prints it to PDF)."
        )
    out = check_output_file(out, force, example="report.html")
    if examples < 0 or mil_cells < 0:
        raise AmlcytoError(
            f"--examples and --mil-cells must be 0 or more, got {examples}, {mil_cells}."
        )
    if not sources:
        raise AmlcytoError("name at least one run or reproduce-poster folder to report on.")
    audit = read_given_table(audit_file, FINDING_COLUMNS, "amlcyto audit")
    problems = read_given_table(problems_file, PROBLEM_COLUMNS, "amlcyto scan")
    checked = [_checked(Path(source)) for source in sources]  # every one, before any work
    sections = []
    for source, info in zip(sources, checked, strict=True):
        log(f"report: reading {source}")
        if info is None and is_probe_folder(Path(source)):
            sections.append(probe_section(Path(source)))
        elif info is None:
            sections.append(poster_section(Path(source)))
        elif info.kind == PATIENT_MIL:
            sections.append(mil_run_section(info, mil_cells))
        else:
            sections.append(cell_run_section(info, examples, audit, problems, log))
    template = _environment().get_template(TEMPLATE)
    made = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    html = template.render(sections=sections, note=note, version=amlcyto.__version__, made=made)
    write_text_atomic(out, html)
    cells = sum(len(s["gallery"]["items"]) for s in sections if s["kind"] == "cell")
    cells += sum(len(p["cells"]) for s in sections if s["kind"] == "mil" for p in s["patients"])
    return Report(out, out.stat().st_size, len(sections), cells)


def _checked(source: Path) -> RunInfo | None:
    """The record of a run ``source``, None for a reproduce-poster or probe folder; anything
    else is a one-line error."""
    if (source / COMPARISON).is_file() or is_probe_folder(source):
        return None
    if not (source / CONFIG).is_file():
        raise AmlcytoError(
            f"{source}: neither a run (no {CONFIG}), a reproduce-poster folder (no "
            f"{COMPARISON}) nor a probe folder (no {PROBE_TABLE}); name a folder made by "
            "`amlcyto train`, `amlcyto mil train`, `amlcyto reproduce-poster` or `amlcyto probe`."
        )
    info = read_run_info(source)
    if info.kind not in (CELL_CLASSIFIER, PATIENT_MIL):
        raise AmlcytoError(
            f"{source}: a {info.kind} run, which this report cannot show; embed labelled cells "
            "with it, `amlcyto probe` the features and report the probe folder."
        )
    return info


def _environment() -> jinja2.Environment:
    environment = jinja2.Environment(
        loader=jinja2.PackageLoader("amlcyto.report", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    environment.filters["num"] = _number
    environment.filters["count"] = _count
    environment.filters["setting"] = lambda value: "–" if value is None else value
    return environment


def _number(value, digits: int = 3) -> str:
    """A score for a table cell: rounded, or an en dash where there is none."""
    if not isinstance(value, float):
        return "–" if value is None else str(value)
    return "–" if math.isnan(value) else f"{value:.{digits}f}"


def _count(value) -> str:
    """A count for a table cell: a whole number (a table read back may hold 36.0), or a dash."""
    return "–" if value is None or value != value else str(int(value))
