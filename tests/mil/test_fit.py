"""Tests of ``amlcyto.mil.fit``: training one bag model, predicting bags, attention branches."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from amlcyto.errors import AmlcytoError
from amlcyto.mil.config import MilConfig
from amlcyto.mil.fit import _class_weights, class_branch, fit, one_thread, predict_bags

SMALL = {"hidden": 16, "attention_width": 8, "dropout": 0.0}  # steps of well under a millisecond


def planted(bags_per_class: int, seed: int, classes: int = 3, width: int = 6):
    """Noise bags (8-20 cells) where a third of each bag's cells have feature ``class`` raised
    by 3: only the bag's composition tells the classes apart. ``(features, bags, targets)``."""
    rng = np.random.default_rng(seed)
    features, bags, targets, start = [], [], [], 0
    for label in range(classes):
        for _ in range(bags_per_class):
            n = int(rng.integers(8, 21))
            bag = rng.normal(0, 1, (n, width))
            bag[: n // 3 + 1, label] += 3.0
            features.append(bag)
            bags.append(np.arange(start, start + n, dtype=np.int64))
            targets.append(label)
            start += n
    return np.concatenate(features).astype(np.float32), bags, np.array(targets)


def merged(*sets):
    """Several planted sets as one feature matrix: ``(features, [(bags, targets), ...])``."""
    features, parts, offset = [], [], 0
    for data, bags, targets in sets:
        features.append(data)
        parts.append(([b + offset for b in bags], targets))
        offset += len(data)
    return np.concatenate(features), parts


def config(**changes) -> MilConfig:
    return MilConfig(**{"model_options": SMALL, **changes})


def log_loss(probs: np.ndarray, targets: np.ndarray) -> float:
    return float(-np.log(np.clip(probs[np.arange(len(targets)), targets], 1e-7, 1)).mean())


def test_fit_learns_a_planted_signal_and_keeps_its_lowest_validation_loss():
    features, [(train, y), (val, vy), (test, ty)] = merged(
        planted(6, seed=0), planted(3, seed=1), planted(4, seed=2)
    )
    fitted = fit(config(patience=0), 5e-3, features, train, y, 3, (val, vy), epochs=15, seed=0)
    probs, _ = predict_bags(fitted.model, features, test)
    assert (probs.argmax(axis=1) == ty).mean() >= 0.75  # chance: 1/3
    losses = [row["val_loss"] for row in fitted.history]
    assert len(losses) == 15 and fitted.best_epoch == int(np.argmin(losses)) + 1
    kept = log_loss(predict_bags(fitted.model, features, val)[0], vy)
    assert kept == pytest.approx(min(losses), abs=1e-5)  # the best epoch's weights, not the last
    assert not fitted.model.training


def test_early_stopping_stops_patience_epochs_after_the_best_one():
    """Validation labels that contradict the training ones: the loss is lowest early and rises
    as the model learns, so training stops ``patience`` epochs after that."""
    features, [(train, y), (val, vy)] = merged(planted(5, seed=0), planted(2, seed=1))
    wrong = (vy + 1) % 3
    said: list[str] = []
    fitted = fit(
        config(patience=3), 1e-2, features, train, y, 3, (val, wrong), 40, 0, log=said.append
    )
    losses = [row["val_loss"] for row in fitted.history]
    assert fitted.best_epoch == int(np.argmin(losses)) + 1
    assert len(fitted.history) == fitted.best_epoch + 3 < 40
    assert [row["epoch"] for row in fitted.history] == list(range(1, len(losses) + 1))
    kept = log_loss(predict_bags(fitted.model, features, val)[0], wrong)
    assert kept == pytest.approx(min(losses), abs=1e-5) and kept < losses[-1]  # not the last
    assert len(said) == len(losses) + 1 and said[-1].startswith("stopped: 3 epochs")
    assert said[0].startswith("epoch 1/40: train_loss ")


def test_without_validation_every_epoch_runs_and_the_last_is_kept():
    features, [(train, y), (val, vy)] = merged(planted(4, seed=0), planted(2, seed=1))
    blind = fit(config(patience=1), 5e-3, features, train, y, 3, None, epochs=5, seed=2)
    seen = fit(config(patience=0), 5e-3, features, train, y, 3, (val, vy), epochs=5, seed=2)
    assert blind.best_epoch == 5 and len(blind.history) == 5
    assert all(set(row) == {"epoch", "train_loss"} for row in blind.history)
    # validating changes nothing in training: the same train losses, epoch by epoch ...
    assert [r["train_loss"] for r in blind.history] == [r["train_loss"] for r in seen.history]
    # ... and the weights kept without validation are the last epoch's
    last = log_loss(predict_bags(blind.model, features, val)[0], vy)
    assert last == pytest.approx(seen.history[-1]["val_loss"], abs=1e-5)


def test_the_same_seed_gives_identical_results_and_another_seed_does_not():
    features, bags, targets = planted(3, seed=0)
    runs = [
        fit(config(), 5e-3, features, bags, targets, 3, None, epochs=3, seed=s) for s in (7, 7, 8)
    ]
    assert runs[0].history == runs[1].history
    a, b, c = (r.model.state_dict() for r in runs)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert runs[0].history != runs[2].history
    assert not all(torch.equal(a[k], c[k]) for k in a)


@pytest.mark.parametrize(
    ("classes", "per_class", "branches"), [(3, True, 3), (3, False, 1), (2, True, 1)]
)
def test_predict_bags_gives_probabilities_and_attention_per_bag(classes, per_class, branches):
    features, bags, targets = planted(2, seed=0, classes=classes)
    bags = [*bags, bags[0][:1]]  # a bag of one cell too
    options = {**SMALL, "per_class": per_class}
    fitted = fit(
        config(model_options=options), 5e-3, features, bags, np.r_[targets, 0], classes, None, 1, 0
    )
    probs, attention = predict_bags(fitted.model, torch.from_numpy(features), bags)
    assert probs.shape == (len(bags), classes)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-6)
    assert [a.shape for a in attention] == [(branches, len(b)) for b in bags]
    for weights in attention:
        np.testing.assert_allclose(weights.sum(axis=1), 1.0, atol=1e-5)
    empty, none = predict_bags(fitted.model, features, [])
    assert empty.shape == (0, classes) and none == []


def test_class_branch_picks_the_class_own_branch_or_the_only_one():
    per_class = np.arange(12.0).reshape(3, 4)
    for index in range(3):
        np.testing.assert_array_equal(class_branch(per_class, index), per_class[index])
    single = np.arange(4.0)[None]
    for index in range(3):
        np.testing.assert_array_equal(class_branch(single, index), single[0])


def test_balanced_weights_make_every_present_class_weigh_the_same():
    targets = np.array([0, 0, 0, 2, 2, 0])  # class 1 has no bag
    weights = _class_weights(targets, 3)
    totals = [weights[targets == c].sum() for c in (0, 2)]
    assert totals == pytest.approx([3.0, 3.0])  # 6 bags over 2 present classes
    assert weights.sum() == pytest.approx(len(targets))


def test_a_diverging_fit_is_one_line_naming_the_epoch_and_the_fix():
    features, bags, targets = planted(2, seed=0)
    with pytest.raises(AmlcytoError, match=r"diverged at epoch 1 .*lower --lr") as error:
        fit(config(), 1e30, features, bags, targets, 3, None, epochs=3, seed=0)
    assert "\n" not in str(error.value)


def test_one_thread_restores_the_thread_count_even_after_an_error():
    before = torch.get_num_threads()
    with pytest.raises(RuntimeError), one_thread():
        assert torch.get_num_threads() == 1
        raise RuntimeError("inside")
    assert torch.get_num_threads() == before
