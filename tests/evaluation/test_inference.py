"""Tests of ``amlcyto.evaluation.inference``: class probabilities of image files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from amlcyto.data.manifest import read_manifest
from amlcyto.errors import AmlcytoError
from amlcyto.evaluation.inference import decoded_ahead, predict_probabilities
from amlcyto.models.predictor import CellPredictor
from amlcyto.runs import load_run


def test_a_broken_image_read_by_a_worker_is_a_one_line_error(trained_run: Path, tmp_path):
    from amlcyto.evaluation.inference import predict_probabilities
    from amlcyto.runs import load_run

    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(tmp_path / "ok.png")
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"")
    paths = [str(tmp_path / "ok.png"), str(bad)]
    with pytest.raises(AmlcytoError, match=r"bad\.png: ") as error:
        predict_probabilities(load_run(trained_run), paths, batch_size=1, workers=1)
    assert "\n" not in str(error.value) and "Traceback" not in str(error.value)


def test_predict_in_fp32_matches_the_plain_model_and_bf16_is_close(trained_run: Path):
    """The whole inference path (thread decoding, folding, channels_last) against the run's
    model called on the same pixels in the contiguous layout, fp32."""
    run = load_run(trained_run, precision="32")
    paths = read_manifest(trained_run / "split.csv")["path"].tolist()
    fast = predict_probabilities(run, paths, batch_size=5)
    plain = CellPredictor(
        _plain_copy(run.model), len(run.classes), run.info.input.mean, run.info.input.std
    ).eval()
    from amlcyto.data.cache import FileImages

    source = FileImages(paths, run.image_size)
    pixels = torch.from_numpy(np.stack([source.read(i) for i in range(len(paths))]))
    with torch.inference_mode():
        expected = plain(pixels).numpy()
    assert run.precision == "32"
    np.testing.assert_allclose(fast, expected, atol=1e-4)
    low = predict_probabilities(load_run(trained_run, precision="bf16"), paths, batch_size=5)
    np.testing.assert_allclose(low, expected, atol=0.05)


def _plain_copy(model: nn.Module) -> nn.Module:
    import copy

    return copy.deepcopy(model).to(memory_format=torch.contiguous_format).eval()


def test_decoded_ahead_keeps_order_and_raises_what_the_batches_raise():
    assert list(decoded_ahead(iter(range(7)))) == list(range(7))

    def broken():
        yield 1
        raise AmlcytoError("bad file")

    with pytest.raises(AmlcytoError, match="bad file"):
        list(decoded_ahead(broken()))


def test_a_caller_that_stops_early_leaves_the_rest_undecoded():
    produced = []

    def batches():
        for index in range(100):
            produced.append(index)
            yield index

    ahead = decoded_ahead(batches())
    assert next(ahead) == 0
    ahead.close()
    assert len(produced) <= 3


def test_non_finite_outputs_are_an_error_not_a_prediction(trained_run: Path, tiny_data: Path):
    from amlcyto.evaluation.inference import predict_readable

    run = load_run(trained_run)
    with torch.no_grad():  # weights that load (finite) but overflow: an exploded model
        run.model.head.weight.fill_(3e38)
        run.model.head.bias.fill_(3e38)
    paths = [str(p) for p in sorted((tiny_data / "NPM1").rglob("*.png"))[:4]]
    with pytest.raises(AmlcytoError, match="NaN or infinite outputs") as caught:
        predict_readable(run, paths)
    assert "\n" not in str(caught.value)
