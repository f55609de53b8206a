"""Tests of ``amlcyto.models.pretrained``: published weights into a backbone, every key checked.

No test touches the network: the hub is offline (``HF_HUB_OFFLINE``, an empty cache), and the
published files are randomly initialised models saved in the published layouts.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import huggingface_hub
import pytest
import torch
from safetensors.torch import save_file

from amlcyto.errors import AmlcytoError
from amlcyto.models import create_model
from amlcyto.models.pretrained import load_pretrained_weights, preprocessing

IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]
PORT = "https://huggingface.co/1aurent/vit_small_patch14_224.dinobloom"


@pytest.fixture(autouse=True)
def offline_hub(monkeypatch, tmp_path: Path) -> list[dict]:
    """The hub offline with an empty cache; every call of ``hf_hub_download`` is recorded and
    must be one that reads the cache only."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub-cache"))
    calls: list[dict] = []
    real = huggingface_hub.hf_hub_download

    def cache_only(repo_id, filename, **kwargs):
        calls.append({"repo_id": repo_id, "filename": filename, **kwargs})
        assert kwargs.get("local_files_only") is True, "a test reached for the network"
        return real(repo_id, filename, **kwargs)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", cache_only)
    return calls


@pytest.fixture(scope="module")
def target() -> torch.nn.Module:
    """A DinoBloom-S for the files to be loaded into (each test zeroes its backbone first)."""
    torch.manual_seed(1)
    return create_model("dinobloom-s", num_classes=2).eval()


@pytest.fixture(scope="module")
def source(target) -> dict[str, torch.Tensor]:
    """The backbone tensors of a randomly initialised DinoBloom-S (the target's first ones):
    what the published files hold."""
    return {k: v.clone() for k, v in target.backbone.state_dict().items()}


@pytest.fixture(scope="module")
def cells() -> torch.Tensor:
    return torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(3))


@pytest.fixture(scope="module")
def expected(source, target, cells) -> torch.Tensor:
    """The features of ``cells`` by the model the files were saved from."""
    target.backbone.load_state_dict(source)
    return _features(target, cells)


def _zeroed(model: torch.nn.Module) -> torch.nn.Module:
    with torch.no_grad():
        for tensor in model.backbone.state_dict().values():
            tensor.zero_()
    return model


def _features(model: torch.nn.Module, cells: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model.forward_features(cells)


def _port(state: dict[str, torch.Tensor], path: Path) -> Path:
    """``state`` saved as the hub's timm port is: ``model.safetensors`` in timm's names."""
    save_file({k: v.contiguous() for k, v in state.items()}, path)
    return path


def _original(state: dict[str, torch.Tensor], path: Path) -> Path:
    """``state`` saved as DinoBloom's Zenodo checkpoint is: the DINOv2 teacher."""
    teacher = {f"backbone.{k}": v for k, v in state.items()}
    teacher["backbone.mask_token"] = torch.zeros(1, 384)
    teacher["dino_head.mlp.0.weight"] = torch.randn(2048, 384)
    teacher["ibot_head.last_layer.weight_g"] = torch.ones(65536, 1)
    torch.save({"teacher": teacher}, path)
    return path


@pytest.mark.parametrize(("save", "layout"), [(_port, "timm"), (_original, "dinobloom-original")])
def test_both_dinobloom_layouts_give_the_features_of_the_model_saved(
    source, target, cells, expected, tmp_path, save, layout
):
    path = save(source, tmp_path / f"weights-{layout}")
    if layout == "timm":
        path = path.rename(path.with_suffix(".safetensors"))
    head = target.head.weight.clone()
    record = load_pretrained_weights(_zeroed(target), "dinobloom-s", path)
    features = _features(target, cells)
    assert features.shape == (2, 384)
    assert torch.equal(features, expected)
    assert torch.equal(target.head.weight, head)  # the head is the run's, not the file's
    assert record == {
        "kind": "pretrained",
        "model": "dinobloom-s",
        "source": "file",
        "weights_file": str(path),
        "weights_sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
        "layout": layout,
        "hub_repo": None,
    }


def _same_backbone(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> bool:
    mine = model.backbone.state_dict()
    return mine.keys() == state.keys() and all(torch.equal(mine[k], state[k]) for k in mine)


def test_a_port_under_a_wrapper_prefix_loads(source, target, tmp_path):
    state = {f"module.{k}": v for k, v in source.items()}
    path = _port(state, tmp_path / "ddp.safetensors")
    load_pretrained_weights(_zeroed(target), "dinobloom-s", path)
    assert _same_backbone(target, source)


def _refusal(model, name: str, path, *fragments: str) -> str:
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(AmlcytoError) as error:
        load_pretrained_weights(model, name, path)
    message = str(error.value)
    assert "\n" not in message, message
    for fragment in fragments:
        assert fragment in message, message
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # nothing copied
    return message


def test_a_layout_whose_keys_do_not_fit_lists_them_in_one_line(source, target, tmp_path):
    state = {f"encoder.{k}": v for k, v in source.items()}
    path = _port(state, tmp_path / "other.safetensors")
    n = len(source)
    _refusal(
        target,
        "dinobloom-s",
        path,
        f"{path}: not dinobloom-s's weights (timm layout): ",
        f"{n} of the model's {n} tensors missing (cls_token, pos_embed, patch_embed.proj.weight, "
        f"... {n - 3} more); {n} of the file's {n} unexpected (encoder.",
        "give 1aurent/vit_small_patch14_224.dinobloom's model.safetensors or DinoBloom-S.pth",
    )


def test_resnet_weights_for_dinobloom_are_refused(target, tmp_path):
    resnet = create_model("timm/resnet18", image_size=32).backbone.state_dict()
    path = tmp_path / "resnet18.pth"
    torch.save(resnet, path)
    _refusal(target, "dinobloom-s", path, "not dinobloom-s's weights", "conv1.weight")


def test_position_embeddings_for_another_size_are_one_line(source, target, tmp_path):
    state = dict(source)
    state["pos_embed"] = torch.zeros(1, 1 + 37 * 37, 384)  # timm's DINOv2 default: 518 px
    path = _port(state, tmp_path / "at-518.safetensors")
    _refusal(
        target,
        "dinobloom-s",
        path,
        "position embeddings for 518 px (37x37 patches); dinobloom-s is built at 224 px",
        "--image-size 518",
    )


def test_a_pickle_named_safetensors_is_refused(source, target, tmp_path):
    path = tmp_path / "model.safetensors"
    torch.save(source, path)
    _refusal(target, "dinobloom-s", path, "a pickle where safetensors was promised")


def test_offline_without_a_file_names_the_files_to_fetch_and_where(target, offline_hub):
    message = _refusal(
        target,
        "dinobloom-s",
        None,
        "dinobloom-s: offline and no --weights: download model.safetensors from " + PORT,
        "(or DinoBloom-S.pth from https://zenodo.org/records/10908163)",
        "give it with --weights FILE",
    )
    assert offline_hub[0]["repo_id"] == "1aurent/vit_small_patch14_224.dinobloom"
    timm_model = create_model("timm/resnet18", image_size=32)
    _refusal(
        timm_model,
        "timm/resnet18",
        None,
        "timm/resnet18: offline and no --weights: download model.safetensors from "
        "https://huggingface.co/timm/resnet18.a1_in1k",
    )
    assert message.startswith("dinobloom-s: ")


def test_weights_in_the_hubs_cache_load_offline(source, target, tmp_path, monkeypatch):
    cached = _port(source, tmp_path / "model.safetensors")
    seen = []

    def from_cache(repo_id, filename, local_files_only=False):
        seen.append((repo_id, filename, local_files_only))
        return str(cached)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", from_cache)
    record = load_pretrained_weights(_zeroed(target), "dinobloom-s", None)
    assert seen == [("1aurent/vit_small_patch14_224.dinobloom", "model.safetensors", True)]
    assert record["source"] == "hub" and record["layout"] == "timm"
    assert record["hub_repo"] == "1aurent/vit_small_patch14_224.dinobloom"
    assert _same_backbone(target, source)


def test_timms_own_checkpoint_loads_without_its_classifier(tmp_path):
    import timm

    torch.manual_seed(4)
    published = timm.create_model("resnet18")  # with timm's 1000-class classifier, fc
    state = {f"module.{k}": v for k, v in published.state_dict().items()}
    path = tmp_path / "resnet18.pth"
    torch.save({"state_dict": state, "epoch": 90}, path)
    model = create_model("timm/resnet18", num_classes=3, image_size=32).eval()
    record = load_pretrained_weights(model, "timm/resnet18", path)
    assert record["layout"] == "timm" and "position_embeddings" not in record
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        expected = published.eval().forward_head(published.forward_features(x), pre_logits=True)
        torch.testing.assert_close(model.forward_features(x), expected, rtol=0, atol=0)
    assert model.head.out_features == 3


def test_a_timm_vit_at_another_size_has_its_position_embeddings_resampled_and_recorded(
    tmp_path,
):
    torch.manual_seed(5)
    published = create_model("timm/test_vit", image_size=64)
    path = _port(published.backbone.state_dict(), tmp_path / "vit.safetensors")
    model = create_model("timm/test_vit", image_size=32)
    record = load_pretrained_weights(model, "timm/test_vit", path)
    assert record["position_embeddings"] == (
        "resampled from 4x4 to 2x2 patches (timm's checkpoint filter)"
    )
    assert torch.equal(model.backbone.cls_token, published.backbone.cls_token)


def test_amlcytos_own_models_have_no_published_weights():
    with pytest.raises(AmlcytoError, match="'cnn_small' has no published weights"):
        load_pretrained_weights(create_model("cnn_small"), "cnn_small", None)


def test_each_backbone_has_its_own_preprocessing():
    dinobloom = {
        "image_size": 224,
        "mean": IMAGENET_MEAN,
        "std": IMAGENET_STD,
        "interpolation": "bicubic",
    }
    assert preprocessing("dinobloom-s") == dinobloom
    assert preprocessing("dinobloom-g", image_size=448) == {**dinobloom, "image_size": 448}
    # the hub port's pretrained_cfg says 518 px, as timm's DINOv2 does: DinoBloom stays at 224
    assert preprocessing("timm/vit_small_patch14_dinov2")["image_size"] == 518
    assert preprocessing("timm/resnet18") == {**dinobloom, "interpolation": "bicubic"}
    clip = preprocessing("timm/vit_base_patch16_clip_224.openai")
    assert clip["mean"] == pytest.approx([0.48145466, 0.4578275, 0.40821073])
    assert preprocessing("timm/resnet18.tv_in1k")["interpolation"] == "bilinear"
    assert preprocessing("cnn_small") is None  # amlcyto's own: the data's statistics
