"""Tests of `amlcyto models` through the command line (``amlcyto.cli.models``)."""

from __future__ import annotations

from cli_helpers import invoke, ok

from amlcyto.models import list_models


def test_models_lists_every_registered_model():
    result = invoke("models")
    ok(result)
    for name in ("poster_pml_rara", "cnn_small", "dinobloom-s", "timm/<arch>", *list_models()):
        assert name in result.stdout
