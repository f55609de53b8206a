"""Tests of ``amlcyto.evaluation.plots``: text that draws, montages that stay bounded."""

from __future__ import annotations

import warnings

import numpy as np
from PIL import Image

from amlcyto.evaluation import plots


def test_a_character_no_installed_font_has_is_written_as_its_code_point(monkeypatch):
    # where no font with CJK glyphs is installed (DejaVu Sans only), a patient's name is
    # written as code points, which draw, rather than as boxes
    monkeypatch.setattr(plots, "_glyphs", lambda: frozenset(range(128)))
    assert plots.drawable("患者 P1\nok") == "\\u60a3\\u8005 P1\nok"


def test_a_montage_draws_every_name_and_wraps_long_rows(tmp_path):
    cell = np.zeros((8, 8, 3), np.uint8)
    row = ("患者", [(cell, f"患者 {i}") for i in range(20)])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        plots.plot_montage([row], "patient 患者", tmp_path / "m.png")
    assert not [w for w in caught if "missing from font" in str(w.message)]
    plots.plot_montage([(row[0], row[1][:8])], "patient 患者", tmp_path / "eight.png")
    with Image.open(tmp_path / "m.png") as wrapped, Image.open(tmp_path / "eight.png") as eight:
        assert wrapped.width <= eight.width + 10 and wrapped.height > 2 * eight.height
