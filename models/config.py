"""VAEConfig: everything needed to rebuild a model. Stored in every checkpoint and ONNX graph."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from ..errors import UserInputError, arg

ARCHITECTURES = ("mlp", "conv", "resnet")
LIKELIHOODS = ("bernoulli", "gaussian", "gaussian-learned")


@dataclass
class VAEConfig:
    # The MLP for small grey images: on CPUs it trains several times more images per second than a conv model,
    # which makes it the better model at equal wall time (docs/benchmarks.md). `vaectl train` picks the resnet
    # for colour or larger images (models/presets.py, for_images); "conv" is a plain strided-conv model.
    arch: str = "mlp"  # "mlp" (the tutorial's), "conv" or "resnet" (models/vae.py)
    latent_dim: int = 32
    channels: int = 1
    height: int = 28
    width: int = 28
    hidden: tuple[int, ...] = (512, 256)  # mlp: hidden widths, encoder order (decoder mirrors)
    conv_channels: tuple[int, ...] = (32, 64, 128)  # conv, resnet: the width of each stride-2 stage
    conv_hidden: int = 512  # conv: width of the dense layer between feature map and latent
    # resnet: dropout between the two convolutions of each ResnetBlock (as diffusers' ResnetBlock2D), in
    # training only; a small folder's model otherwise learns its training images faster than the held-out ones
    dropout: float = 0.0
    # Resnet: Adam steps that move the encoder's mu toward the z that best explains the image, at inference
    # (models/refine.py; they are part of the exported encoder). 0: the encoder's mu as it is.
    refine_steps: int = 0
    # > 0: row-autoregressive decoder; hidden channels of the convolution over the rows above each row
    context_channels: int = 0
    context_kernel: int = 7  # row context: sees kernel // 2 rows above, kernel // 2 columns either side
    # "bernoulli" (BCE), "gaussian" (summed squared error: variance 1/2) or "gaussian-learned" (N(mean, sigma^2)
    # with one sigma per channel learned with the model, as in sigma-VAE; training/loss.py)
    likelihood: str = "bernoulli"
    # gaussian-learned: log sigma per channel. The decoder learns it (a parameter, starting here: () is 0);
    # an exported graph's config carries the learned values, which scoring reads.
    log_sigma: tuple[float, ...] = ()
    # Weight on the KL term; 0 gives a plain autoencoder. 0.3, not the ELBO's 1: with the prior fitted at
    # export (export/prior.py) samples come from where the encoder puts data, and a smaller beta makes the
    # decoder sharper there, with samples closer to the data and a better likelihood under the fitted prior
    # (measured on Fashion-MNIST: docs/sample-quality.md).
    beta: float = 0.3
    num_classes: int = 0  # > 0: conditional VAE, both encoder and decoder see the label
    class_names: tuple[str, ...] = ()
    # Guidance (conditional only): sampling mixes the pixel logits of the label, l_c, with a reference's, l_r,
    # as l_r + w * (l_c - l_r). The reference: with label_dropout > 0, a learned "no label" class K (this
    # fraction of the training images get K instead of theirs, one-hot of size K + 1, so one model is
    # conditional and unconditional); with label_dropout 0, the average label (a one-hot of 1/K everywhere),
    # which needs no training change. guidance is the weight w a decoder samples at unless told otherwise;
    # a model with label_dropout 0 and guidance 1 is the plain conditional VAE (no guidance input).
    label_dropout: float = 0.0
    guidance: float = 1.0
    dataset: str = ""  # name of the training data, for the record

    def __post_init__(self) -> None:
        # Round-trips through JSON/ONNX metadata turn tuples into lists; normalize.
        self.hidden = tuple(int(h) for h in self.hidden)
        self.conv_channels = tuple(int(c) for c in self.conv_channels)
        self.class_names = tuple(str(c) for c in self.class_names)
        self.log_sigma = tuple(float(v) for v in self.log_sigma)
        self.refine_steps = int(self.refine_steps)
        self.validate()

    def validate(self) -> None:
        """Raise UserInputError for a config no model can be built from."""
        if self.arch not in ARCHITECTURES:
            raise UserInputError(f"unknown architecture {self.arch!r}; choose one of {', '.join(ARCHITECTURES)}")
        if self.likelihood not in LIKELIHOODS:
            raise UserInputError(f"unknown likelihood {self.likelihood!r}; choose one of {', '.join(LIKELIHOODS)}")
        if self.latent_dim < 1:
            raise UserInputError(f"latent dimension must be at least 1, got {self.latent_dim}")
        if self.channels not in (1, 3):
            raise UserInputError(f"channels must be 1 or 3, got {self.channels}")
        if self.beta < 0:
            raise UserInputError(f"beta must be >= 0, got {self.beta}")
        if any(h < 1 for h in self.hidden) or any(c < 1 for c in self.conv_channels):
            raise UserInputError("layer widths must be positive")
        if self.arch in ("conv", "resnet"):
            if not self.conv_channels:
                raise UserInputError(f"the {self.arch} model needs at least one conv stage (conv_channels)")
            min_side = 2 ** len(self.conv_channels)
            if min(self.height, self.width) < min_side:
                raise UserInputError(
                    f"the {self.arch} model with {len(self.conv_channels)} stages needs images of at least "
                    f"{min_side}x{min_side} px, got {self.height}x{self.width}"
                )
        elif min(self.height, self.width) < 1:
            raise UserInputError(f"image size must be positive, got {self.height}x{self.width}")
        if not 0 <= self.dropout < 1:
            raise UserInputError(f"{arg('dropout')} must be in [0, 1), got {self.dropout}")
        if self.dropout and self.arch != "resnet":
            raise UserInputError(
                f"{arg('dropout')} belongs to the resnet ({arg('arch', 'resnet')}), not the {self.arch}"
            )
        if self.refine_steps < 0:
            raise UserInputError(f"{arg('refine_steps')} must be >= 0, got {self.refine_steps}")
        if self.refine_steps and (self.arch != "resnet" or self.row_context or self.num_classes):
            raise UserInputError(
                f"{arg('refine_steps')} belongs to the unconditional resnet ({arg('arch', 'resnet')}) without a row "
                "context"
            )
        if self.log_sigma and not self.learned_sigma:
            raise UserInputError(f"log_sigma belongs to the gaussian-learned likelihood, not {self.likelihood}")
        if self.log_sigma and (len(self.log_sigma) != self.channels or not np.all(np.isfinite(self.log_sigma))):
            raise UserInputError(
                f"log_sigma needs one finite value per channel ({self.channels}), got {self.log_sigma}"
            )
        if self.context_channels < 0:
            raise UserInputError(f"context channels must be >= 0, got {self.context_channels}")
        if self.context_kernel < 3 or self.context_kernel % 2 == 0:
            raise UserInputError(f"the context kernel must be an odd size >= 3, got {self.context_kernel}")
        if self.context_channels and self.height < self.context_kernel // 2:
            raise UserInputError(
                f"a context kernel of {self.context_kernel} needs images at least "
                f"{self.context_kernel // 2} px high, got {self.height}"
            )
        if self.num_classes < 0:
            raise UserInputError("num_classes must be >= 0")
        if self.class_names and len(self.class_names) != self.num_classes:
            raise UserInputError("class_names must list one name per class")
        if not 0 <= self.label_dropout < 1:
            raise UserInputError(f"label dropout must be in [0, 1), got {self.label_dropout}")
        if self.label_dropout and not self.num_classes:
            raise UserInputError(
                f"{arg('label_dropout')} (guidance) needs a conditional model ({arg('conditional', True)})"
            )
        check_guidance(self.guidance)
        if self.guidance != 1 and not self.num_classes:
            raise UserInputError(f"{arg('guidance')} needs a conditional model ({arg('conditional', True)})")

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return (self.channels, self.height, self.width)

    @property
    def learned_sigma(self) -> bool:
        """The likelihood's variance is a model parameter (decoder.log_sigma)."""
        return self.likelihood == "gaussian-learned"

    @property
    def row_context(self) -> bool:
        """A row-autoregressive decoder: each row's logits also see the rows above it."""
        return self.context_channels > 0

    @property
    def conditional(self) -> bool:
        return self.num_classes > 0

    @property
    def guided(self) -> bool:
        """The decoder takes a guidance weight (a conditional model with label dropout or a weight other than 1)."""
        return self.conditional and (self.label_dropout > 0 or self.guidance != 1)

    @property
    def no_label_class(self) -> bool:
        """Trained with label dropout: label K (= num_classes) means "no label", an unconditional model."""
        return self.label_dropout > 0

    @property
    def label_slots(self) -> int:
        """Width of the label's one-hot: the classes, plus the "no label" class of a label-dropout model."""
        return self.num_classes + (1 if self.no_label_class else 0)

    @property
    def num_pixels(self) -> int:
        return self.channels * self.height * self.width

    def to_dict(self) -> dict:
        """Plain JSON-able data (lists, not tuples) for checkpoints and metadata.

        The guidance fields are left out of an unguided model's, log_sigma and dropout out of a config without
        them: other
        models' checkpoints and graphs keep the keys older vaectl versions read."""
        d = dataclasses.asdict(self)
        if not self.guided:
            del d["label_dropout"], d["guidance"]
        if not self.log_sigma:  # only a learned-variance model's trained config has it
            del d["log_sigma"]
        if not self.dropout:
            del d["dropout"]
        for k, v in d.items():
            if isinstance(v, tuple):
                d[k] = list(v)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> VAEConfig:
        """Build from stored data; unknown keys mean a newer vaectl wrote it."""
        if not isinstance(d, dict):
            raise UserInputError("model config is not a mapping")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise UserInputError(
                f"this vaectl cannot build a model with config keys {', '.join(unknown)}; "
                "it was written by a newer version"
            )
        try:
            return cls(**d)
        except (TypeError, ValueError) as e:  # wrong field types, e.g. a string where widths belong
            raise UserInputError(f"invalid model config: {e}") from None


def check_guidance(weight) -> float:
    """A guidance weight: a finite number >= 0 (0: unconditional, 1: plain conditional, > 1: stronger)."""
    if (
        isinstance(weight, bool)
        or not isinstance(weight, (int, float, np.integer, np.floating))
        or not np.isfinite(weight)
        or weight < 0
    ):
        raise UserInputError(f"{arg('guidance')} must be a finite number >= 0, got {weight!r}")
    return float(weight)


def class_index(label, class_names: tuple[str, ...]) -> int:
    """A class index from what a user typed or passed: an index, or a class name (case-insensitive)."""
    names = tuple(class_names)
    if isinstance(label, str):
        if label in names:
            return names.index(label)
        folded = [n.casefold() for n in names]
        if label.casefold() in folded:
            return folded.index(label.casefold())
        try:
            index = int(label)
        except ValueError:
            raise UserInputError(f"unknown class {label!r}; the classes are: {', '.join(names)}") from None
    elif isinstance(label, (int, np.integer)) and not isinstance(label, bool):
        index = int(label)
    else:
        raise UserInputError(f"a label is a class index or name, got {type(label).__name__}")
    if not 0 <= index < len(names):
        raise UserInputError(f"label {index} is out of range: there are {len(names)} classes (0..{len(names) - 1})")
    return index
