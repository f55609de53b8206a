"""Tests of ``amlcyto.training.config_file``: training settings in YAML files."""

from __future__ import annotations

import pytest

from amlcyto.errors import AmlcytoError
from amlcyto.training import TrainConfig


def test_config_files_read_numbers_as_yaml_writes_them_and_check_types(tmp_path):
    from amlcyto.training.config_file import read_config_file, write_config_file

    path = tmp_path / "c.yaml"
    path.write_text("lr: 1e-4\nepochs: 3\nmax_minutes: 20\nmodel_options: {widths: [8, 16]}\n")
    assert read_config_file(path) == {
        "lr": 1e-4,  # YAML reads 1e-4 as text; the file means the number
        "epochs": 3,
        "max_minutes": 20.0,
        "model_options": {"widths": [8, 16]},
    }
    path.write_text("epochs: 2.5\n")
    with pytest.raises(AmlcytoError, match=r"c.yaml: epochs must be a whole number, got 2.5"):
        read_config_file(path)
    path.write_text("augment: yes please\n")
    with pytest.raises(AmlcytoError, match="augment must be true or false"):
        read_config_file(path)
    written = write_config_file(tmp_path / "best.yaml", TrainConfig(lr=3e-4, fold=2).to_dict())
    back = read_config_file(written)
    assert back["lr"] == 3e-4 and TrainConfig(**back) == TrainConfig(lr=3e-4)
    for left_out in ("fold", "test_fold", "devices", "cache_dir", "positive", "image_size"):
        assert left_out not in back  # the machine's, one split's, and the unset ones
