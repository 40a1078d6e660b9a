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
A resnet that refines its latent (config.refine_steps > 0, models/refine.py) has an encoder with one more
input, `refine_steps` int64 [1]: how many refinement steps to take from the encoder's mu (an ONNX Loop); feed
config.refine_steps unless you want another number (0: the encoder's mu as it is). A row-context model
(config.row_context) adds one output to each, for scoring:
  encoder: context_logits [N, C, H, W], each pixel's logit term from the real rows above it
  decoder: base_logits [N, C, H, W], the logit term from z alone
so p(x | z) = Bernoulli(sigmoid(base_logits(z) + context_logits(x))); `image` is still made from z alone.

Every graph carries its VAEConfig as JSON in the metadata key `vaectl.config`; the loose `vaectl.<field>`
keys are derived from it for humans reading `vaectl info` or netron (never parsed).

The prior to sample from: a decoder may carry `vaectl.prior`, JSON, the density `vaectl generate` draws z
from by default (without it: N(0, I)). Its one kind so far, "gmm", a mixture of full-covariance Gaussians:
  {"kind": "gmm", "latent_dim": D, "by_label": false,
   "mixtures": [{"weights": ARRAY (K,), "means": ARRAY (K, D), "cholesky": ARRAY (K, D, D)}],
   "fitted_to": {...}}
  A mixture may cover some coordinates only: with "dims": [d_1 < ... < d_A] (A of the D latent indices) its
  "means" are (K, A) and its "cholesky" (K, A, A), for z[dims], and every other coordinate is N(0, 1) and
  independent of the rest. vaectl writes it so for a model that leaves dimensions unused (a decoder that
  carries one says export format 3); it is the same density as the mixture over all D coordinates whose
  means are 0 and whose factors are the identity on the others, which is how vaectl reads it.
  ARRAY: a base64 string of the values as little-endian float64, row-major (numpy:
  np.frombuffer(base64.b64decode(s), "<f8").reshape(shape), K = the weights' count), which is what vaectl
  writes: `vaectl generate` reads it on every run, and base64 reads far faster than JSON numbers
  (docs/benchmarks.md). A nested JSON list of numbers is read as well.
  p(z) = sum_k weights[k] * N(z; means[k], L_k L_k^T), with L_k = cholesky[k] lower-triangular (positive
  diagonal). Sample: k ~ Categorical(weights), z = means[k] + L_k @ e with e ~ N(0, I). log p(z):
  logsumexp_k(log weights[k] - sum(log diag L_k) - |L_k^-1 (z - means[k])|^2 / 2) - (D / 2) log(2 pi).
  "by_label": true (conditional models) gives one mixture per label: mixtures[y] is the prior of label y.
  "fitted_to" records what it was fitted to (data, images, draws, seed, the rule that chose K); not parsed.
A reader that does not know the prior (or its kind) samples N(0, I), which is still a valid sampler of the
model: so a prior over all D coordinates does not change the export format's number. "dims" does: a format-2
reader would refuse its arrays as malformed, and format 3 makes it say "upgrade vaectl" instead.
"""

from __future__ import annotations

import base64
import functools
import json
from dataclasses import dataclass

import numpy as np

from . import __version__
from .errors import UserInputError
from .models.config import VAEConfig

# The newest export format this vaectl reads. 2: a decoder guided against the average label (a conditional
# model with guidance != 1 and no label dropout), which a format-1 reader would run without its guidance
# feed. 3: a decoder whose prior has a mixture over some coordinates only ("dims"). 4: an encoder that refines
# its mu (config.refine_steps), with the refine_steps input. Every other graph is still written as format 1,
# so older vaectl versions keep reading them.
FORMAT_VERSION = 4
ROLES = ("encoder", "decoder")
VARIANTS = ("fp32", "fp16", "int8")
# the ONNX opsets export writes: 13 for Flatten/Reshape/Gemm/Sigmoid in their current forms (dynamic
# quantization needs >= 11); 20 is the TorchScript exporter's ceiling in torch 2.10-2.14
DEFAULT_OPSET, MIN_OPSET, MAX_OPSET = 17, 13, 20
BATCH = "N"  # the dynamic batch dimension, first in every input and output but `guidance` and `refine_steps`


# tensor names
IMAGE, Z, LABEL, GUIDANCE, REFINE_STEPS = "image", "z", "label", "guidance", "refine_steps"
MU, LOGVAR = "mu", "logvar"
CONTEXT_LOGITS, BASE_LOGITS = "context_logits", "base_logits"

# metadata keys that are read back (the loose "vaectl.<field>" keys are for humans only)
ROLE_KEY, CONFIG_KEY, FORMAT_KEY, VARIANT_KEY = (
    "vaectl.role",
    "vaectl.config",
    "vaectl.format_version",
    "vaectl.variant",
)
VERSION_KEY, CHECKPOINT_KEY, KL_KEY = "vaectl.version", "vaectl.checkpoint_sha256", "vaectl.kl_per_dim"
# the --seed of the run: for data without a test split, which images it held out (data.load_data)
HOLD_OUT_KEY = "vaectl.hold_out_seed"
# the fitted prior in a decoder's metadata, and its kinds
PRIOR_KEY = "vaectl.prior"
PRIOR_GMM = "gmm"

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
    shape: tuple  # BATCH first, then fixed sizes (guidance, refine_steps: (1,), no batch)
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
    if config.refine_steps and role == "encoder":
        inputs.append(TensorSpec(REFINE_STEPS, "int64", (1,), default=config.refine_steps))
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
    # the fitted prior (PRIOR_KEY's JSON, checked when its kind is known), or None: sample from N(0, I)
    prior: dict | None = None
    # the seed that chose the training run's hold-out (HOLD_OUT_KEY), or None when not recorded: scoring the
    # graphs on a folder without a test split holds out the images the run held out, not ones it trained on
    hold_out_seed: int | None = None

    def informative_dims(self) -> list[int] | None:
        """Latent dimensions that carry information (informative_dims), or None when unknown."""
        return None if self.kl_per_dim is None else informative_dims(self.kl_per_dim)


def format_version(config: VAEConfig, prior: dict | None = None, role: str = "decoder") -> int:
    """The oldest export format that describes this role's graph of this config and prior (see FORMAT_VERSION)."""
    if config.refine_steps and role == "encoder":
        return 4
    if prior is not None and any("dims" in m for m in prior.get("mixtures") or () if isinstance(m, dict)):
        return 3
    return 2 if config.guided and not config.no_label_class else 1


def build_metadata(
    config: VAEConfig,
    role: str,
    checkpoint_sha256: str,
    variant: str = "fp32",
    kl_per_dim=None,
    prior=None,
    hold_out_seed: int | None = None,
) -> dict[str, str]:
    _check_role(role)
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}")
    fields = config.to_dict()
    loose = {
        f"vaectl.{key}": fields[key] if isinstance(fields[key], str) else json.dumps(fields[key]) for key in _LOOSE_KEYS
    }
    props = {
        FORMAT_KEY: str(format_version(config, prior, role)),
        ROLE_KEY: role,
        VARIANT_KEY: variant,
        **loose,
        VERSION_KEY: __version__,
        CHECKPOINT_KEY: checkpoint_sha256,
        CONFIG_KEY: json.dumps(fields, sort_keys=True),
    }
    if kl_per_dim is not None:
        props[KL_KEY] = json.dumps([round(float(v), 5) for v in kl_per_dim])
    if prior is not None:
        if role != "decoder":
            raise ValueError("only a decoder carries a prior")
        check_prior(prior, config, "prior")
        props[PRIOR_KEY] = json.dumps(prior, sort_keys=True)
    if hold_out_seed is not None:
        props[HOLD_OUT_KEY] = str(int(hold_out_seed))
    return props


def metadata_of(info: GraphInfo, variant: str | None = None) -> dict[str, str]:
    """`info` written back as metadata (optionally as another variant): what a derived graph carries."""
    return build_metadata(
        info.config,
        info.role,
        info.checkpoint_sha256,
        variant or info.variant,
        info.kl_per_dim,
        info.prior,
        info.hold_out_seed,
    )


def parse_metadata(props: dict[str, str], source: str = "model") -> GraphInfo:
    """Metadata dict (e.g. onnxruntime's `custom_metadata_map`) -> GraphInfo, or UserInputError."""
    if ROLE_KEY not in props or CONFIG_KEY not in props:
        raise UserInputError(f"{source}: not a vaectl export (no vaectl metadata); export it with `vaectl export`")
    try:
        version = int(props.get(FORMAT_KEY, "0"))
    except ValueError:
        raise UserInputError(f"{source}: malformed vaectl.format_version") from None
    if version > FORMAT_VERSION:
        raise UserInputError(
            f"{source}: export format {version} is newer than this vaectl reads ({FORMAT_VERSION}); upgrade vaectl"
        )
    role = props[ROLE_KEY]
    if role not in ROLES:
        raise UserInputError(f"{source}: unknown role {role!r}")
    try:
        config = VAEConfig.from_dict(json.loads(props[CONFIG_KEY]))
    except json.JSONDecodeError:
        raise UserInputError(f"{source}: malformed vaectl.config metadata") from None
    return GraphInfo(
        role=role,
        config=config,
        checkpoint_sha256=props.get(CHECKPOINT_KEY, ""),
        variant=props.get(VARIANT_KEY, "fp32"),
        vaectl_version=props.get(VERSION_KEY, ""),
        format_version=version,
        kl_per_dim=_parse_kl(props.get(KL_KEY), config.latent_dim, source),
        prior=_parse_prior(props.get(PRIOR_KEY), config, role, source),
        hold_out_seed=_parse_seed(props.get(HOLD_OUT_KEY), source),
    )


def _parse_seed(text: str | None, source: str) -> int | None:
    if text is None:
        return None
    try:
        return int(text)
    except ValueError:
        raise UserInputError(f"{source}: malformed {HOLD_OUT_KEY} metadata (not an integer)") from None


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


def _parse_prior(text: str | None, config: VAEConfig, role: str, source: str) -> dict | None:
    if text is None:
        return None
    try:
        prior = json.loads(text)
    except json.JSONDecodeError:
        raise UserInputError(f"{source}: malformed {PRIOR_KEY} metadata (not JSON)") from None
    if role != "decoder":
        raise UserInputError(f"{source}: an {role} with a {PRIOR_KEY}; only decoders carry one")
    check_prior(prior, config, source)
    return prior


def check_prior(prior, config: VAEConfig, source: str) -> None:
    """UserInputError unless `prior` is a well-formed PRIOR_KEY document for this model (a kind this vaectl
    does not know passes unchecked: readers then sample N(0, I))."""
    if not isinstance(prior, dict) or not isinstance(prior.get("kind"), str):
        raise UserInputError(f"{source}: malformed {PRIOR_KEY} metadata (no kind)")
    if prior["kind"] != PRIOR_GMM:
        return
    d = config.latent_dim

    def bad(why: str) -> UserInputError:
        return UserInputError(f"{source}: malformed {PRIOR_KEY} metadata ({why})")

    if prior.get("latent_dim") != d:
        raise bad(f"latent_dim {prior.get('latent_dim')!r}, the model's is {d}")
    mixtures = prior.get("mixtures")
    if not isinstance(mixtures, list) or not mixtures:
        raise bad("no mixtures")
    if prior.get("by_label", False):
        if len(mixtures) != config.label_slots:
            raise bad(f"{len(mixtures)} mixtures for the {config.label_slots} labels of the model")
    elif len(mixtures) != 1:
        raise bad(f"{len(mixtures)} mixtures without by_label")
    for m in mixtures:
        if isinstance(m, dict) and "dims" in m:
            try:
                _dims(m["dims"], d)
            except (TypeError, ValueError) as e:
                raise bad(str(e)) from None
        try:  # as written: a mixture over some dims is checked there (what fills the others is well-formed)
            w, mu, chol = mixture_arrays(m, d, full=False)
        except (KeyError, TypeError, ValueError):
            raise bad("a mixture needs numeric weights, means and cholesky") from None
        k, a = len(w), len(m["dims"]) if "dims" in m else d
        if w.shape != (k,) or k < 1 or mu.shape != (k, a) or chol.shape != (k, a, a):
            raise bad(f"shapes {w.shape}, {mu.shape}, {chol.shape}; expected (K,), (K, {a}), (K, {a}, {a})")
        if not (np.isfinite(w).all() and np.isfinite(mu).all() and np.isfinite(chol).all()):
            raise bad("NaN or inf values")
        if (w <= 0).any() or abs(w.sum() - 1) > 1e-6:
            raise bad("weights must be positive and sum to 1")
        if (np.diagonal(chol, axis1=1, axis2=2) <= 0).any() or np.triu(chol, 1).any():
            raise bad("cholesky factors must be lower-triangular with a positive diagonal")


def encode_floats(values) -> str:
    """An array as the prior's JSON carries it: base64 of its values as little-endian float64, row-major."""
    return base64.b64encode(np.ascontiguousarray(values, dtype="<f8").tobytes()).decode("ascii")


# The prior document's keys are spelled here only: the fit writes it through prior_document and
# mixture_document, vaectl.prior reads it through the readers below (and mixture_arrays).


def prior_document(latent_dim: int, by_label: bool, mixtures: list[dict], fitted_to: dict | None = None) -> dict:
    """A "gmm" PRIOR_KEY document: `mixtures` are mixture_document's entries (one per label with by_label),
    `fitted_to` what it was fitted to (for people: never parsed)."""
    doc = {"kind": PRIOR_GMM, "latent_dim": latent_dim, "by_label": by_label, "mixtures": mixtures}
    return doc if fitted_to is None else {**doc, "fitted_to": fitted_to}


def mixture_document(weights, means, cholesky, dims=None) -> dict:
    """One mixture of a prior document, each array as encode_floats' base64 (float64, exactly); with `dims`,
    a mixture over those coordinates of the latent only (means (K, A), cholesky (K, A, A))."""
    arrays = {"weights": encode_floats(weights), "means": encode_floats(means), "cholesky": encode_floats(cholesky)}
    return arrays if dims is None else {"dims": [int(d) for d in dims], **arrays}


def prior_kind(prior: dict | None) -> str | None:
    """A prior document's kind (PRIOR_GMM, or another a newer vaectl writes); None without a document."""
    return None if prior is None else prior.get("kind")


def prior_latent_dim(prior: dict) -> int:
    """A prior document's latent_dim, as written."""
    return prior["latent_dim"]


def prior_by_label(prior: dict) -> bool:
    """Whether a prior document has one mixture per label (absent: one for every label)."""
    return bool(prior.get("by_label", False))


def prior_mixtures(prior: dict) -> list:
    """A prior document's mixture entries (mixture_arrays reads each)."""
    return prior["mixtures"]


def mixture_dims(mixture: dict) -> list[int] | None:
    """The coordinates a mixture entry covers, or None when it covers all of them."""
    return mixture.get("dims")


def prior_fitted_to(prior: dict) -> dict:
    """What a prior document says it was fitted to ({} when it does not say)."""
    return prior.get("fitted_to") or {}


def mixture_arrays(mixture: dict, latent_dim: int, full: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A mixture entry's weights (K,), means (K, D) and cholesky (K, D, D) as float64 arrays, each given as
    encode_floats' string or a nested list of numbers; a mixture over "dims" only comes back over all D
    coordinates (means 0 and identity factors on the others). An array of another size keeps its own shape,
    for the caller's check to report; KeyError, TypeError or ValueError when one is missing or not numbers,
    or when "dims" is not an ascending list of distinct coordinates. full=False: a mixture over "dims" as it
    is written, (K, A) and (K, A, A)."""
    weights = _floats(mixture["weights"], None)
    k = len(weights) if weights.ndim == 1 else 0
    dims = _dims(mixture["dims"], latent_dim) if "dims" in mixture else None
    a = latent_dim if dims is None else len(dims)
    means = _floats(mixture["means"], (k, a))
    cholesky = _floats(mixture["cholesky"], (k, a, a))
    if dims is None or not full or means.shape != (k, a) or cholesky.shape != (k, a, a):
        return weights, means, cholesky
    return (weights, *over_all_dims(means, cholesky, dims, latent_dim))


def over_all_dims(means: np.ndarray, cholesky: np.ndarray, dims, latent_dim: int) -> tuple[np.ndarray, np.ndarray]:
    """A mixture's means (K, A) and cholesky (K, A, A) over the ascending coordinates `dims`, as the same density
    over all `latent_dim` of them: (K, D) means 0 and (K, D, D) factors the identity on the others (still
    lower-triangular, as ascending dims keep each entry below the diagonal)."""
    k, dims = len(means), np.asarray(dims)
    full_means = np.zeros((k, latent_dim))
    full_means[:, dims] = means
    full_cholesky = np.tile(np.eye(latent_dim), (k, 1, 1))
    full_cholesky[:, dims[:, None], dims[None, :]] = cholesky
    return full_means, full_cholesky


def _dims(value, latent_dim: int) -> np.ndarray:
    """A mixture's "dims" as an index array; TypeError or ValueError (saying why) unless it is a non-empty list
    of distinct ascending coordinates of the latent."""
    if not isinstance(value, list) or not value or not all(type(d) is int for d in value):
        raise TypeError("dims must be a non-empty list of integers")
    dims = np.asarray(value, dtype=np.int64)
    if dims[0] < 0 or dims[-1] >= latent_dim or (np.diff(dims) <= 0).any():
        raise ValueError(f"dims must be distinct coordinates 0 .. {latent_dim - 1} in ascending order")
    return dims


def _floats(value, shape: tuple[int, ...] | None) -> np.ndarray:
    if not isinstance(value, str):
        return np.asarray(value, dtype=np.float64)
    flat = _decoded(value)
    return flat.reshape(shape) if shape is not None and flat.size == np.prod(shape) else flat


@functools.lru_cache(maxsize=16)
def _decoded(text: str) -> np.ndarray:
    # cached: loading a decoder checks its prior (check_prior) and then samples from it (MixturePrior), and
    # the two would decode the same strings; read-only, as every reader shares the array
    flat = np.frombuffer(base64.b64decode(text, validate=True), dtype="<f8").astype(np.float64)
    flat.flags.writeable = False
    return flat


def _check_role(role: str) -> None:
    if role not in ROLES:
        raise ValueError(f"role must be one of {ROLES}, got {role!r}")
