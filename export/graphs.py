"""PyTorch modules -> ONNX ModelProtos: one encoder graph and one decoder graph.

The graphs' inputs, outputs and metadata are the contract's (vaectl/contract.py); this module only
produces them from a VAE.

Exporter choice: the TorchScript-based exporter (torch.onnx.export(..., dynamo=False)). Both paths were
tried on these models (torch 2.14): they give the same operators (Gemm, Conv, ConvTranspose, Relu,
Reshape, Gather, Concat, Sigmoid) and the same numbers, but dynamo=True needs onnxscript (plus onnx-ir and
ml_dtypes) on the user's machine, takes 1.5-8 s per graph instead of ~0.1 s, prints progress to stdout
and stamps pkg.torch.* metadata on values (graphs ~35% larger for small conv models). The TorchScript
path is deprecated upstream but present; its two DeprecationWarnings are filtered at the call site below,
and moving to dynamo=True is a change to `_torch_to_onnx` alone: everything after it works on ModelProtos.
"""

from __future__ import annotations

import tempfile
import warnings
from pathlib import Path

import onnx
import onnx.numpy_helper
import torch
from torch import nn

from .. import contract
from ..contract import DEFAULT_OPSET, MAX_OPSET, MIN_OPSET, build_metadata
from ..errors import UserInputError, arg
from ..models import VAEConfig

# Opset 17 is implemented completely by every onnxruntime the base install allows (>= 1.24; ORT has
# covered opset 17 since 1.13), and it keeps the graphs loadable by older runtimes (web, mobile).

PROTOBUF_LIMIT = 2**31 - 1  # a single-file ONNX model (weights embedded) cannot exceed 2 GB
RANDOM_OPS = {
    "RandomNormal",
    "RandomNormalLike",
    "RandomUniform",
    "RandomUniformLike",
    "Multinomial",
    "Bernoulli",
    "Dropout",
}


class EncoderForExport(nn.Module):
    """image (+ label) -> (mu, logvar) [+ context_logits]. No sampling: drawing z is the runtime's job. The
    refinement steps of a resnet (models/refine.py) are in the graph: they run the decoder's weights."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model, self.context = model, model.decoder.context
        self.row_context = model.config.row_context

    def forward(self, image: torch.Tensor, label: torch.Tensor | None = None):
        mu, logvar = self.model.encode(image, label)  # (N, D), (N, D): mu refined where the config says
        if not self.row_context:
            return mu, logvar
        return mu, logvar, self.context(image)  # ..., (N, C, H, W)


class DecoderForExport(nn.Module):
    """z (+ label) (+ guidance) -> image in [0, 1]: the decoder's pixel logits through a sigmoid [+ base_logits].

    A guided decoder's image is made with the guided logits; base_logits (for scoring) stay the conditional ones."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.decoder = model.decoder
        self.row_context = model.config.row_context

    def forward(self, z: torch.Tensor, label: torch.Tensor | None = None, guidance: torch.Tensor | None = None):
        image = torch.sigmoid(self.decoder(z, label, guidance=guidance))  # (N, C, H, W)
        if not self.row_context:
            return image
        return image, self.decoder.base_logits(z, label)  # ..., (N, C, H, W)


def module_for_export(model: nn.Module, role: str) -> nn.Module:
    """The torch module whose inputs and outputs are the contract's graph of `role`."""
    return EncoderForExport(model) if role == "encoder" else DecoderForExport(model)


def check_opset(opset: int | None) -> int:
    opset = DEFAULT_OPSET if opset is None else opset
    if not isinstance(opset, int) or not MIN_OPSET <= opset <= MAX_OPSET:
        raise UserInputError(f"{arg('opset')} must be between {MIN_OPSET} and {MAX_OPSET}, got {opset}")
    return opset


ONNX_TYPES = {"float32": onnx.TensorProto.FLOAT, "int64": onnx.TensorProto.INT64}


def io_spec(config: VAEConfig, role: str) -> tuple[dict[str, tuple], dict[str, tuple]]:
    """The contract's inputs and outputs as {name: (onnx elem type, shape)}, in graph order."""

    def as_onnx(specs):
        return {t.name: (ONNX_TYPES[t.dtype], t.shape) for t in specs}

    return as_onnx(contract.graph_inputs(config, role)), as_onnx(contract.graph_outputs(config, role))


def example_inputs(config: VAEConfig, role: str, n: int = 2) -> tuple[torch.Tensor, ...]:
    """Tracing inputs. n = 2, not 1, so that no size-1 dimension gets special-cased in the trace."""
    g = torch.Generator().manual_seed(0)
    first = (
        torch.rand(n, *config.image_shape, generator=g)
        if role == "encoder"
        else torch.randn(n, config.latent_dim, generator=g)
    )
    inputs = [first]
    if config.conditional:
        inputs.append(torch.arange(n, dtype=torch.int64) % config.num_classes)
    if config.guided and role == "decoder":
        inputs.append(torch.tensor([config.guidance]))
    return tuple(inputs)


def _torch_to_onnx(
    module: nn.Module, args: tuple, input_names, output_names, opset: int, batched: set[str]
) -> onnx.ModelProto:
    with tempfile.TemporaryDirectory(prefix="vaectl-export-") as tmp:
        path = Path(tmp) / "graph.onnx"
        with warnings.catch_warnings():
            # The exporter's own deprecation notices (see the module docstring); TracerWarnings still show.
            warnings.filterwarnings(
                "ignore", message=r"You are using the legacy TorchScript-based ONNX export", category=DeprecationWarning
            )
            warnings.filterwarnings("ignore", message=r"The feature will be removed", category=DeprecationWarning)
            # GroupNorm's batch-size check (F.group_norm) compares a traced size with 1 in Python: a TracerWarning
            # about a boolean, for a check that adds nothing to the graph. Other TracerWarnings still show.
            warnings.filterwarnings(
                "ignore", message=r"Converting a tensor to a Python boolean", module=r"torch\.nn\.functional"
            )
            torch.onnx.export(
                module,
                args,
                str(path),
                dynamo=False,
                opset_version=opset,
                export_params=True,
                input_names=list(input_names),
                output_names=list(output_names),
                dynamic_axes={name: {0: contract.BATCH} for name in (*input_names, *output_names) if name in batched},
            )
        # load_external_data=False: a file beside it would mean weights were not embedded; checked below
        model = onnx.load(str(path), load_external_data=False)
    if any(t.data_location == onnx.TensorProto.EXTERNAL for t in model.graph.initializer):
        raise RuntimeError("the exporter wrote weights to an external data file; expected them embedded")
    _share_equal_constants(model.graph)
    return model


def _share_equal_constants(graph: onnx.GraphProto) -> None:
    """One Constant node per distinct value. The exporter folds a constant afresh for every node that reads
    it: an encoder with refinement steps (models/refine.py) would otherwise hold the same matrices once per
    step, several megabytes and thousands of nodes."""
    first: dict[bytes, str] = {}
    rename: dict[str, str] = {}
    kept = []
    for node in graph.node:
        for i, name in enumerate(node.input):
            node.input[i] = rename.get(name, name)
        if node.op_type == "Constant" and len(node.attribute) == 1 and node.attribute[0].name == "value":
            value = onnx.TensorProto()
            value.CopyFrom(node.attribute[0].t)
            value.name = ""  # the same value under another name is the same constant
            key = value.SerializeToString(deterministic=True)
            if key in first:
                rename[node.output[0]] = first[key]
                continue
            first[key] = node.output[0]
        kept.append(node)
    for value in graph.output:
        if value.name in rename:  # an output is never a shared constant's alias: keep that node
            raise RuntimeError(f"graph output {value.name} is a constant")
    del graph.node[:]
    graph.node.extend(kept)


def _set_value_info(value: onnx.ValueInfoProto, elem_type: int, shape: tuple) -> None:
    """Declare the exact type and shape: batch symbolic, every other dimension fixed."""
    value.type.tensor_type.elem_type = elem_type
    dims = value.type.tensor_type.shape.dim
    del dims[:]
    for size in shape:
        dim = dims.add()
        if isinstance(size, str):
            dim.dim_param = size
        else:
            dim.dim_value = size


def export_graph(
    model: nn.Module,
    role: str,
    opset: int,
    checkpoint_sha256: str,
    kl_per_dim=None,
    prior: dict | None = None,
    hold_out_seed: int | None = None,
) -> onnx.ModelProto:
    """One ONNX graph (role 'encoder' or 'decoder') from a VAE, with interface and metadata set (a decoder's
    may include the fitted prior, contract.PRIOR_KEY; hold_out_seed: the run's --seed, contract.HOLD_OUT_KEY)."""
    config = model.trained_config()  # with a learned likelihood sigma: the graphs' metadata carries it
    module = module_for_export(model, role)
    module.eval()
    param_bytes = sum(p.numel() * p.element_size() for p in module.parameters())
    if param_bytes > PROTOBUF_LIMIT:
        raise UserInputError(
            f"the {role} has {param_bytes / 2**30:.1f} GiB of weights; a single-file ONNX graph holds at most 2 GiB"
        )
    inputs, outputs = io_spec(config, role)
    batched = {name for name, (_, shape) in {**inputs, **outputs}.items() if shape[0] == contract.BATCH}
    with torch.no_grad():
        graph_model = _torch_to_onnx(module, example_inputs(config, role), inputs, outputs, opset, batched)
    graph = graph_model.graph
    # The tracer leaves symbolic names for non-batch output dims (e.g. 'Sigmoidimage_dim_2'); pin them.
    for value in graph.input:
        _set_value_info(value, *inputs[value.name])
    for value in graph.output:
        _set_value_info(value, *outputs[value.name])
    graph.name = f"vaectl_{role}"
    graph_model.doc_string = f"vaectl {role}: see the vaectl.* metadata_props"
    onnx.helper.set_model_props(
        graph_model,
        build_metadata(
            config, role, checkpoint_sha256, "fp32", kl_per_dim, prior if role == "decoder" else None, hold_out_seed
        ),
    )
    return graph_model
