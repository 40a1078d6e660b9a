"""The VAE: an Encoder (image -> mu, logvar) and a Decoder (z -> pixel logits), one pair per architecture.

No I/O here. The architectures differ only in how an image becomes a feature vector and a latent becomes
pixel logits; what they share lives in the Encoder and Decoder base classes, and `config.arch` picks the pair
(ENCODERS, DECODERS):
    mlp     the tutorial's: fully connected layers over the flattened pixels
    conv    a plain strided-conv encoder and transposed-conv decoder around one dense layer
    resnet  diffusers' AutoencoderKL blocks, small: ResnetBlock (GroupNorm, SiLU, 3x3 conv, 1x1 skip when the
            width changes), strided-conv Downsample, nearest Upsample + 3x3 conv; one dense layer between the
            last feature map and the latent vector

Both modules take an optional integer label `y` when `config.num_classes > 0` (a conditional VAE): the label
enters as a one-hot vector concatenated to the features.
A guided model (`config.guided`) samples with weight w from l_r + w * (l_c - l_r), the conditional pixel logits
l_c pushed away from a reference's l_r (w = 1 is the plain conditional decoder). The reference is label K:
with `config.label_dropout > 0` a learned "no label" class, given in training to a random fraction of the
images (classifier-free guidance); otherwise the average label, a one-hot of 1/K everywhere.

With `config.row_context` (context_channels > 0) the decoder is row-autoregressive (PixelVAE-style, local): each row's
logits are the z part plus a small convolution of the rows just above it, so pixels are no longer
independent given z. Scoring uses the real rows above (teacher forcing); generating runs row by row,
feeding back the generated pixel means.

With the learned-variance likelihood (`config.learned_sigma`) the decoder also holds log_sigma, one per
channel: the pixels are N(sigmoid(logits), sigma^2). The image it outputs stays the mean.
"""

from __future__ import annotations

import dataclasses
import math

import torch
import torch.nn.functional as F
from torch import nn

from .config import VAEConfig

# sigma 0.1 (PSNR 20 dB): near where trained models end up on 8-bit images. Adam moves a parameter by about
# the learning rate per step, so from sigma 1 the few hundred steps of a CPU run would not get there.
LOG_SIGMA_START = math.log(0.1)


def reparameterize(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    # z = mu + sigma * eps, eps ~ N(0, I): the sample stays differentiable in mu and logvar
    return mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)


def conv_sizes(side: int, stages: int) -> list[int]:
    """Feature-map side after each stride-2, padding-1, 3x3 conv: [side, ceil(side/2), ...]."""
    sizes = [side]
    for _ in range(stages):
        sizes.append((sizes[-1] + 1) // 2)
    return sizes


def _relu_mlp(width: int, hidden) -> list[nn.Module]:
    """Linear + ReLU for each width in `hidden`, starting from `width` inputs."""
    layers = []
    for h in hidden:
        layers += [nn.Linear(width, h), nn.ReLU()]
        width = h
    return layers


class _OneHot(nn.Module):
    """Label -> one-hot rows. A Gather from an identity matrix: exports to plain ONNX.

    average_row: label `num_classes` gives the average label, 1/K in every column (a guidance reference)."""

    def __init__(self, num_classes: int, average_row: bool = False):
        super().__init__()
        eye = torch.eye(num_classes)
        if average_row:
            eye = torch.cat([eye, torch.full((1, num_classes), 1.0 / num_classes)])  # (K + 1, K)
        self.register_buffer("eye", eye, persistent=False)  # not in checkpoints: it follows from the config

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        return self.eye[y]  # (N,) int64 -> (N, K)


# ----------------------------------------------------------------------------- diffusers-style blocks


def _norm(channels: int) -> nn.GroupNorm:
    # diffusers uses 32 groups on 128+ channels; these models are narrower, so groups of at least 4 channels
    return nn.GroupNorm(math.gcd(channels, 8), channels, eps=1e-6)


class ResnetBlock(nn.Module):
    """x + conv(dropout(silu(norm(conv(silu(norm(x))))))), the skip through a 1x1 conv when the width changes."""

    def __init__(self, cin: int, cout: int, dropout: float = 0.0):
        super().__init__()
        self.norm1, self.conv1 = _norm(cin), nn.Conv2d(cin, cout, 3, padding=1)
        self.norm2, self.conv2 = _norm(cout), nn.Conv2d(cout, cout, 3, padding=1)
        self.dropout = nn.Dropout(dropout)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))  # (N, cout, H, W)
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        return self.skip(x) + h


class Downsample(nn.Module):
    """A stride-2 3x3 conv: side s -> ceil(s / 2)."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class Upsample(nn.Module):
    """Nearest-neighbour resize to a fixed size, then a 3x3 conv (no transposed conv: no checkerboard)."""

    def __init__(self, channels: int, size: tuple[int, int], out_channels: int | None = None):
        super().__init__()
        self.size = size
        self.conv = nn.Conv2d(channels, out_channels or channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, size=self.size, mode="nearest"))  # (N, C, *size)


# ----------------------------------------------------------------------------- encoders


class Encoder(nn.Module):
    """Shared part: the label's one-hot joins the features, then two linear heads give mu and logvar.

    Subclasses set `features` (image -> (N, F)), `body` ((N, F + K) -> (N, width)) and call `_heads(width)`."""

    features: nn.Module
    body: nn.Module

    def __init__(self, config: VAEConfig):
        super().__init__()
        self.config = config
        self.onehot = _OneHot(config.label_slots) if config.label_slots else None

    def _heads(self, width: int) -> None:
        self.mu = nn.Linear(width, self.config.latent_dim)
        self.logvar = nn.Linear(width, self.config.latent_dim)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.features(x).flatten(1)  # (N, C, H, W) -> (N, F)
        if self.onehot is not None:
            h = torch.cat([h, self.onehot(y)], dim=1)  # (N, F + K)
        h = self.body(h)  # (N, width)
        return self.mu(h), self.logvar(h)  # (N, D), (N, D)


class MLPEncoder(Encoder):
    def __init__(self, config: VAEConfig):
        super().__init__(config)
        c, k = config, config.label_slots
        self.features = nn.Identity()
        self.body = nn.Sequential(*_relu_mlp(c.num_pixels + k, c.hidden))
        self._heads(c.hidden[-1] if c.hidden else c.num_pixels + k)


class ConvEncoder(Encoder):
    def __init__(self, config: VAEConfig):
        super().__init__(config)
        c = config
        convs, cin = [], c.channels
        for cout in c.conv_channels:
            convs += [nn.Conv2d(cin, cout, 3, stride=2, padding=1), nn.ReLU()]
            cin = cout
        self.features = nn.Sequential(*convs)
        n = len(c.conv_channels)
        flat = cin * conv_sizes(c.height, n)[-1] * conv_sizes(c.width, n)[-1]
        self.body = nn.Sequential(nn.Linear(flat + c.label_slots, c.conv_hidden), nn.ReLU())
        self._heads(c.conv_hidden)


class ResnetEncoder(Encoder):
    """conv_in at full size; per width: a Downsample, then a ResnetBlock to that width; norm + SiLU; the heads
    read the flattened last map. Blocks run from half size down: at full size they would cost 4x as much."""

    def __init__(self, config: VAEConfig):
        super().__init__(config)
        c = config
        cin = c.conv_channels[0]
        layers = [nn.Conv2d(c.channels, cin, 3, padding=1)]
        for cout in c.conv_channels:
            layers += [Downsample(cin), ResnetBlock(cin, cout, c.dropout)]
            cin = cout
        layers += [_norm(cin), nn.SiLU()]
        self.features = nn.Sequential(*layers)  # (N, C, H, W) -> (N, widths[-1], H / 2^n, W / 2^n)
        n = len(c.conv_channels)
        flat = cin * conv_sizes(c.height, n)[-1] * conv_sizes(c.width, n)[-1]
        self.body = nn.Identity()
        self._heads(flat + c.label_slots)


# ----------------------------------------------------------------------------- decoders


class RowContext(nn.Module):
    """Logit correction for each pixel row from the `kernel // 2` rows above it (none from its own row).

    A (kernel // 2) x kernel convolution to `hidden` channels, ReLU, and a 1x1 convolution back to the image's
    channels. Row i's output depends on rows i - kernel//2 .. i - 1 only (zeros above the top).
    """

    def __init__(self, channels: int, hidden: int, kernel: int):
        super().__init__()
        self.rows = kernel // 2
        self.conv = nn.Conv2d(
            channels, hidden, (self.rows, kernel), padding=(0, kernel // 2)
        )  # zero columns at the sides
        self.out = nn.Conv2d(hidden, channels, 1)
        nn.init.zeros_(self.out.weight)  # start as the plain decoder: the context term is 0
        nn.init.zeros_(self.out.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Teacher forcing: every row's correction from the real rows above, (N, C, H, W) -> (N, C, H, W)."""
        # rows of zeros on top, last row dropped: output row i sees input rows i - rows .. i - 1.
        # (torch.cat, not F.pad: the ONNX exporter turns F.pad into a reversing Slice it warns about.)
        above = torch.cat([torch.zeros_like(x[:, :, : self.rows]), x[:, :, :-1]], dim=2)  # (N, C, H + rows - 1, W)
        return self.step(above)

    def step(self, above: torch.Tensor) -> torch.Tensor:
        """Corrections for R rows from the `rows` rows above each: (N, C, rows + R - 1, W) -> (N, C, R, W).

        Generation calls it with R = 1: the last `rows` rows made so far give the next row's correction."""
        return self.out(F.relu(self.conv(above)))


class GlobalColour(nn.Module):
    """A per-channel shift of every pixel's logit, linear in z: each image's overall colour straight from the
    latent. The resnet decoder's GroupNorms take out each image's mean from the feature maps they normalise,
    so without this path that colour has to be rebuilt from patterns; measured, the colour of held-out
    reconstructions came out about twice as far from the original (docs/your-own-images.md)."""

    def __init__(self, inputs: int, channels: int):
        super().__init__()
        self.linear = nn.Linear(inputs, channels)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.linear(z)[:, :, None, None]  # (N, C, 1, 1)


class Decoder(nn.Module):
    """Shared part: label one-hot, guidance, row context, learned sigma. Subclasses set `body`
    ((N, D + K) -> (N, prod(start_shape))), `start_shape` and `upsample` ((N, *start_shape) -> pixel logits),
    and may set `colour` (a GlobalColour)."""

    body: nn.Module
    upsample: nn.Module
    start_shape: tuple[int, int, int]

    def __init__(self, config: VAEConfig):
        super().__init__()
        self.config = c = config
        k = c.label_slots
        self.onehot = _OneHot(k, average_row=c.guided and not c.no_label_class) if k else None
        self.context = RowContext(c.channels, c.context_channels, c.context_kernel) if c.row_context else None
        self.colour: GlobalColour | None = None
        if c.learned_sigma:  # per channel; starts where the config says, else at LOG_SIGMA_START
            self.log_sigma = nn.Parameter(torch.tensor(c.log_sigma or (LOG_SIGMA_START,) * c.channels))  # (C,)

    def forward(
        self,
        z: torch.Tensor,
        y: torch.Tensor | None = None,
        x: torch.Tensor | None = None,
        guidance: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Pixel logits (N, C, H, W); `torch.sigmoid` of them is the image in [0, 1].

        With a row context: given the real images x, the logits that score x (teacher forcing);
        without x, the logits of an image generated row by row from z.
        guidance (a guided model): the weight w, a (1,) tensor, of the guided logits.
        """
        # The row context's term depends on neither label, so guiding the z part guides every row's logits.
        logits = self.base_logits(z, y) if guidance is None else self.guided_logits(z, y, guidance)  # (N, C, H, W)
        if not self.config.row_context:
            return logits
        if x is not None:
            return logits + self.context(x)
        rows, above = [], torch.zeros_like(logits[:, :, : self.context.rows])  # (N, C, rows, W): zeros above the top
        for i in range(self.config.height):
            row = logits[:, :, i : i + 1] + self.context.step(above)  # (N, C, 1, W)
            rows.append(row)
            above = torch.cat([above[:, :, 1:], torch.sigmoid(row)], dim=2)  # feed back the pixel means
        return torch.cat(rows, dim=2)  # (N, C, H, W)

    def guided_logits(self, z: torch.Tensor, y: torch.Tensor, guidance: torch.Tensor) -> torch.Tensor:
        """l_r + w * (l_c - l_r): the reference's logits (label K) moved w times the label's pull away from them.

        Computed as l_c + (w - 1) * (l_c - l_r), the same sum, so that w = 1 is the conditional logits exactly."""
        # two passes, not one over 2N rows: a matrix product's rounding depends on its row count
        conditional = self.base_logits(z, y)
        reference = self.base_logits(z, torch.full_like(y, self.config.num_classes))
        return conditional + (guidance - 1) * (conditional - reference)

    def base_logits(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """The part of the pixel logits that depends on z (and y) alone: all of them without a row context."""
        if self.onehot is not None:
            z = torch.cat([z, self.onehot(y)], dim=1)  # (N, D + K)
        h = self.body(z).view(-1, *self.start_shape)  # (N, C', H', W')
        logits = self.upsample(h)  # (N, C, H, W)
        return logits if self.colour is None else logits + self.colour(z)


class MLPDecoder(Decoder):
    def __init__(self, config: VAEConfig):
        super().__init__(config)
        c, k = config, config.label_slots
        hidden = tuple(reversed(c.hidden))
        width = hidden[-1] if hidden else c.latent_dim + k
        self.body = nn.Sequential(*_relu_mlp(c.latent_dim + k, hidden), nn.Linear(width, c.num_pixels))
        self.start_shape = c.image_shape  # the body's output is the flat image
        self.upsample = nn.Identity()


class ConvDecoder(Decoder):
    def __init__(self, config: VAEConfig):
        super().__init__(config)
        c = config
        n = len(c.conv_channels)
        hs, ws = conv_sizes(c.height, n), conv_sizes(c.width, n)
        self.start_shape = start = (c.conv_channels[-1], hs[-1], ws[-1])
        self.body = nn.Sequential(
            nn.Linear(c.latent_dim + c.label_slots, c.conv_hidden),
            nn.ReLU(),
            nn.Linear(c.conv_hidden, math.prod(start)),
            nn.ReLU(),
        )
        ups = []
        outs = list(reversed(c.conv_channels[:-1])) + [c.channels]
        cin = c.conv_channels[-1]
        for i, cout in enumerate(outs):
            stage = n - i  # upsample from sizes[stage] to sizes[stage - 1]
            pad = (hs[stage - 1] - (2 * hs[stage] - 1), ws[stage - 1] - (2 * ws[stage] - 1))
            ups.append(nn.ConvTranspose2d(cin, cout, 3, stride=2, padding=1, output_padding=pad))
            if i < n - 1:
                ups.append(nn.ReLU())
            cin = cout
        self.upsample = nn.Sequential(*ups)


class ResnetDecoder(Decoder):
    """A dense layer to the smallest feature map; per width, deepest first: a ResnetBlock to it, then an
    Upsample to the next size; the last Upsample's conv is conv_out, to the image's channels (after norm + SiLU).
    A GlobalColour path adds each image's overall colour."""

    def __init__(self, config: VAEConfig):
        super().__init__(config)
        c = config
        n = len(c.conv_channels)
        hs, ws = conv_sizes(c.height, n), conv_sizes(c.width, n)
        widths = tuple(reversed(c.conv_channels))
        self.start_shape = (widths[0], hs[-1], ws[-1])
        self.body = nn.Linear(c.latent_dim + c.label_slots, math.prod(self.start_shape))
        layers, cin = [], widths[0]
        for i, cout in enumerate(widths):
            layers.append(ResnetBlock(cin, cout, c.dropout))  # at size n - i
            if i < n - 1:
                layers.append(Upsample(cout, (hs[n - 1 - i], ws[n - 1 - i])))
            cin = cout
        layers += [_norm(cin), nn.SiLU(), Upsample(cin, (c.height, c.width), out_channels=c.channels)]
        self.upsample = nn.Sequential(*layers)  # (N, *start_shape) -> (N, C, H, W)
        self.colour = GlobalColour(c.latent_dim + c.label_slots, c.channels)


ENCODERS = {"mlp": MLPEncoder, "conv": ConvEncoder, "resnet": ResnetEncoder}
DECODERS = {"mlp": MLPDecoder, "conv": ConvDecoder, "resnet": ResnetDecoder}


class VAE(nn.Module):
    def __init__(self, config: VAEConfig):
        super().__init__()
        self.config = config
        self.encoder = ENCODERS[config.arch](config)
        self.decoder = DECODERS[config.arch](config)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None):
        """One stochastic pass: (pixel logits, mu, logvar) for the negative ELBO."""
        if self.training and self.config.no_label_class:  # a random fraction of the images train the "no label" class
            dropped = torch.rand(y.shape, device=y.device) < self.config.label_dropout
            y = torch.where(dropped, torch.full_like(y, self.config.num_classes), y)
        mu, logvar = self.encoder(x, y)  # (N, D), (N, D)
        z = reparameterize(mu, logvar)  # (N, D)
        return self.decoder(z, y, x), mu, logvar  # (N, C, H, W), (N, D), (N, D)

    @property
    def log_sigma(self) -> torch.Tensor | None:
        """The learned per-channel log sigma (C,) of the learned-variance likelihood; None for the others."""
        return self.decoder.log_sigma if self.config.learned_sigma else None

    def trained_config(self) -> VAEConfig:
        """The config with what training learned that scoring needs (the likelihood's sigma), for export."""
        if not self.config.learned_sigma:
            return self.config
        return dataclasses.replace(self.config, log_sigma=tuple(self.decoder.log_sigma.detach().cpu().tolist()))

    def with_refine_steps(self, steps: int) -> VAE:
        """This model, inferring with `steps` refinement steps (VAEConfig.refine_steps; validated there)."""
        config = dataclasses.replace(self.config, refine_steps=steps)
        self.config = self.encoder.config = self.decoder.config = config
        return self

    @torch.no_grad()
    def encode(
        self, x: torch.Tensor, y: torch.Tensor | None = None, refine_steps: int | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """q(z | x) at inference: the encoder's (mu, logvar), mu refined by `refine_steps` steps (models/refine.py)
        [the config's]."""
        mu, logvar = self.encoder(x, y)  # (N, D), (N, D)
        steps = self.config.refine_steps if refine_steps is None else refine_steps
        if steps:
            from .refine import refine  # refine.py builds on this module's blocks

            mu = refine(self.decoder, x, mu, steps)
        return mu, logvar

    @torch.no_grad()
    def reconstruct(
        self, x: torch.Tensor, y: torch.Tensor | None = None, refine_steps: int | None = None
    ) -> torch.Tensor:
        """Deterministic reconstruction through the posterior mean (refined as in encode), pixels in [0, 1]."""
        mu, _ = self.encode(x, y, refine_steps)
        return torch.sigmoid(self.decoder(mu, y))

    @torch.no_grad()
    def sample(self, n: int, y: torch.Tensor | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
        """n images decoded from z ~ N(0, I), pixels in [0, 1] (a guided model: at its default weight)."""
        p = next(self.parameters())
        z = torch.randn(
            n, self.config.latent_dim, generator=generator, device=generator.device if generator else p.device
        )
        guidance = (
            torch.tensor([self.config.guidance], device=p.device) if self.config.guided and y is not None else None
        )
        return torch.sigmoid(self.decoder(z.to(p.device), y, guidance=guidance))
