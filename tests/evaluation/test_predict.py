"""Tests of ``amlcyto.evaluation.predict``: predictions of unlabelled images and folders."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from cli_helpers import invoke, ok
from conftest import SHARED
from evaluation_helpers import CLASSES, P_COLUMNS

from amlcyto.errors import AmlcytoError
from amlcyto.evaluation.predict import collect_images, predict


def _unlabelled(tmp_path: Path, tiny_data: Path) -> Path:
    root = tmp_path / "inbox"
    shutil.copytree(tiny_data / "NPM1" / "NPM1_P0", root / "slide1")
    shutil.copytree(tiny_data / "control" / "control_P1", root / "slide2" / "deeper")
    (root / "slide1" / "notes.txt").write_text("not an image")
    (root / "slide1" / ".hidden.png").write_bytes(b"")
    return root


def test_predict_files_and_folders(trained_run: Path, tiny_data: Path, tmp_path: Path):
    root = _unlabelled(tmp_path, tiny_data)
    single = tiny_data / "PML_RARA" / "PML_RARA_P2" / "cell_0.png"
    table, passed_over = predict(trained_run, [root, single])
    assert passed_over == [
        str((root / "slide1" / n).resolve()) for n in ("notes.txt", ".hidden.png")
    ]
    assert list(table.columns) == ["kind", "path", "images", "predicted", *P_COLUMNS, "problem"]
    assert (table["problem"] == "").all()
    images = table[table["kind"] == "image"]
    folders = table[table["kind"] == "folder"]
    assert len(images) == 6 + 6 + 1
    assert (images["images"] == 1).all()
    np.testing.assert_allclose(images[P_COLUMNS].sum(axis=1), 1.0, atol=1e-5)
    # one row per folder that holds images, with the mean of its images' rows
    expected = {
        str((root / "slide1").resolve()): 6,
        str((root / "slide2" / "deeper").resolve()): 6,
        str(single.parent.resolve()): 1,
    }
    assert dict(zip(folders["path"], folders["images"], strict=True)) == expected
    for row in folders.itertuples():
        mine = images[images["path"].map(lambda p: str(Path(p).parent)) == row.path]
        assert len(mine) == row.images
        np.testing.assert_allclose(
            [getattr(row, c) for c in P_COLUMNS], mine[P_COLUMNS].mean(), atol=1e-5
        )
        best = CLASSES[int(np.argmax([getattr(row, c) for c in P_COLUMNS]))]
        assert row.predicted == best


def test_predict_agrees_with_evaluate(trained_run: Path, evaluation):
    cells = evaluation.predictions.iloc[:4]
    table, _ = predict(trained_run, list(cells["path"]))
    images = table[table["kind"] == "image"].set_index("path")
    for row in cells.itertuples():
        np.testing.assert_allclose(
            images.loc[row.path, P_COLUMNS].to_numpy(dtype=float),
            [getattr(row, c) for c in P_COLUMNS],
            atol=1e-5,
        )


def test_predict_missing_path(trained_run: Path, tmp_path: Path):
    with pytest.raises(AmlcytoError, match="no such file or folder"):
        predict(trained_run, [tmp_path / "missing.png"])


def test_predict_folder_without_images(trained_run: Path, tmp_path: Path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "readme.txt").write_text("hello")
    with pytest.raises(AmlcytoError, match="no images"):
        predict(trained_run, [tmp_path / "docs"])


def test_collect_images_sorts_and_recurses(tmp_path: Path):
    tmp_path = tmp_path.resolve()
    for name in ("b/2.tif", "a/1.PNG", "a/x.csv", "c.jpg"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    images, others = collect_images([tmp_path])
    assert images == [str(tmp_path / p) for p in ("a/1.PNG", "b/2.tif", "c.jpg")]
    assert others == [str(tmp_path / "a/x.csv")]


@pytest.mark.shared_data
@pytest.mark.skipif(not (SHARED / "lmu_sample_originals").is_dir(), reason="no ../shared/data")
def test_predict_real_rgba_tiffs(trained_run: Path):
    """The real 400x400 RGBA originals go through predict: one row each, one per class folder."""
    folder = SHARED / "lmu_sample_originals"
    files = sorted(str(p) for p in folder.rglob("*.tiff"))  # as given (issue 25, item 14)
    table, passed_over = predict(trained_run, [folder])
    images = table[table["kind"] == "image"]
    assert sorted(images["path"]) == files and passed_over == []
    np.testing.assert_allclose(images[P_COLUMNS].sum(axis=1), 1.0, atol=1e-5)
    folders = table[table["kind"] == "folder"]
    assert folders["images"].sum() == len(files)
    assert set(folders["path"]) == {str(Path(p).parent) for p in files}


def test_collect_images_follows_links_skips_hidden_folders_and_lists_each_file_once(tmp_path):
    tmp_path = tmp_path.resolve()
    for name in ("real/1.png", "top/.ipynb_checkpoints/2.png", "top/3.png"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "top" / "linked").symlink_to(tmp_path / "real")
    images, _ = collect_images([tmp_path / "top", tmp_path / "top" / "3.png"])
    assert images == [str(tmp_path / "top" / "3.png"), str(tmp_path / "top" / "linked" / "1.png")]


def test_collect_images_passes_over_broken_links_and_survives_link_loops(tmp_path):
    tmp_path = tmp_path.resolve()
    (tmp_path / "cells").mkdir()
    (tmp_path / "cells" / "1.png").write_bytes(b"x")
    (tmp_path / "cells" / "moved.png").symlink_to(tmp_path / "nowhere.png")
    (tmp_path / "cells" / "again").symlink_to(tmp_path)  # a loop back to a parent
    (tmp_path / "cells" / "more").symlink_to(tmp_path / "cells")
    images, others = collect_images([tmp_path / "cells"])
    assert images == [str(tmp_path / "cells" / "1.png")]
    assert others == [str(tmp_path / "cells" / "moved.png")]


def test_predict_lists_every_unreadable_image_and_predicts_the_rest(
    trained_run, tiny_data, tmp_path
):
    folder = tmp_path / "slide"
    shutil.copytree(tiny_data / "NPM1" / "NPM1_P1", folder)
    (folder / "cell_2.png").write_bytes(b"")
    (folder / "cell_4.png").write_bytes((folder / "cell_4.png").read_bytes()[:50])
    table, _ = predict(trained_run, [folder])
    assert table["kind"].tolist() == ["image"] * 4 + ["folder", "unreadable", "unreadable"]
    failed = table[table["kind"] == "unreadable"]
    assert [Path(p).name for p in failed["path"]] == ["cell_2.png", "cell_4.png"]
    assert failed["problem"].str.startswith("zero-byte: ").iloc[0]
    assert failed["problem"].str.startswith("truncated: ").iloc[1]
    assert (failed["images"] == 0).all() and failed.filter(like="p_").isna().all().all()
    assert table.loc[table["kind"] == "folder", "images"].tolist() == [4]

    out = tmp_path / "p.csv"
    result = invoke("predict", trained_run, folder, "--out", out)
    ok(result)
    assert f"unreadable {folder.resolve() / 'cell_2.png'}: zero-byte" in result.stderr
    assert "4 image rows, 1 folder rows and 2 unreadable rows" in result.stderr
    assert pd.read_csv(out)["kind"].tolist() == table["kind"].tolist()
