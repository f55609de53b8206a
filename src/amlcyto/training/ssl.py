"""Self-supervised learning of a cell model's features with lightly's losses and heads:
SimCLR's contrastive pairs and DINO's self-distillation, and the LightningModule that trains
either on views of uint8 cells.

Each method is a plain ``nn.Module`` holding everything it learns and keeps: the backbone (a
registry cell model without its head, whose ``forward_features`` are the features), the
projection head, DINO's teacher and its loss's centre. The LightningModule's ``model`` is that
module, so the checkpoint of every epoch saves all of it, and :meth:`SelfSupervisedNet.encoder`
is the backbone a run publishes: SimCLR's backbone, DINO's teacher's (as DINO and DinoBloom
publish theirs).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import NamedTuple

import lightning as L
import torch
from lightly.loss import DINOLoss, NTXentLoss
from lightly.models.modules import DINOProjectionHead, SimCLRProjectionHead
from lightly.models.utils import deactivate_requires_grad, update_momentum
from lightly.utils.scheduler import cosine_schedule
from torch import nn

from amlcyto.models.base import CellModel
from amlcyto.models.predictor import CellInput
from amlcyto.training.pretrain_config import DINO, SIMCLR
from amlcyto.training.schedule import CosineSchedule
from amlcyto.training.views import CellViews, ViewSettings

Views = list[torch.Tensor]


class Step(NamedTuple):
    """Where training is: ``done`` steps of the ``planned`` ones."""

    done: int
    planned: int


class SelfSupervisedNet(nn.Module):
    """What a method learns from: ``loss`` of one batch's views at ``step``."""

    def encoder(self) -> CellModel:
        """The backbone a run publishes."""
        raise NotImplementedError

    def view_settings(self) -> ViewSettings:
        """The views the method learns from."""
        return ViewSettings()

    def before_step(self, step: Step) -> None:
        """Called before each training step (DINO's teacher follows the student here)."""

    def after_backward(self, epoch: int) -> None:
        """Called after each backward pass (DINO freezes its prototypes' layer here)."""

    def loss(self, globals_: Views, locals_: Views, step: Step) -> torch.Tensor:
        raise NotImplementedError

    def validation_loss(self, globals_: Views, locals_: Views, step: Step) -> torch.Tensor:
        """The loss without changing any state (DINO's centre stays)."""
        return self.loss(globals_, locals_, step)


def _features(backbone: CellModel, views: Views) -> list[torch.Tensor]:
    """The backbone's features of each view, views of one size in one pass."""
    out = backbone.forward_features(torch.cat(views))  # (V*B, D)
    return list(out.chunk(len(views)))


class SimCLR(SelfSupervisedNet):
    """SimCLR (Chen et al. 2020): two views of an image drawn together, apart from the batch's
    other images, by NT-Xent over projections (across processes under DDP)."""

    def __init__(self, backbone: CellModel, temperature: float, hidden_dim: int, output_dim: int):
        super().__init__()
        width = backbone.num_features
        self.backbone = backbone
        self.head = SimCLRProjectionHead(width, hidden_dim or width, output_dim)
        distributed = torch.distributed.is_available()
        self.criterion = NTXentLoss(temperature=temperature, gather_distributed=distributed)

    def encoder(self) -> CellModel:
        return self.backbone

    def loss(self, globals_: Views, locals_: Views, step: Step) -> torch.Tensor:
        first, second = (self.head(f).float() for f in _features(self.backbone, globals_))
        return self.criterion(first, second)


class Dino(SelfSupervisedNet):
    """DINO (Caron et al. 2021): a student learns to give, for every view of an image, the
    output its teacher (a moving average of the student) gives for the global views; the
    teacher's outputs are centred and sharpened so they do not collapse to one answer."""

    def __init__(self, backbone: CellModel, teacher: CellModel, **settings: float):
        super().__init__()
        self.settings = settings
        width = backbone.num_features
        sizes = (settings["hidden_dim"], settings["bottleneck_dim"], settings["output_dim"])

        def head() -> DINOProjectionHead:
            with warnings.catch_warnings():  # lightly's head uses torch's old weight_norm
                warnings.simplefilter("ignore", FutureWarning)
                return DINOProjectionHead(
                    width, *sizes, freeze_last_layer=settings["freeze_last_layer_epochs"]
                )

        self.student, self.student_head = backbone, head()
        self.teacher, self.teacher_head = teacher, head()
        self.teacher.load_state_dict(self.student.state_dict())
        self.teacher_head.load_state_dict(self.student_head.state_dict())
        deactivate_requires_grad(self.teacher)
        deactivate_requires_grad(self.teacher_head)
        self.criterion = DINOLoss(
            output_dim=settings["output_dim"],
            student_temp=settings["student_temp"],
            center_momentum=settings["center_momentum"],
        )

    def encoder(self) -> CellModel:
        return self.teacher

    def view_settings(self) -> ViewSettings:
        return ViewSettings(local_views=int(self.settings["local_views"]))

    def before_step(self, step: Step) -> None:
        momentum = cosine_schedule(*step, self.settings["momentum_start"], 1.0)
        update_momentum(self.student, self.teacher, m=momentum)
        update_momentum(self.student_head, self.teacher_head, m=momentum)

    def after_backward(self, epoch: int) -> None:
        self.student_head.cancel_last_layer_gradients(epoch)

    def teacher_temperature(self, step: Step) -> float:
        """Rising from ``teacher_temp_start`` to ``teacher_temp`` over the warm-up share of the
        planned steps, then constant."""
        s = self.settings
        warm = max(round(step.planned * s["teacher_warmup"]), 1)
        if step.done >= warm:
            return float(s["teacher_temp"])
        return cosine_schedule(step.done, warm, s["teacher_temp_start"], s["teacher_temp"])

    def loss(self, globals_: Views, locals_: Views, step: Step) -> torch.Tensor:
        with torch.no_grad():
            teacher = [self.teacher_head(f).float() for f in _features(self.teacher, globals_)]
        student = [self.student_head(f).float() for f in _features(self.student, globals_)]
        if locals_:
            student += [self.student_head(f).float() for f in _features(self.student, locals_)]
        temperature = self.teacher_temperature(step)
        return self.criterion(teacher, student, teacher_temp=temperature)

    def validation_loss(self, globals_: Views, locals_: Views, step: Step) -> torch.Tensor:
        centre = self.criterion.center.detach().clone()
        loss = self.loss(globals_, locals_, step)
        self.criterion.center.data = centre  # as the training left it
        return loss


def ssl_net(
    method: str, backbone: CellModel, twin: CellModel | None, settings: dict
) -> SelfSupervisedNet:
    """The ``method``'s net around ``backbone`` (``twin``, a second model of its architecture,
    becomes DINO's teacher; SimCLR needs none)."""
    if method == SIMCLR:
        return SimCLR(backbone, **settings)
    if method == DINO:
        return Dino(backbone, twin, **settings)
    raise ValueError(f"unknown method {method!r}")


class SelfSupervised(L.LightningModule):
    """Trains a :class:`SelfSupervisedNet` on batches of uint8 cells: normalised like the
    encoder's input spec (``mean``, ``std``), viewed by :class:`CellViews` drawn from
    ``generator`` (the validation's views from a generator seeded afresh each pass, so every
    epoch's validation loss is measured on the same views)."""

    def __init__(
        self,
        net: SelfSupervisedNet,
        mean: Sequence[float],
        std: Sequence[float],
        channels_last: bool = False,
        lr: float = 1e-3,
        weight_decay: float = 1e-4,
        schedule: CosineSchedule | None = None,
        seed: int = 0,
    ):
        super().__init__()
        self.net = net
        self.input = CellInput(mean, std, channels_last)
        self.views = CellViews(net.view_settings())
        self.lr, self.weight_decay = lr, weight_decay
        self.schedule = schedule or CosineSchedule(20)  # its length may change as training goes
        self.generator = torch.Generator().manual_seed(seed)
        self.seed = seed
        self._val_generator = torch.Generator()

    @property
    def model(self) -> SelfSupervisedNet:
        """The network being trained (all of it: what each epoch's checkpoint saves)."""
        return self.net

    def step(self, batch_idx: int) -> Step:
        """The steps done before step ``batch_idx`` of this epoch, of those the schedule's
        current plan (which ``--max-minutes`` may change) holds."""
        per_epoch = max(int(self.trainer.num_training_batches), 1)
        planned = self.schedule.epochs * per_epoch
        return Step(min(self.current_epoch * per_epoch + batch_idx, planned), planned)

    def make_views(self, images: torch.Tensor, generator: torch.Generator) -> tuple[Views, Views]:
        """``(B, S, S, 3)`` uint8 -> the global and local views, normalised."""
        x = self.input.to_unit(images)
        with torch.autocast(x.device.type, enabled=False):
            globals_, locals_ = self.views(x, generator)
        normalise = self.input.normalise
        return [normalise(v) for v in globals_], [normalise(v) for v in locals_]

    def training_step(self, batch, batch_idx):
        images = batch[0]
        step = self.step(batch_idx)
        self.net.before_step(step)
        loss = self.net.loss(*self.make_views(images, self.generator), step)
        self.log(
            "train_loss", loss, on_step=False, on_epoch=True, batch_size=len(images), sync_dist=True
        )
        return loss

    def on_after_backward(self) -> None:
        self.net.after_backward(self.current_epoch)

    def on_validation_epoch_start(self) -> None:
        self._val_generator.manual_seed(self.seed + 1)

    def validation_step(self, batch, batch_idx):
        images = batch[0]
        step = self.step(int(self.trainer.num_training_batches))  # the epoch's end
        views = self.make_views(images, self._val_generator)
        loss = self.net.validation_loss(*views, step)
        self.log(
            "val_loss", loss, on_step=False, on_epoch=True, batch_size=len(images), sync_dist=True
        )

    def configure_optimizers(self):
        learning = [p for p in self.parameters() if p.requires_grad]  # DINO's teacher stays out
        optimizer = torch.optim.AdamW(learning, lr=self.lr, weight_decay=self.weight_decay)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, self.schedule)
        return {"optimizer": optimizer, "lr_scheduler": scheduler}
