"""Hand-built ONNX graphs for tests: hostile or broken models that `vaectl export` would never write.

Needs the `onnx` package (dev venv); the code under test does not.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper

from vaectl.contract import build_metadata
from vaectl.models import VAEConfig

LATENT_DIM = 4
IMAGE_SIDE = 28
SECRET_BYTES = bytes(range(200, 256)) * 14  # 784 recognisable bytes: one 28x28 "image"


def _model(nodes, initializers, role: str = "decoder", latent_dim: int = LATENT_DIM) -> onnx.ModelProto:
    graph = helper.make_graph(
        nodes,
        f"test_{role}",
        [helper.make_tensor_value_info("z", TensorProto.FLOAT, ["N", latent_dim])],
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 1, IMAGE_SIDE, IMAGE_SIDE])],
        initializer=initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    config = VAEConfig(arch="mlp", latent_dim=latent_dim, hidden=(8,))
    helper.set_model_props(model, build_metadata(config, role, "0" * 64))
    return model


def _image_from_weights(weights: TensorProto) -> tuple[list, list]:
    """image[n] = weights / 255 for every n (z only sets the batch size)."""
    consts = [
        helper.make_tensor("shape", TensorProto.INT64, [4], [-1, 1, 1, 1]),
        helper.make_tensor("zero", TensorProto.FLOAT, [], [0.0]),
        helper.make_tensor("scale", TensorProto.FLOAT, [], [1 / 255]),
        helper.make_tensor("axes", TensorProto.INT64, [1], [1]),
    ]
    nodes = [
        helper.make_node("Cast", [weights.name], ["wf"], to=TensorProto.FLOAT),
        helper.make_node("Mul", ["wf", "scale"], ["ws"]),
        helper.make_node("ReduceSum", ["z", "axes"], ["s"], keepdims=1),
        helper.make_node("Mul", ["s", "zero"], ["s0"]),
        helper.make_node("Reshape", ["s0", "shape"], ["s4"]),
        helper.make_node("Add", ["ws", "s4"], ["image"]),
    ]
    return nodes, [weights, *consts]


def external_data_decoder(path: Path, location: str, offset: int = 0, length: int = len(SECRET_BYTES)) -> Path:
    """A vaectl-tagged decoder whose only weight lives in an external file at `location`."""
    weights = TensorProto()
    weights.name = "w"
    weights.data_type = TensorProto.UINT8
    weights.dims.extend([1, 1, IMAGE_SIDE, IMAGE_SIDE])
    weights.data_location = TensorProto.EXTERNAL
    for key, value in (("location", location), ("offset", str(offset)), ("length", str(length))):
        entry = weights.external_data.add()
        entry.key, entry.value = key, value
    nodes, inits = _image_from_weights(weights)
    path.write_bytes(_model(nodes, inits).SerializeToString())
    return path


def embedded_decoder(path: Path, data: bytes = SECRET_BYTES) -> Path:
    """The same graph with its weight embedded: loads fine and outputs `data` as the image."""
    weights = helper.make_tensor("w", TensorProto.UINT8, [1, 1, IMAGE_SIDE, IMAGE_SIDE], np.frombuffer(data, np.uint8))
    nodes, inits = _image_from_weights(weights)
    path.write_bytes(_model(nodes, inits).SerializeToString())
    return path


def nan_decoder(path: Path) -> Path:
    """A vaectl-tagged decoder whose pixels are sqrt(-1) = NaN."""
    weights = helper.make_tensor("w", TensorProto.FLOAT, [1, 1, IMAGE_SIDE, IMAGE_SIDE], [-1.0] * IMAGE_SIDE**2)
    nodes, inits = _image_from_weights(weights)
    nodes[0] = helper.make_node("Sqrt", ["w"], ["wf"])
    path.write_bytes(_model(nodes, inits).SerializeToString())
    return path


def external_data_in_subgraph(path: Path, location: str) -> Path:
    """External data hidden in a tensor attribute of a node inside an If branch (not an initializer)."""
    weights = TensorProto()
    weights.name = "hidden"
    weights.data_type = TensorProto.FLOAT
    weights.dims.extend([1])
    weights.data_location = TensorProto.EXTERNAL
    entry = weights.external_data.add()
    entry.key, entry.value = "location", location
    branch = helper.make_graph(
        [helper.make_node("Constant", [], ["c"], value=weights)],
        "branch",
        [],
        [helper.make_tensor_value_info("c", TensorProto.FLOAT, [1])],
    )
    inner, inits = _image_from_weights(
        helper.make_tensor("w", TensorProto.UINT8, [1, 1, IMAGE_SIDE, IMAGE_SIDE], np.zeros(IMAGE_SIDE**2, np.uint8))
    )
    cond = helper.make_tensor("cond", TensorProto.BOOL, [], [True])
    nodes = [helper.make_node("If", ["cond"], ["unused"], then_branch=branch, else_branch=branch), *inner]
    path.write_bytes(_model(nodes, [*inits, cond]).SerializeToString())
    return path


def colour_decoder(path: Path, side: int = 8) -> Path:
    """A vaectl-tagged 3-channel decoder: image = sigmoid(z @ W) as (N, 3, side, side), W fixed random."""
    pixels = 3 * side * side
    w = np.random.default_rng(0).normal(size=(LATENT_DIM, pixels)).astype(np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["z", "w"], ["logits"]),
            helper.make_node("Sigmoid", ["logits"], ["flat"]),
            helper.make_node("Reshape", ["flat", "shape"], ["image"]),
        ],
        "test_colour_decoder",
        [helper.make_tensor_value_info("z", TensorProto.FLOAT, ["N", LATENT_DIM])],
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 3, side, side])],
        initializer=[
            helper.make_tensor("w", TensorProto.FLOAT, w.shape, w.ravel()),
            helper.make_tensor("shape", TensorProto.INT64, [4], [-1, 3, side, side]),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    config = VAEConfig(arch="mlp", latent_dim=LATENT_DIM, hidden=(8,), channels=3, height=side, width=side)
    helper.set_model_props(model, build_metadata(config, "decoder", "0" * 64))
    path.write_bytes(model.SerializeToString())
    return path
