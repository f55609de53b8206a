"""The CPU speed levers of inference keep its answers: BatchNorm folded into convolutions, the
channels_last layout, decoding a batch ahead in a thread, and the precision rule."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from amlcyto.data.manifest import read_manifest
from amlcyto.errors import AmlcytoError
from amlcyto.evaluation.inference import decoded_ahead, predict_probabilities
from amlcyto.models import create_model, list_models
from amlcyto.models.fusion import fold_batchnorm
from amlcyto.models.predictor import CellPredictor
from amlcyto.runs import load_run
from amlcyto.training import performance
from amlcyto.training.performance import inference_precision


def _with_learned_batchnorm(model: nn.Module, seed: int = 0) -> nn.Module:
    """Give every BatchNorm statistics and an affine part far from the identity, as training
    would: folding fresh BatchNorms (mean 0, var 1) would test little."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                size = module.num_features
                module.running_mean.copy_(torch.rand(size, generator=generator) - 0.5)
                module.running_var.copy_(torch.rand(size, generator=generator) * 2 + 0.2)
                module.weight.copy_(torch.rand(size, generator=generator) * 2 - 1)
                module.bias.copy_(torch.rand(size, generator=generator) - 0.5)
    return model.eval()


@pytest.mark.parametrize("name", list_models("cells"))
def test_folded_model_gives_the_eager_outputs_within_1e_4(name):
    size = 64 if name != "resnet18" else 32
    model = _with_learned_batchnorm(create_model(name, num_classes=3, image_size=size))
    folded = fold_batchnorm(model)
    x = torch.rand(4, 3, size, size)
    with torch.inference_mode():
        eager = torch.softmax(model(x), dim=1)
        fast = torch.softmax(folded.to(memory_format=torch.channels_last)(x), dim=1)
    assert torch.allclose(eager, fast, atol=1e-4), (eager - fast).abs().max()


def test_folding_removes_the_batchnorms_after_convolutions_and_leaves_the_model_alone():
    model = _with_learned_batchnorm(create_model("cnn_small", num_classes=2, image_size=32))
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    folded = fold_batchnorm(model)
    count = sum(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    assert count == 0 and not folded.training
    assert model.training and sum(isinstance(m, nn.BatchNorm2d) for m in model.modules()) > 0
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_poster_batchnorm_after_relu_is_kept():
    """Conv, ReLU, BatchNorm: the normalisation cannot move into the convolution."""
    model = create_model("poster_pml_rara", num_classes=2, image_size=64)
    kept = sum(isinstance(m, nn.BatchNorm2d) for m in fold_batchnorm(model).modules())
    assert kept == sum(isinstance(m, nn.BatchNorm2d) for m in model.modules()) == 2


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


@pytest.mark.parametrize(
    ("trained", "native", "expected"),
    [
        ("32-true", True, "32"),  # a run trained in fp32 predicts in fp32
        ("bf16-mixed", True, "bf16"),  # as it was validated, where the CPU has bf16
        ("bf16-mixed", False, "32"),  # emulated bf16 would be slower: fp32
        (None, True, "32"),  # an older run without the record
    ],
)
def test_auto_precision_follows_the_run_where_the_cpu_has_the_hardware(
    monkeypatch, trained, native, expected
):
    monkeypatch.setattr(performance, "cpu_has_native_bf16", lambda: native)
    assert inference_precision("auto", trained, "cpu") == expected


def test_explicit_precisions_and_bad_ones():
    assert inference_precision("32", "bf16-mixed", "cpu") == "32"
    assert inference_precision("bf16", "32-true", "cpu") == "bf16"
    with pytest.raises(AmlcytoError, match="needs a GPU"):
        inference_precision("16", "16-mixed", "cpu")
    with pytest.raises(AmlcytoError, match="use auto, 32, bf16, 16"):
        inference_precision("fp8", None, "cpu")


def test_evaluate_records_its_precision_and_an_exported_model_refuses_bf16(
    trained_run: Path, tmp_path: Path
):
    from amlcyto.evaluation.evaluate import evaluate
    from amlcyto.evaluation.scorer import open_scorer

    result = evaluate(trained_run, out=tmp_path / "eval", precision="32")
    assert result.metrics["inference_precision"] == "32"
    onnx = tmp_path / "model.onnx"
    onnx.write_bytes(b"")
    with pytest.raises(AmlcytoError, match="drop --precision bf16"):
        open_scorer(onnx, precision="bf16")


def test_folding_keeps_names_indices_and_sequential_subclasses():
    from collections import OrderedDict

    class Custom(nn.Sequential):  # its own forward: left alone
        def forward(self, x):
            return super().forward(x) * 2

    named = nn.Sequential(
        OrderedDict(conv=nn.Conv2d(3, 4, 3, bias=False), bn=nn.BatchNorm2d(4), act=nn.ReLU())
    )
    model = _with_learned_batchnorm(
        nn.Sequential(named, Custom(nn.Conv2d(4, 4, 3), nn.BatchNorm2d(4)))
    )
    folded = fold_batchnorm(model)
    assert isinstance(folded[0].act, nn.ReLU) and isinstance(folded[0].bn, nn.Identity)
    assert isinstance(folded[1], Custom) and isinstance(folded[1][1], nn.BatchNorm2d)
    x = torch.rand(2, 3, 12, 12)
    with torch.inference_mode():
        assert torch.allclose(model(x), folded(x), atol=1e-4)


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


def test_training_names_are_understood_and_a_features_file_of_another_precision_refused():
    from amlcyto.mil.features import CellFeatures, Extractor, check_same_extractor

    assert inference_precision("bf16-mixed", None, "cpu") == "bf16"
    assert inference_precision("32-true", "bf16-mixed", "cpu") == "32"
    made = Extractor("r", "sha", "cnn_small", {}, 16, [0.5] * 3, [0.2] * 3, 8, ["a", "b"], "bf16")
    expected = Extractor(**{**made.__dict__, "precision": "32"})
    features = CellFeatures(np.zeros((1, 8)), np.zeros((1, 2)), None, made, "cells.h5")
    with pytest.raises(AmlcytoError, match="--precision 32"):
        check_same_extractor(expected, features, "this MIL run")
    check_same_extractor(made, features, "this MIL run")  # the same precision passes
