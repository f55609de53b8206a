"""``export_onnx(run, out)``: a run as one ONNX graph, uint8 cells in, probabilities out.

The graph is the run's :class:`~amlcyto.models.predictor.CellPredictor` traced whole (uint8
to [0, 1], the run's normalisation, the network, softmax or sigmoid), with a dynamic batch
axis. Before the file is kept, onnxruntime scores a batch of the run's own real cells (or of
cells the user names, where the run's are gone) and its probabilities must match PyTorch's
within :data:`TOLERANCE`.
"""

from __future__ import annotations

import io
import json
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

import amlcyto
from amlcyto.data.decoding import is_image_file
from amlcyto.data.manifest import read_manifest
from amlcyto.deploy.onnx_model import INPUT, META, OUTPUT, load_onnx_model
from amlcyto.deploy.run_cells import PUT_BACK, read_cells, run_cell_paths
from amlcyto.errors import AmlcytoError, first_line
from amlcyto.io import check_output_file, write_atomic
from amlcyto.runs import load_run

TOLERANCE = 1e-4  # the largest difference of a probability allowed between the two
CHECK_CELLS = 64
OPSET = 17


@dataclass
class ExportResult:
    path: Path
    cells_checked: int
    max_difference: float
    checked_on: str  # "the run's cells", or "the cells in PATH" (check_cells)


def export_onnx(
    run_dir: str | Path,
    out: str | Path,
    force: bool = False,
    check_cells: str | Path | None = None,
) -> ExportResult:
    """Export the run in ``run_dir`` to ``out`` (``.onnx``), checked against PyTorch on up to
    :data:`CHECK_CELLS` of the cells its ``split.csv`` lists (test rows first), or of
    ``check_cells`` (a folder of cell images, searched recursively, or a manifest CSV), before
    anything is written: a difference above :data:`TOLERANCE` is an error, and ``out`` (an
    earlier model there included) is left as it was."""
    import onnx

    out = Path(out)
    if out.suffix.lower() != ".onnx":
        raise AmlcytoError(f"--out {out}: an ONNX model's file name ends in .onnx.")
    check_output_file(out, force, example="model.onnx")
    run = load_run(run_dir, device="cpu")
    predictor = run.predictor.eval()
    if check_cells is None:
        paths = run_cell_paths(run, ("test", "val", "train"))
        fix = f"{PUT_BACK}, or name cells to check on with --check-cells (a folder or manifest)"
        cells = read_cells(run, paths, CHECK_CELLS, "test/val/train", fix=fix)[0]
    else:
        paths, source = _named_cells(check_cells), f"--check-cells {check_cells}"
        cells = read_cells(run, paths, CHECK_CELLS, "named", source, "name others")[0]
    example = torch.from_numpy(np.concatenate([cells, cells])[:2])  # batch 2: a dynamic axis
    buffer = io.BytesIO()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notes
            torch.onnx.export(
                predictor,
                (example,),
                buffer,
                input_names=[INPUT],
                output_names=[OUTPUT],
                dynamic_axes={INPUT: {0: "batch"}, OUTPUT: {0: "batch"}},
                opset_version=OPSET,
                dynamo=False,
            )
    except Exception as error:  # the exporter raises many kinds; say which model, in one line
        raise AmlcytoError(
            f"{run.path}: model {run.info.model.get('name')!r} cannot be exported to ONNX "
            f"({first_line(error)}); report this with the model's name."
        ) from None
    graph = onnx.load_from_string(buffer.getvalue())
    for key, value in _metadata(run).items():
        graph.metadata_props.append(onnx.StringStringEntryProto(key=key, value=value))
    data = graph.SerializeToString()
    difference = _check(out, data, predictor, cells)  # before anything is written
    write_atomic(out, lambda tmp: Path(tmp).write_bytes(data))
    checked_on = "the run's cells" if check_cells is None else f"the cells in {check_cells}"
    return ExportResult(out, len(cells), difference, checked_on)


def _named_cells(source: str | Path) -> list[str]:
    """The image paths of ``source``: a manifest CSV's rows, the image files under a folder
    (recursively, in name order) or one image file."""
    source = Path(source)
    if source.is_file() and source.suffix.lower() == ".csv":
        paths = read_manifest(source)["path"].tolist()
    elif source.is_dir():
        paths = sorted(str(p) for p in source.rglob("*") if is_image_file(p) and p.is_file())
    else:
        paths = [str(source)] if source.is_file() else []
    if not paths:
        what = "no images" if source.exists() else "no such file or folder"
        raise AmlcytoError(
            f"--check-cells {source}: {what}; name a folder of cell images or a manifest CSV."
        )
    return paths


def _check(out: Path, data: bytes, predictor, cells: np.ndarray) -> float:
    """The largest difference between onnxruntime's and PyTorch's probabilities."""
    if len(cells) < 3:  # check a batch size other than the traced one
        cells = np.concatenate([cells] * 3)
    model = load_onnx_model(out, data)
    with torch.no_grad():
        expected = predictor(torch.from_numpy(cells)).numpy()
    got = np.concatenate([model.probabilities(cells[i : i + 32]) for i in range(0, len(cells), 32)])
    difference = float(np.abs(got - expected).max())
    if not difference <= TOLERANCE:
        raise AmlcytoError(
            f"{out}: onnxruntime's probabilities differ from PyTorch's by up to {difference:.2g} "
            f"on {len(cells)} real cells (allowed {TOLERANCE:g}); nothing was written. Report "
            "this with the run's model name."
        )
    return difference


def _metadata(run) -> dict[str, str]:
    info = run.info
    return {
        META + "version": amlcyto.__version__,
        META + "classes": json.dumps(info.classes),
        META + "image_size": str(info.input.image_size),
        META + "task": str(info.task),
        META + "kind": info.kind,
        META + "model": json.dumps(info.model),
        META + "normalisation": json.dumps({"mean": info.input.mean, "std": info.input.std}),
        META + "run": str(Path(run.path).resolve()),
        META + "weights_sha256": str(info.weights_sha256),
        META + "input": "uint8 RGB cells (batch, size, size, 3)",
        META + "output": "class probabilities (batch, classes), in the order of classes",
    }
