"""The LightningModule: a plain network plus the loss, the metrics and the optimiser."""

from __future__ import annotations

import lightning as L
import torch
import torch.nn.functional as F
from torchmetrics.classification import MulticlassAccuracy, MulticlassF1Score

from amlcyto.data.transforms import CellAugment


class CellClassifier(L.LightningModule):
    """Trains ``model`` on batches of uint8 cells; ``len(classes) == 2`` uses one sigmoid logit."""

    def __init__(
        self,
        model: torch.nn.Module,
        num_classes: int,
        mean: list[float],
        std: list[float],
        lr: float = 1e-3,
        weight_decay: float = 1e-4,
        epochs: int = 20,
        augment: CellAugment | None = None,
        seed: int = 0,
        channels_last: bool = False,
    ):
        super().__init__()
        self.model = model
        self.num_classes = num_classes
        self.lr, self.weight_decay, self.epochs = lr, weight_decay, epochs
        self.augment = augment
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32), persistent=False)
        self.generator = torch.Generator().manual_seed(seed)
        self.val_acc = MulticlassAccuracy(num_classes, average="micro")
        self.val_f1 = MulticlassF1Score(num_classes, average="macro")

    def prepare(self, images: torch.Tensor, train: bool) -> torch.Tensor:
        """``(B, S, S, 3)`` uint8 -> normalised ``(B, 3, S, S)`` float, augmented when training."""
        x = images.permute(0, 3, 1, 2).float().div_(255.0)  # (B, 3, S, S), NHWC strides
        if train and self.augment is not None:
            x = self.augment(x, self.generator)
        x = (x - self.mean.view(1, 3, 1, 1)) / self.std.view(1, 3, 1, 1)
        return x.contiguous(memory_format=self.memory_format)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model(self.prepare(images, train=False))

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        """``(B, K)`` class probabilities: sigmoid of the single logit for two classes."""
        logits = logits.float()
        if self.num_classes == 2:
            p = torch.sigmoid(logits[:, 0])
            return torch.stack([1 - p, p], dim=1)
        return logits.softmax(dim=1)

    def loss_and_probabilities(self, logits: torch.Tensor, labels: torch.Tensor):
        logits = logits.float()
        if self.num_classes == 2:
            loss = F.binary_cross_entropy_with_logits(logits[:, 0], labels.float())
        else:
            loss = F.cross_entropy(logits, labels)
        return loss, self.probabilities(logits)

    def training_step(self, batch, batch_idx):
        images, labels = batch
        loss, _ = self.loss_and_probabilities(self.model(self.prepare(images, train=True)), labels)
        self.log(
            "train_loss", loss, on_step=False, on_epoch=True, batch_size=len(labels), sync_dist=True
        )
        return loss

    def validation_step(self, batch, batch_idx):
        images, labels = batch
        loss, probabilities = self.loss_and_probabilities(self(images), labels)
        self.val_acc.update(probabilities, labels)
        self.val_f1.update(probabilities, labels)
        self.log(
            "val_loss", loss, on_step=False, on_epoch=True, batch_size=len(labels), sync_dist=True
        )
        self.log("val_acc", self.val_acc, on_step=False, on_epoch=True)
        self.log("val_macro_f1", self.val_f1, on_step=False, on_epoch=True)

    def configure_optimizers(self):
        optimizer = torch.optim.AdamW(self.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(self.epochs, 1))
        return {"optimizer": optimizer, "lr_scheduler": scheduler}
