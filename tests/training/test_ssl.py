"""Tests of ``amlcyto.training.ssl``: SimCLR and DINO around a cell model, and the
LightningModule that trains them on views of uint8 cells."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch

from amlcyto.models import create_model
from amlcyto.training.pretrain_config import DINO, METHOD_DEFAULTS, SIMCLR
from amlcyto.training.schedule import CosineSchedule
from amlcyto.training.ssl import Dino, SelfSupervised, SimCLR, Step, ssl_net

SIZE = 16
SMALL_DINO = {**METHOD_DEFAULTS[DINO], "hidden_dim": 32, "bottleneck_dim": 8, "output_dim": 64}
SMALL_DINO["local_views"] = 2


def _backbone(seed: int = 0):
    torch.manual_seed(seed)
    return create_model("cnn_small", num_classes=2, image_size=SIZE, widths=[4, 8]).drop_head()


def _net(method: str):
    settings = SMALL_DINO if method == DINO else METHOD_DEFAULTS[SIMCLR]
    twin = _backbone(1) if method == DINO else None
    return ssl_net(method, _backbone(), twin, settings)


def _views(n: int, size: int = SIZE, batch: int = 6) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(n)
    return [torch.randn(batch, 3, size, size, generator=generator) for _ in range(n)]


def test_simclr_learns_the_backbone_it_publishes():
    net = _net(SIMCLR)
    assert isinstance(net, SimCLR) and net.encoder() is net.backbone
    loss = net.loss(_views(2), [], Step(0, 10))
    assert loss.ndim == 0 and math.isfinite(loss.item())
    loss.backward()
    assert net.backbone.stages[0][0].weight.grad.abs().sum() > 0
    assert net.head.layers[0].in_features == net.backbone.num_features  # hidden: its width


def test_dino_publishes_its_teacher_which_follows_the_student_and_learns_nothing_itself():
    net = _net(DINO)
    assert isinstance(net, Dino) and net.encoder() is net.teacher
    teacher, student = net.teacher.state_dict(), net.student.state_dict()
    assert all(torch.equal(teacher[k], student[k]) for k in teacher)  # starts as the student
    assert not any(p.requires_grad for p in net.teacher.parameters())
    loss = net.loss(_views(2), _views(2, size=8), Step(0, 10))
    loss.backward()
    with torch.no_grad():
        for parameter in net.student.parameters():
            parameter.add_(1.0)
    before = [p.clone() for p in net.teacher.parameters()]
    net.before_step(Step(0, 10))  # momentum 0.996: a small step towards the student
    moved = [
        (p - b).abs().max().item() for p, b in zip(net.teacher.parameters(), before, strict=True)
    ]
    assert 0 < max(moved) <= 0.0041


def test_dino_validation_loss_leaves_the_centre_as_training_left_it():
    net = _net(DINO)
    net.loss(_views(2), [], Step(0, 10))
    centre = net.criterion.center.clone()
    assert centre.abs().sum() > 0  # training moved it
    net.validation_loss(_views(2), [], Step(5, 10))
    assert torch.equal(net.criterion.center, centre)


def test_dino_teacher_temperature_warms_up_then_stays():
    net = _net(DINO)
    start, end = SMALL_DINO["teacher_temp_start"], SMALL_DINO["teacher_temp"]
    assert net.teacher_temperature(Step(0, 100)) == pytest.approx(start)
    middle = net.teacher_temperature(Step(15, 100))  # half of the 30 % warm-up
    assert start < middle < end
    assert net.teacher_temperature(Step(30, 100)) == net.teacher_temperature(Step(99, 100)) == end


def test_the_module_trains_the_whole_net_but_not_the_teacher_and_keeps_its_plan():
    net = _net(DINO)
    module = SelfSupervised(net, [0.5] * 3, [0.25] * 3, schedule=CosineSchedule(4), seed=3)
    assert module.model is net
    optimiser = module.configure_optimizers()["optimizer"]
    learnt = {id(p) for group in optimiser.param_groups for p in group["params"]}
    assert not learnt & {id(p) for p in net.teacher.parameters()}
    assert {id(p) for p in net.student.parameters()} <= learnt
    module._trainer = SimpleNamespace(num_training_batches=5, current_epoch=0)  # as in a fit
    images = torch.randint(0, 256, (4, SIZE, SIZE, 3), dtype=torch.uint8)
    globals_, locals_ = module.make_views(images, module.generator)
    assert [v.shape for v in globals_] == [(4, 3, SIZE, SIZE)] * 2
    assert len(locals_) == 2 and locals_[0].shape[-1] == round(SIZE * 3 / 7)


@pytest.mark.parametrize("method", [SIMCLR, DINO])
def test_steps_follow_the_schedules_plan(method):
    module = SelfSupervised(_net(method), [0.5] * 3, [0.25] * 3, schedule=CosineSchedule(4))
    module._trainer = SimpleNamespace(num_training_batches=5, current_epoch=0)  # as in a fit
    assert module.step(2) == Step(2, 20)
    module._trainer.current_epoch = 1
    assert module.step(2) == Step(7, 20)
    module.schedule.epochs = 2  # --max-minutes fitted the plan to the time
    assert module.step(2) == Step(7, 10)
