"""Training one bag model: one patient per step, the epoch of lowest validation loss kept.

A plain PyTorch loop: a bag is a whole patient of any size, so a step is one bag (as in
SCEMILA), and a fold over the real cohort's features takes seconds; Lightning's trainer would
add more start-up than the training itself takes.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import torch

from amlcyto.errors import AmlcytoError
from amlcyto.mil.config import MilConfig
from amlcyto.models import create_model
from amlcyto.models.outputs import classification_loss, probabilities


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """Run a bag model's many tiny steps on one CPU thread: a bag's matrices are too small to
    share out, and on a busy 2-core machine two threads made a step 12x slower (74 against
    5.9 ms, measured side by side)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@dataclass
class Fitted:
    """A trained bag model and how it got there."""

    model: torch.nn.Module
    best_epoch: int  # 1-based; the last epoch where there was no validation
    history: list[dict]


@one_thread()
def fit(
    config: MilConfig,
    lr: float,
    features: np.ndarray,
    bags: list[np.ndarray],
    targets: np.ndarray,
    num_classes: int,
    val: tuple[list[np.ndarray], np.ndarray] | None,
    epochs: int,
    seed: int,
    log: Callable[[str], None] | None = None,
) -> Fitted:
    """Train a fresh model on ``bags`` (rows of ``features``) with class indices ``targets``.

    With ``val`` (bags, targets) the weights of the epoch of lowest validation loss are kept,
    and training stops after ``config.patience`` epochs without a lower one; without ``val``,
    every epoch runs and the last one's weights are kept.
    """
    torch.manual_seed(seed)
    generator = np.random.default_rng(seed)
    data = torch.from_numpy(np.ascontiguousarray(features, dtype=np.float32))
    model = create_model(
        config.model, num_classes=num_classes, feature_width=data.shape[1], **config.model_options
    )
    cells = torch.cat([data[torch.from_numpy(rows)] for rows in bags])
    model.set_feature_scale(cells.mean(dim=0), cells.std(dim=0))
    weights = _class_weights(targets, num_classes) if config.balanced else np.ones(len(targets))
    optimiser = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=config.weight_decay)
    best, best_loss, history = copy.deepcopy(model.state_dict()), float("inf"), []
    best_epoch = epochs
    for epoch in range(1, epochs + 1):
        model.train()
        losses = []
        for i in generator.permutation(len(bags)):
            logits, _ = model(data[torch.from_numpy(bags[i])])
            loss = classification_loss(
                logits[None], torch.tensor([targets[i]]), num_classes
            ) * float(weights[i])
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            losses.append(float(loss.detach()))
        row = {"epoch": epoch, "train_loss": float(np.mean(losses))}
        if not np.isfinite(row["train_loss"]):
            raise AmlcytoError(
                f"the bag model's training diverged at epoch {epoch} (loss {row['train_loss']}); "
                "lower --lr."
            )
        if val is not None:
            probs = predict_bags(model, data, val[0])[0]
            row["val_loss"] = _log_loss(probs, val[1])
            row["val_accuracy"] = float((probs.argmax(axis=1) == val[1]).mean())
            if row["val_loss"] < best_loss:
                best_loss, best_epoch = row["val_loss"], epoch
                best = copy.deepcopy(model.state_dict())
        history.append(row)
        if log is not None:
            shown = ", ".join(f"{k} {v:.4f}" for k, v in row.items() if k != "epoch")
            log(f"epoch {epoch}/{epochs}: {shown}")
        if val is not None and config.patience and epoch - best_epoch >= config.patience:
            if log is not None:
                log(f"stopped: {config.patience} epochs without a lower validation loss")
            break
    if val is not None:
        model.load_state_dict(best)
    return Fitted(model.eval(), best_epoch, history)


@torch.no_grad()
@one_thread()
def predict_bags(
    model: torch.nn.Module, features: torch.Tensor | np.ndarray, bags: list[np.ndarray]
) -> tuple[np.ndarray, list[np.ndarray]]:
    """``(B, K)`` class probabilities of each bag, and each bag's attention ``(branches, n)``."""
    model.eval()
    data = torch.as_tensor(features, dtype=torch.float32)
    num_classes = int(model.registry_config["num_classes"])
    out, attention = [], []
    for rows in bags:
        logits, weights = model(data[torch.from_numpy(rows)])
        out.append(probabilities(logits[None], num_classes)[0].numpy())
        attention.append(weights.numpy())
    return np.stack(out) if out else np.zeros((0, num_classes), np.float32), attention


def class_branch(attention: np.ndarray, class_index: int) -> np.ndarray:
    """The attention ``(n,)`` of the branch that speaks for class ``class_index``, out of a
    bag's ``(branches, n)``: its own branch with one per class, else the only one."""
    return attention[min(class_index, len(attention) - 1)]


def _class_weights(targets: np.ndarray, num_classes: int) -> np.ndarray:
    """Per bag: ``bags / (classes x bags of its class)``, so every class weighs the same."""
    counts = np.bincount(targets, minlength=num_classes).astype(float)
    present = (counts > 0).sum()
    return len(targets) / (present * counts[targets])


def _log_loss(probs: np.ndarray, targets: np.ndarray) -> float:
    picked = probs[np.arange(len(targets)), targets]
    return float(-np.log(np.clip(picked, 1e-7, 1.0)).mean())
