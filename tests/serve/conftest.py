"""A hand-made ONNX model for the serving tests: the mean of each channel of the pixels."""

from __future__ import annotations

import onnx
import pytest
from onnx import TensorProto, helper


def _channel_means_model(path, size: int) -> str:
    """ONNX graph: pixels [B, S, S, 3] -> embeddings [B, 3], the mean of each channel."""
    node = helper.make_node("ReduceMean", ["pixels", "axes"], ["embeddings"], keepdims=0)
    graph = helper.make_graph(
        [node],
        "means",
        [helper.make_tensor_value_info("pixels", TensorProto.FLOAT, ["B", size, size, 3])],
        [helper.make_tensor_value_info("embeddings", TensorProto.FLOAT, ["B", 3])],
        [helper.make_tensor("axes", TensorProto.INT64, [2], [1, 2])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9  # readable by every onnxruntime the `serve` extra admits
    onnx.save(model, str(path))
    return str(path)


@pytest.fixture(scope="session")
def channel_means_model():
    """channel_means_model(path, image_size) writes the model and returns its path."""
    return _channel_means_model
