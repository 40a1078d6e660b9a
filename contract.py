"""The contract between the two halves: what `vaectl export` writes and the torch-free side reads.

Torch-free, imported by export/ (to build and check graphs), infer/ (to load them) and the browser
explorer (its info.json). Nothing else states the tensor names or the metadata keys.

  encoder.onnx: image float32 [N, C, H, W] in [0, 1] (+ label int64 [N]) -> mu, logvar float32 [N, D]
  decoder.onnx: z float32 [N, D] (+ label int64 [N]) -> image float32 [N, C, H, W] in [0, 1]
A conditional model (config.num_classes > 0) adds the `label` input to both graphs. A guided model's
(config.guided) decoder has one more input, `guidance` float32 [1]: the weight w of l_r + w * (l_c - l_r),
where l_r are the logits of label K (= num_classes): "no label" for a model trained with label dropout
(config.no_label_class, whose graphs take label K), the average label otherwise. Feed config.guidance (the
model's own weight, in the metadata) unless you want another. It is a plain graph input, not one backed by
an initializer: onnxruntime-web (the browser explorer) rejects a feed for an initializer-backed input.
A row-context model
(config.row_context) adds one output to each, for scoring:
  encoder: context_logits [N, C, H, W], each pixel's logit term from the real rows above it
  decoder: base_logits [N, C, H, W], the logit term from z alone
so p(x | z) = Bernoulli(sigmoid(base_logits(z) + context_logits(x))); `image` is still made from z alone.

Every graph carries its VAEConfig as JSON in the metadata key `vaectl.config`, the only key parsed; the
loose `vaectl.<field>` keys are derived from it for humans reading `vaectl info` or netron.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from . import __version__
from .errors import UserInputError
from .models.config import VAEConfig

# The newest export format this vaectl reads. 2: a decoder guided against the average label (a conditional
# model with guidance != 1 and no label dropout), which a format-1 reader would run without its guidance
# feed; every other graph is still written as format 1, so older vaectl versions keep reading them.
FORMAT_VERSION = 2
ROLES = ("encoder", "decoder")
VARIANTS = ("fp32", "fp16", "int8")
BATCH = "N"  # the dynamic batch dimension, first in every input and output but `guidance`


# tensor names
IMAGE, Z, LABEL, GUIDANCE = "image", "z", "label", "guidance"
MU, LOGVAR = "mu", "logvar"
CONTEXT_LOGITS, BASE_LOGITS = "context_logits", "base_logits"

# the input each role is fed, and the extra output a row-context model adds for scoring
PRIMARY_INPUT = {"encoder": IMAGE, "decoder": Z}
SCORING_OUTPUT = {"encoder": CONTEXT_LOGITS, "decoder": BASE_LOGITS}

# A dimension whose KL to the prior is below this many nats carries (almost) nothing: its decoded
# images do not change along it. Informative dimensions of a trained VAE carry one nat or more.
# The one rule for "informative" (the training log, info, traverse and the explorer): informative_dims().
INFORMATIVE_KL = 0.05
INFORMATIVE_RULE = f"mean KL to N(0, 1) above {INFORMATIVE_KL:g} nats on the validation images"


def informative_dims(kl_per_dim) -> list[int]:
    """The latent dimensions that carry information, most informative first: KL above INFORMATIVE_KL nats."""
    kl = [float(v) for v in kl_per_dim]
    return sorted((d for d, v in enumerate(kl) if v > INFORMATIVE_KL), key=lambda d: -kl[d])


# readable copies of config fields, written beside vaectl.config (never parsed)
_LOOSE_KEYS = (
    "latent_dim",
    "channels",
    "height",
    "width",
    "likelihood",
    "arch",
    "dataset",
    "num_classes",
    "class_names",
)


@dataclass(frozen=True)
class TensorSpec:
    name: str
    dtype: str  # "float32" or "int64"
    shape: tuple  # BATCH first, then fixed sizes (guidance: (1,), no batch)
    default: float | None = None  # what to feed when the caller has no preference (guidance: the model's weight)


def graph_inputs(config: VAEConfig, role: str) -> tuple[TensorSpec, ...]:
    _check_role(role)
    first = (
        TensorSpec(IMAGE, "float32", (BATCH, *config.image_shape))
        if role == "encoder"
        else TensorSpec(Z, "float32", (BATCH, config.latent_dim))
    )
    inputs = [first]
    if config.num_classes > 0:
        inputs.append(TensorSpec(LABEL, "int64", (BATCH,)))
    if config.guided and role == "decoder":
        inputs.append(TensorSpec(GUIDANCE, "float32", (1,), default=config.guidance))
    return tuple(inputs)


def graph_outputs(config: VAEConfig, role: str) -> tuple[TensorSpec, ...]:
    _check_role(role)
    image = (BATCH, *config.image_shape)
    if role == "encoder":
        outputs = [
            TensorSpec(MU, "float32", (BATCH, config.latent_dim)),
            TensorSpec(LOGVAR, "float32", (BATCH, config.latent_dim)),
        ]
    else:
        outputs = [TensorSpec(IMAGE, "float32", image)]
    if config.row_context:
        outputs.append(TensorSpec(SCORING_OUTPUT[role], "float32", image))
    return tuple(outputs)


@dataclass(frozen=True)
class GraphInfo:
    """What one exported graph says about itself."""

    role: str
    config: VAEConfig
    checkpoint_sha256: str
    variant: str  # "fp32", "fp16" or "int8"
    vaectl_version: str
    format_version: int
    # mean KL(q(z_d | x) || N(0, 1)) of each latent dimension on the validation data at the checkpoint's
    # epoch: which dimensions carry information. None for graphs exported before vaectl recorded it.
    kl_per_dim: tuple[float, ...] | None = None

    def informative_dims(self) -> list[int] | None:
        """Latent dimensions that carry information (informative_dims), or None when unknown."""
        return None if self.kl_per_dim is None else informative_dims(self.kl_per_dim)


def format_version(config: VAEConfig) -> int:
    """The oldest export format that describes graphs of this config (see FORMAT_VERSION)."""
    return 2 if config.guided and not config.no_label_class else 1


def build_metadata(
    config: VAEConfig, role: str, checkpoint_sha256: str, variant: str = "fp32", kl_per_dim=None
) -> dict[str, str]:
    _check_role(role)
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}")
    fields = config.to_dict()
    loose = {
        f"vaectl.{key}": fields[key] if isinstance(fields[key], str) else json.dumps(fields[key]) for key in _LOOSE_KEYS
    }
    props = {
        "vaectl.format_version": str(format_version(config)),
        "vaectl.role": role,
        "vaectl.variant": variant,
        **loose,
        "vaectl.version": __version__,
        "vaectl.checkpoint_sha256": checkpoint_sha256,
        "vaectl.config": json.dumps(fields, sort_keys=True),
    }
    if kl_per_dim is not None:
        props["vaectl.kl_per_dim"] = json.dumps([round(float(v), 5) for v in kl_per_dim])
    return props


def metadata_of(info: GraphInfo, variant: str | None = None) -> dict[str, str]:
    """`info` written back as metadata (optionally as another variant): what a derived graph carries."""
    return build_metadata(info.config, info.role, info.checkpoint_sha256, variant or info.variant, info.kl_per_dim)


def parse_metadata(props: dict[str, str], source: str = "model") -> GraphInfo:
    """Metadata dict (e.g. onnxruntime's `custom_metadata_map`) -> GraphInfo, or UserInputError."""
    if "vaectl.role" not in props or "vaectl.config" not in props:
        raise UserInputError(f"{source}: not a vaectl export (no vaectl metadata); export it with `vaectl export`")
    try:
        version = int(props.get("vaectl.format_version", "0"))
    except ValueError:
        raise UserInputError(f"{source}: malformed vaectl.format_version") from None
    if version > FORMAT_VERSION:
        raise UserInputError(
            f"{source}: export format {version} is newer than this vaectl reads ({FORMAT_VERSION}); upgrade vaectl"
        )
    role = props["vaectl.role"]
    if role not in ROLES:
        raise UserInputError(f"{source}: unknown role {role!r}")
    try:
        config = VAEConfig.from_dict(json.loads(props["vaectl.config"]))
    except json.JSONDecodeError:
        raise UserInputError(f"{source}: malformed vaectl.config metadata") from None
    return GraphInfo(
        role=role,
        config=config,
        checkpoint_sha256=props.get("vaectl.checkpoint_sha256", ""),
        variant=props.get("vaectl.variant", "fp32"),
        vaectl_version=props.get("vaectl.version", ""),
        format_version=version,
        kl_per_dim=_parse_kl(props.get("vaectl.kl_per_dim"), config.latent_dim, source),
    )


def _parse_kl(text: str | None, latent_dim: int, source: str) -> tuple[float, ...] | None:
    if text is None:
        return None
    try:
        values = tuple(float(v) for v in json.loads(text))
    except (json.JSONDecodeError, TypeError, ValueError):
        raise UserInputError(f"{source}: malformed vaectl.kl_per_dim metadata") from None
    if len(values) != latent_dim:
        raise UserInputError(f"{source}: vaectl.kl_per_dim has {len(values)} values for {latent_dim} latent dimensions")
    return values


def _check_role(role: str) -> None:
    if role not in ROLES:
        raise ValueError(f"role must be one of {ROLES}, got {role!r}")
