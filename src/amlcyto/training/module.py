"""The LightningModule: a ``CellPredictor`` plus augmentation, the loss, metrics and optimiser.

Normalisation and the logits-to-probabilities rule live in the predictor
(:mod:`amlcyto.models.predictor`); this module adds only what training needs.
"""

from __future__ import annotations

import lightning as L
import torch
from torchmetrics.classification import MulticlassAccuracy, MulticlassF1Score

from amlcyto.data.transforms import CellAugment
from amlcyto.models.outputs import classification_loss
from amlcyto.models.predictor import CellPredictor
from amlcyto.training.schedule import CosineSchedule


class CellClassifier(L.LightningModule):
    """Trains ``predictor.model`` on batches of uint8 cells."""

    def __init__(
        self,
        predictor: CellPredictor,
        lr: float = 1e-3,
        weight_decay: float = 1e-4,
        schedule: CosineSchedule | None = None,
        augment: CellAugment | None = None,
        seed: int = 0,
        frozen: tuple[torch.nn.Module, ...] | list[torch.nn.Module] = (),
    ):
        super().__init__()
        self.frozen = list(frozen)  # feature modules kept in eval mode: frozen BatchNorm stats
        self.predictor = predictor
        self.lr, self.weight_decay = lr, weight_decay
        self.schedule = schedule or CosineSchedule(20)  # its length may change as training goes
        self.augment = augment
        self.generator = torch.Generator().manual_seed(seed)
        num_classes = predictor.num_classes
        self.val_acc = MulticlassAccuracy(num_classes, average="micro")
        self.val_f1 = MulticlassF1Score(num_classes, average="macro")
        self.train()  # Lightning keeps each module's mode as it finds it: set them now

    def train(self, mode: bool = True):
        """Training mode, except for frozen feature modules (their BatchNorm statistics would
        otherwise still move, though no weight learns). Lightning restores these modes after
        each validation pass."""
        super().train(mode)
        for module in self.frozen:
            module.eval()
        return self

    @property
    def model(self) -> torch.nn.Module:
        """The network being trained (what the run saves)."""
        return self.predictor.model

    def training_inputs(self, images: torch.Tensor) -> torch.Tensor:
        """``(B, S, S, 3)`` uint8 -> augmented, normalised ``(B, 3, S, S)`` float."""
        step = self.predictor.input
        x = step.to_unit(images)
        if self.augment is not None:
            x = self.augment(x, self.generator)
        return step.normalise(x)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.predictor.logits(images)

    def training_step(self, batch, batch_idx):
        images, labels = batch
        logits = self.model(self.training_inputs(images))
        loss = classification_loss(logits, labels, self.predictor.num_classes)
        self.log(
            "train_loss", loss, on_step=False, on_epoch=True, batch_size=len(labels), sync_dist=True
        )
        return loss

    def validation_step(self, batch, batch_idx):
        images, labels = batch
        logits = self(images)
        loss = classification_loss(logits, labels, self.predictor.num_classes)
        probabilities = self.predictor.to_probabilities(logits)
        self.val_acc.update(probabilities, labels)
        self.val_f1.update(probabilities, labels)
        self.log(
            "val_loss", loss, on_step=False, on_epoch=True, batch_size=len(labels), sync_dist=True
        )
        self.log("val_acc", self.val_acc, on_step=False, on_epoch=True)
        self.log("val_macro_f1", self.val_f1, on_step=False, on_epoch=True)

    def configure_optimizers(self):
        learning = [p for p in self.parameters() if p.requires_grad]  # frozen weights stay out
        optimizer = torch.optim.AdamW(learning, lr=self.lr, weight_decay=self.weight_decay)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, self.schedule)
        return {"optimizer": optimizer, "lr_scheduler": scheduler}
