"""Smaller decoder variants derived from the verified float32 graph: float16 weights and int8 weights.

Both keep the float32 (and int64 label) interface, so the inference side feeds them exactly like the
float32 decoder; the metadata's vaectl.variant tells them apart.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from ..contract import metadata_of, parse_metadata

FLOAT16_MAX = float(np.finfo(np.float16).max)


def _retag(variant_model: onnx.ModelProto, source: onnx.ModelProto, variant: str) -> None:
    """The source graph's metadata with vaectl.variant changed (tools in between may drop it)."""
    info = parse_metadata({p.key: p.value for p in source.metadata_props})
    helper.set_model_props(variant_model, metadata_of(info, variant))


def _fp16_tensor(tensor: TensorProto) -> TensorProto:
    values = numpy_helper.to_array(tensor)
    if np.abs(values).max(initial=0.0) > FLOAT16_MAX:
        raise ValueError(f"weight {tensor.name or '(constant)'} exceeds the float16 range (|w| > {FLOAT16_MAX:g})")
    return numpy_helper.from_array(values.astype(np.float16), tensor.name)


def to_fp16(model: onnx.ModelProto) -> onnx.ModelProto:
    """Float16 weights and arithmetic inside, float32 inputs and outputs (a Cast at each end).

    Every op in these graphs has a float16 schema; where onnxruntime's CPU provider lacks a float16
    kernel it computes in float32 and casts (its InsertCastTransformer), so the file still halves.
    Raises ValueError for a weight that float16 cannot represent.

    Why not onnxruntime.transformers.float16.convert_float_to_float16(model, keep_io_types=True), the
    converter optimum uses: measured with onnxruntime 1.32 on a plain and a conditional row-context
    decoder, it appends the input Casts after the nodes that read them, and onnx.checker (which every
    exported graph must pass, export/verify.py) rejects the result as not topologically sorted.
    onnxruntime itself re-sorts and runs it with the same error as this pass (1.4e-4 and 9.1e-5 max
    pixel difference), so the library is fine for onnxruntime alone but not for a graph we publish.
    """
    fp16 = onnx.ModelProto()
    fp16.CopyFrom(model)
    graph = fp16.graph
    graph_inputs = {value.name for value in graph.input}
    for i, init in enumerate(graph.initializer):
        if init.data_type == TensorProto.FLOAT and init.name not in graph_inputs:  # an input's default stays float32
            graph.initializer[i].CopyFrom(_fp16_tensor(init))
    for node in graph.node:
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.TENSOR and attr.t.data_type == TensorProto.FLOAT:
                attr.t.CopyFrom(_fp16_tensor(attr.t))
        if node.op_type == "Cast":
            for attr in node.attribute:
                if attr.name == "to" and attr.i == TensorProto.FLOAT:
                    attr.i = TensorProto.FLOAT16
    casts_in, casts_out = [], []
    for value in graph.input:
        if value.type.tensor_type.elem_type != TensorProto.FLOAT:
            continue  # the int64 label passes through unchanged
        inner = f"{value.name}_fp16"
        for node in graph.node:
            node.input[:] = [inner if name == value.name else name for name in node.input]
        casts_in.append(
            helper.make_node("Cast", [value.name], [inner], name=f"cast_{value.name}_to_fp16", to=TensorProto.FLOAT16)
        )
    for value in graph.output:
        if value.type.tensor_type.elem_type != TensorProto.FLOAT:
            continue
        inner = f"{value.name}_fp16"
        for node in graph.node:  # the producer, and any node that reads the output inside the graph
            node.output[:] = [inner if name == value.name else name for name in node.output]
            node.input[:] = [inner if name == value.name else name for name in node.input]
        casts_out.append(
            helper.make_node("Cast", [inner], [value.name], name=f"cast_{value.name}_to_fp32", to=TensorProto.FLOAT)
        )
    nodes = casts_in + list(graph.node) + casts_out
    del graph.node[:]
    graph.node.extend(nodes)
    del graph.value_info[:]  # intermediate types changed; let shape inference redo them
    fp16 = onnx.shape_inference.infer_shapes(fp16, strict_mode=True)
    _retag(fp16, model, "fp16")
    return fp16


def _gemm_to_matmul(model: onnx.ModelProto) -> onnx.ModelProto:
    """Gemm(x, W, b) -> Add(MatMul(x, W'), b) with the weight transposed ahead of time.

    onnxruntime's dynamic quantizer handles MatMul but not Gemm, and the exporter writes every
    nn.Linear as Gemm: without this the int8 graph would keep all its dense weights in float32.
    """
    out = onnx.ModelProto()
    out.CopyFrom(model)
    graph = out.graph
    inits = {t.name: t for t in graph.initializer}
    nodes = []
    for node in graph.node:
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        plain = (
            attrs.get("alpha", 1.0) == 1.0
            and attrs.get("beta", 1.0) == 1.0
            and not attrs.get("transA", 0)
            and len(node.input) >= 2
            and node.input[1] in inits
        )
        if node.op_type != "Gemm" or not plain:
            nodes.append(node)
            continue
        weight = numpy_helper.to_array(inits[node.input[1]])
        if attrs.get("transB", 0):
            weight = weight.T
        weight_name = f"{node.input[1]}_matmul"
        graph.initializer.append(numpy_helper.from_array(np.ascontiguousarray(weight), weight_name))
        has_bias = len(node.input) > 2 and node.input[2]
        product = f"{node.output[0]}_matmul" if has_bias else node.output[0]
        nodes.append(helper.make_node("MatMul", [node.input[0], weight_name], [product], name=f"{node.name}_matmul"))
        if has_bias:
            nodes.append(helper.make_node("Add", [product, node.input[2]], [node.output[0]], name=f"{node.name}_bias"))
    del graph.node[:]
    graph.node.extend(nodes)
    used = {name for node in graph.node for name in node.input}
    kept = [t for t in graph.initializer if t.name in used]
    del graph.initializer[:]
    graph.initializer.extend(kept)
    return out


def to_int8(model: onnx.ModelProto) -> onnx.ModelProto:
    """Dynamic quantization (onnxruntime.quantization): int8 dense weights, activations quantized per batch.

    ConvTranspose has no dynamically quantized form in onnxruntime and stays float32; in these
    decoders the dense layers hold most of the weights.
    """
    from onnxruntime.quantization import QuantType, quantize_dynamic

    prepared = _gemm_to_matmul(model)
    with tempfile.TemporaryDirectory(prefix="vaectl-int8-") as tmp:
        path = Path(tmp) / "quantized.onnx"
        # reduce_range (7-bit weights): x86 CPUs without VNNI multiply u8 x s8 through int16 sums that
        # saturate; full 8-bit weights gave pixel errors up to 0.18 on a small trained MLP, 7-bit ~0.005.
        quantize_dynamic(
            prepared,
            path,
            weight_type=QuantType.QInt8,
            per_channel=True,
            reduce_range=True,
            op_types_to_quantize=["MatMul"],
            use_external_data_format=False,
        )
        int8 = onnx.load(str(path), load_external_data=False)
    _retag(int8, model, "int8")
    return int8
