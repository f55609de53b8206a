"""Tests of ``amlcyto.training.views``: the views of self-supervised pretraining."""

from __future__ import annotations

import pytest
import torch

from amlcyto.training.views import CellViews, ViewSettings

# every random change off: a view is then the image itself (or, with flips and turns, the image
# flipped and turned exactly)
PLAIN = dict(global_scale=(1.0, 1.0), ratio=(1.0, 1.0), flips=False, turns=False, colour_prob=0.0)
PLAIN |= dict(blur_prob=0.0, grayscale_prob=0.0)


def _batch(b: int = 6, size: int = 16, seed: int = 0) -> torch.Tensor:
    return torch.rand(b, 3, size, size, generator=torch.Generator().manual_seed(seed))


def _generator(seed: int = 1) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_a_view_without_random_changes_is_the_image():
    x = _batch()
    (first, second), local = CellViews(ViewSettings(**PLAIN))(x, _generator())
    torch.testing.assert_close(first, x, atol=1e-5, rtol=0)
    torch.testing.assert_close(second, x, atol=1e-5, rtol=0)
    assert local == []


def test_flips_and_turns_are_exact_and_each_happens():
    x = _batch(b=64)
    views = CellViews(ViewSettings(**{**PLAIN, "flips": True, "turns": True}))
    (view, _), _ = views(x, _generator())
    # each view is one of the 8 flips and turns of its image, without interpolation
    found = set()
    for image, seen in zip(x, view, strict=True):
        candidates = [
            (k, flip)
            for k in range(4)
            for flip in (False, True)
            if torch.allclose(
                torch.rot90(image.flip(-1) if flip else image, k, (-2, -1)), seen, atol=1e-5
            )
        ]
        assert candidates, "a view that is no flip or turn of its image"
        found.add(candidates[0])
    assert len(found) == 8


def test_the_same_generator_state_gives_the_same_views_and_another_other_views():
    x = _batch()
    views = CellViews(ViewSettings(local_views=2))
    a, b, c = (views(x, _generator(seed)) for seed in (5, 5, 6))
    for one, two in zip(a[0] + a[1], b[0] + b[1], strict=True):
        assert torch.equal(one, two)
    assert not torch.equal(a[0][0], c[0][0])


def test_a_batch_draws_the_same_count_of_numbers_whatever_the_pixels():
    """What exact resume and DDP rely on: the generator moves by the batch's size alone."""
    views = CellViews(ViewSettings(local_views=3))
    states = []
    for seed in (0, 1):
        generator = _generator()
        views(_batch(seed=seed), generator)
        states.append(generator.get_state())
    assert torch.equal(*states)


def test_views_are_in_range_of_their_sizes_and_differ():
    x = _batch(size=28)
    globals_, locals_ = CellViews(ViewSettings(local_views=4))(x, _generator())
    assert [v.shape for v in globals_] == [(6, 3, 28, 28)] * 2
    assert [v.shape for v in locals_] == [(6, 3, 12, 12)] * 4  # 3/7 of 28
    for view in globals_ + locals_:
        assert view.min() >= 0 and view.max() <= 1 and torch.isfinite(view).all()
    assert not torch.allclose(globals_[0], globals_[1])


def test_colour_jitter_changes_colour_and_blur_smooths():
    x = _batch(b=32)
    colour = CellViews(ViewSettings(**{**PLAIN, "colour_prob": 1.0}))
    (coloured, _), _ = colour(x, _generator())
    assert (coloured - x).abs().amax(dim=(1, 2, 3)).min() > 0  # every image changed
    x = _batch(b=4, size=64)  # the blur's sigma is in pixels at 64 px (in proportion elsewhere)
    blur = CellViews(ViewSettings(**{**PLAIN, "blur_prob": 1.0, "blur_sigma": (1.0, 1.0)}))
    (blurred, _), _ = blur(x, _generator())
    assert blurred.std() < 0.8 * x.std()  # noise smoothed
    assert blurred.mean().item() == pytest.approx(x.mean().item(), abs=0.01)


def test_the_settings_are_recorded_as_json():
    settings = ViewSettings().to_dict()
    assert settings["global_scale"] == [0.5, 1.0] and settings["grayscale_prob"] == 0.0
    assert "solarize" not in settings
