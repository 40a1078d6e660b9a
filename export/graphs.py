"""PyTorch modules -> ONNX ModelProtos: one encoder graph and one decoder graph.

The graphs' inputs, outputs and metadata are the contract's (vaectl/contract.py); this module only
produces them from a VAE.

Exporter choice: the TorchScript-based exporter (torch.onnx.export(..., dynamo=False)). Both paths were
tried on these models (torch 2.14): they give the same operators (Gemm, Conv, ConvTranspose, Relu,
Reshape, Gather, Concat, Sigmoid) and the same numbers, but dynamo=True needs onnxscript (plus onnx-ir and
ml_dtypes) on the user's machine, takes 1.5-8 s per graph instead of ~0.1 s, prints progress to stdout
and stamps pkg.torch.* metadata on values (graphs ~35% larger for small conv models). The TorchScript
path is deprecated upstream but present; its deprecation notices are filtered (_exporter_notices_filtered).
Moving to dynamo=True is a change to `_torch_to_onnx`, plus the refining encoder's loop, which is scripted
here (RefiningEncoder) and would be a higher-order loop op there: everything after works on ModelProtos.
"""

from __future__ import annotations

import contextlib
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
from ..models.refine import refine_step

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
    """image (+ label | + refine_steps) -> (mu, logvar) [+ context_logits]. No sampling: drawing z is the
    runtime's job. A refining resnet's mu takes refine_steps[0] steps (models/refine.py); the exported graph
    runs them as a loop (RefiningEncoder), this eager module is its reference."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model, self.context = model, model.decoder.context
        self.config = model.config

    def forward(self, image: torch.Tensor, second: torch.Tensor | None = None):  # second: label or refine_steps
        if self.config.refine_steps:
            return self.model.encode(image, refine_steps=int(second[0]))  # (N, D), (N, D)
        mu, logvar = self.model.encoder(image, second)  # (N, D), (N, D)
        if not self.config.row_context:
            return mu, logvar
        return mu, logvar, self.context(image)  # ..., (N, C, H, W)


class RefineStepForExport(nn.Module):
    """(image, z, m, v, t) -> (z, m, v): one refinement step, traced as the loop's body."""

    def __init__(self, decoder: nn.Module):
        super().__init__()
        self.decoder = decoder

    def forward(self, image, z, m, v, t):
        return refine_step(self.decoder, image, z, m, v, t)


class RefiningEncoder(nn.Module):
    """(image, refine_steps) -> (mu, logvar): the traced encoder, then as many traced refinement steps as
    refine_steps says. Scripted, so that the steps export as one ONNX Loop over one copy of the step, whose
    count the caller feeds (a traced loop would be unrolled: a fixed count, and the step copied into the graph
    once per step)."""

    def __init__(self, encoder: torch.jit.ScriptModule, step: torch.jit.ScriptModule):
        super().__init__()
        self.encoder, self.step = encoder, step

    def forward(self, image: torch.Tensor, refine_steps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, logvar = self.encoder(image)
        z, m, v = mu, torch.zeros_like(mu), torch.zeros_like(mu)
        for i in range(int(refine_steps[0])):
            z, m, v = self.step(image, z, m, v, torch.tensor(float(i + 1)))
        return z, logvar


def refining_encoder(model: nn.Module) -> torch.jit.ScriptModule:
    """RefiningEncoder for a model with refine_steps, its parts traced on example images."""
    (image,) = example_inputs(model.config, "encoder")[:1]
    encoder = torch.jit.trace(model.encoder, (image,))
    mu, _ = model.encoder(image)
    step = torch.jit.trace(
        RefineStepForExport(model.decoder), (image, mu, torch.zeros_like(mu), torch.zeros_like(mu), torch.tensor(1.0))
    )
    return torch.jit.script(RefiningEncoder(encoder, step))


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
    if config.refine_steps and role == "encoder":
        inputs.append(torch.tensor([config.refine_steps]))
    return tuple(inputs)


@contextlib.contextmanager
def _exporter_notices_filtered():
    with warnings.catch_warnings():
        # The exporter's own deprecation notices (see the module docstring); TracerWarnings still show.
        warnings.filterwarnings(
            "ignore", message=r"You are using the legacy TorchScript-based ONNX export", category=DeprecationWarning
        )
        warnings.filterwarnings("ignore", message=r"The feature will be removed", category=DeprecationWarning)
        # torch.jit.trace and torch.jit.script (RefiningEncoder) are deprecated with the exporter they feed
        warnings.filterwarnings("ignore", message=r"`torch\.jit\.\w+` is deprecated", category=FutureWarning)
        # GroupNorm's batch-size check (F.group_norm) compares a traced size with 1 in Python: a TracerWarning
        # about a boolean, for a check that adds nothing to the graph. Other TracerWarnings still show.
        warnings.filterwarnings(
            "ignore", message=r"Converting a tensor to a Python boolean", module=r"torch\.nn\.functional"
        )
        yield


def _torch_to_onnx(
    module: nn.Module, args: tuple, input_names, output_names, opset: int, batched: set[str]
) -> onnx.ModelProto:
    with tempfile.TemporaryDirectory(prefix="vaectl-export-") as tmp:
        path = Path(tmp) / "graph.onnx"
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
    _share_equal_initializers(model.graph)
    return model


def _share_equal_initializers(graph: onnx.GraphProto) -> None:
    """Every weight read straight from one initializer per distinct value. The exporter keeps one copy of equal
    weights (equal GroupNorm weights of an untrained model, say) and passes the others through Identity nodes;
    onnxruntime folds those away, but not where the refining encoder's loop body reads them, and warns about
    it on every load, in the browser too."""
    first: dict[bytes, str] = {}
    rename: dict[str, str] = {}
    kept = []
    for tensor in graph.initializer:
        key = onnx.TensorProto()
        key.CopyFrom(tensor)
        key.name = ""
        value = key.SerializeToString(deterministic=True)
        if value in first:
            rename[tensor.name] = first[value]
        else:
            first[value] = tensor.name
            kept.append(tensor)
    outputs = {value.name for value in graph.output}
    weights = {tensor.name for tensor in graph.initializer}
    nodes = []
    for node in graph.node:
        if node.op_type == "Identity" and node.input[0] in weights and node.output[0] not in outputs:
            rename[node.output[0]] = rename.get(node.input[0], node.input[0])
        else:
            nodes.append(node)
    if not rename:
        return
    del graph.initializer[:]
    graph.initializer.extend(kept)
    del graph.node[:]
    graph.node.extend(nodes)

    def relabel(g: onnx.GraphProto) -> None:
        for node in g.node:
            node.input[:] = [rename.get(name, name) for name in node.input]
            for attribute in node.attribute:
                if attribute.type == onnx.AttributeProto.GRAPH:  # the loop's body reads the outer weights
                    relabel(attribute.g)

    relabel(graph)


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
    with torch.no_grad(), _exporter_notices_filtered():
        if role == "encoder" and config.refine_steps:
            module = refining_encoder(model)
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
