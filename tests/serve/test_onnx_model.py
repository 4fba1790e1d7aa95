"""serve/onnx_model.py: the converter's absence is a one-line error with the install command;
its chatty loggers are quietened for the conversion only."""

from __future__ import annotations

import logging
import sys

import pytest

from universal_embedding.serve import onnx_model


def test_missing_converter_names_the_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "jax2onnx", None)  # import fails as if not installed
    with pytest.raises(RuntimeError, match=r"needs jax2onnx: .*--no-deps jax2onnx==0\.17\.1") as e:
        onnx_model.convert(lambda x: x, "m.onnx", image_size=8, metadata={})
    assert "\n" not in str(e.value)


def test_quiet_loggers_restores_the_levels():
    logger = logging.getLogger("jax2onnx")
    logger.setLevel(logging.INFO)
    with onnx_model.quiet_loggers():
        assert logger.level == logging.ERROR
        assert logging.getLogger("onnx_ir").level == logging.ERROR
    assert logger.level == logging.INFO
