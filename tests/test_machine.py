"""Tests of ``amlcyto.machine``: the inference precision of the machine at hand."""

from __future__ import annotations

import numpy as np
import pytest

from amlcyto import machine
from amlcyto.errors import AmlcytoError
from amlcyto.machine import inference_precision


@pytest.mark.parametrize(
    ("trained", "native", "expected"),
    [
        ("32-true", True, "32"),  # a run trained in fp32 predicts in fp32
        ("bf16-mixed", True, "bf16"),  # as it was validated, where the CPU has bf16
        ("bf16-mixed", False, "32"),  # emulated bf16 would be slower: fp32
        (None, True, "32"),  # an older run without the record
    ],
)
def test_auto_precision_follows_the_run_where_the_cpu_has_the_hardware(
    monkeypatch, trained, native, expected
):
    monkeypatch.setattr(machine, "cpu_has_native_bf16", lambda: native)
    assert inference_precision("auto", trained, "cpu") == expected


def test_explicit_precisions_and_bad_ones():
    assert inference_precision("32", "bf16-mixed", "cpu") == "32"
    assert inference_precision("bf16", "32-true", "cpu") == "bf16"
    with pytest.raises(AmlcytoError, match="needs a GPU"):
        inference_precision("16", "16-mixed", "cpu")
    with pytest.raises(AmlcytoError, match="use auto, 32, bf16, 16"):
        inference_precision("fp8", None, "cpu")


def test_training_names_are_understood_and_a_features_file_of_another_precision_refused():
    from amlcyto.mil.features import CellFeatures, Extractor, check_same_extractor

    assert inference_precision("bf16-mixed", None, "cpu") == "bf16"
    assert inference_precision("32-true", "bf16-mixed", "cpu") == "32"
    made = Extractor("r", "sha", "cnn_small", {}, 16, [0.5] * 3, [0.2] * 3, 8, ["a", "b"], "bf16")
    expected = Extractor(**{**made.__dict__, "precision": "32"})
    features = CellFeatures(np.zeros((1, 8)), np.zeros((1, 2)), None, made, "cells.h5")
    with pytest.raises(AmlcytoError, match="--precision 32"):
        check_same_extractor(expected, features, "this MIL run")
    check_same_extractor(made, features, "this MIL run")  # the same precision passes


def test_int8_is_asked_for_on_the_cpu_only_and_never_chosen_by_auto():
    assert inference_precision("int8", "32-true", "cpu") == "int8"
    with pytest.raises(AmlcytoError, match="int8 runs on the CPU"):
        inference_precision("int8", "32-true", "cuda")
    for trained in ("32-true", "bf16-mixed", None):
        assert inference_precision("auto", trained, "cpu") != "int8"


def test_worker_counts_are_capped_at_the_usable_cpus_with_a_warning(monkeypatch):
    monkeypatch.setattr(machine, "usable_cpus", lambda: 2)
    with pytest.warns(UserWarning, match="--workers 500: this machine has 2 usable CPUs"):
        assert machine.capped_workers(500) == 2
    assert machine.capped_workers(1) == 1


def test_memory_is_a_positive_number_of_bytes():
    assert machine.memory_bytes() > 2**20
