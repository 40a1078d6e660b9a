"""Latent refinement: a few Adam steps from the encoder's mu toward the z that best explains the image.

The encoder learns its mu on the training images; on a new image it lands short of the z the decoder would
draw that image from (the amortisation gap). A few steps of
    min_z  -log p(x | z) + beta * |z|^2 / 2        (the negative ELBO at q's mean: reconstruction + prior)
from z = mu close most of it: measured on held-out colour images, about 1 dB of PSNR and a third of the
colour error (docs/your-own-images.md). The steps are part of the exported encoder (an ONNX Loop over
`refine_step`, export/graphs.py): every torch-free command and the browser get the refined z.

The decoder's gradient is written out layer by layer (`_forward` returns each module's output and its
vector-Jacobian product), not taken with autograd: the TorchScript exporter cannot trace autograd, and
written out it is ordinary convolutions and matrix products (a convolution's input gradient is a convolution
with the kernel flipped). It covers the decoder of the unconditional resnet without a row context, the one
model VAEConfig.refine_steps allows; the tests check it against autograd. No I/O here.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from .vae import Decoder, GlobalColour, ResnetBlock, Upsample

LR = 0.1  # Adam's step: about how far each coordinate of z moves per step (z is ~N(0, 1))
BETAS = (0.9, 0.999)
# Adam's step is about LR * sign(g) wherever |g| >> EPS. The gradients that move z are sums over every pixel,
# in the tens to hundreds (held-out 64 px emoji: 1 % of them under 2.6). On a dimension the decoder ignores, g
# is beta * z, near 0, and Adam's usual 1e-8 would still step it by about LR every step, as if it mattered;
# with 1 such steps stay small. On the held-out emoji both give the same PSNR after 20 steps.
EPS = 1.0

Vjp = Callable[[torch.Tensor], torch.Tensor]
Size = tuple[int, int]  # a feature map's (height, width), known from the architecture


class _Constants:
    """The fixed matrices one refinement needs, made once and shared by its steps (so an exported graph holds
    each once). Everything is shaped from the architecture, never read from a tensor's shape: the exported
    graph then has no shape arithmetic, only the batch size left free."""

    def __init__(self, like: torch.Tensor):
        self.like, self.made = like, {}

    def _once(self, key, make: Callable[[], torch.Tensor]) -> torch.Tensor:
        if key not in self.made:
            self.made[key] = make()
        return self.made[key]

    def nearest(self, out_size: int, in_size: int) -> torch.Tensor:
        """(out, in) 0/1: row j picks the input index that F.interpolate(mode="nearest") copies to output j,
        found by interpolating the indices themselves (the forward's own rule, in torch and in ONNX)."""

        def make():
            index = torch.arange(in_size, dtype=self.like.dtype, device=self.like.device)
            src = F.interpolate(index.view(1, 1, in_size), size=out_size, mode="nearest").view(out_size, 1)
            return (src == index).to(self.like.dtype)

        return self._once(("nearest", out_size, in_size), make)

    def per_channel(self, param: torch.Tensor) -> torch.Tensor:
        return self._once(("channel", id(param)), lambda: param.view(-1, 1, 1))  # (C,) -> (C, 1, 1)


def _silu(x: torch.Tensor) -> tuple[torch.Tensor, Vjp]:
    s = torch.sigmoid(x)
    return x * s, lambda g: g * s * (1 + x * (1 - s))  # d/dx x s(x) = s (1 + x (1 - s))


def _group_norm(norm: nn.GroupNorm, x: torch.Tensor, size: Size, k: _Constants) -> tuple[torch.Tensor, Vjp]:
    groups = norm.num_groups
    grouped = (-1, groups, norm.num_channels // groups * size[0] * size[1])  # (N, G, C/G * H * W)
    xg = x.reshape(grouped)
    centred = xg - xg.mean(-1, keepdim=True)
    rstd = torch.rsqrt(centred.pow(2).mean(-1, keepdim=True) + norm.eps)  # (N, G, 1)
    xhat = centred * rstd
    weight = k.per_channel(norm.weight)

    def vjp(g: torch.Tensor) -> torch.Tensor:
        gh = (g * weight).reshape(grouped)
        # d xhat / dx removes the group's mean and its component along xhat, then scales by 1 / std
        gx = rstd * (gh - gh.mean(-1, keepdim=True) - xhat * (gh * xhat).mean(-1, keepdim=True))
        return gx.view(-1, norm.num_channels, *size)

    return xhat.view(-1, norm.num_channels, *size) * weight + k.per_channel(norm.bias), vjp


def _forward(module: nn.Module, x: torch.Tensor, size: Size, k: _Constants) -> tuple[torch.Tensor, Vjp, Size]:
    """module(x) in eval mode, the function g -> g @ d module(x) / dx, and the output's size (x is `size`)."""
    if isinstance(module, nn.Sequential):
        vjps = []
        for m in module:
            x, vjp, size = _forward(m, x, size, k)
            vjps.append(vjp)

        def chain(g: torch.Tensor) -> torch.Tensor:
            for vjp in reversed(vjps):
                g = vjp(g)
            return g

        return x, chain, size
    if isinstance(module, (nn.Identity, nn.Dropout)):
        return x, lambda g: g, size
    if isinstance(module, nn.Linear):
        return module(x), lambda g: g @ module.weight, size
    if isinstance(module, nn.Conv2d) and module.stride == (1, 1):  # same-size: 3x3 padded 1, or 1x1
        # the input gradient of a same-size convolution is the convolution with the kernel flipped and its
        # in/out channels swapped (a transposed convolution, written as a plain one: runtimes run those faster)
        reverse = torch.arange(module.kernel_size[0] - 1, -1, -1, device=x.device)  # square kernels
        flipped = module.weight.transpose(0, 1).index_select(2, reverse).index_select(3, reverse)
        return module(x), lambda g: F.conv2d(g, flipped, padding=module.padding), size
    if isinstance(module, nn.GroupNorm):
        return (*_group_norm(module, x, size, k), size)
    if isinstance(module, nn.SiLU):
        return (*_silu(x), size)
    if isinstance(module, Upsample):  # nearest resize as two 0/1 matrix products, then the conv
        rows, cols = k.nearest(module.size[0], size[0]), k.nearest(module.size[1], size[1])
        y, conv_vjp, _ = _forward(module.conv, rows @ x @ cols.t(), module.size, k)
        return y, lambda g: rows.t() @ conv_vjp(g) @ cols, module.size
    if isinstance(module, ResnetBlock):  # ResnetBlock.forward, step by step
        steps = [module.norm1, nn.SiLU(), module.conv1, module.norm2, nn.SiLU(), module.dropout, module.conv2]
        h, h_vjp, _ = _forward(nn.Sequential(*steps), x, size, k)
        s, s_vjp, _ = _forward(module.skip, x, size, k)
        return s + h, lambda g: s_vjp(g) + h_vjp(g), size
    raise NotImplementedError(f"no gradient for {type(module).__name__}")


def _base_logits(decoder: Decoder, z: torch.Tensor, k: _Constants) -> tuple[torch.Tensor, Vjp]:
    """Decoder.base_logits(z) and the gradient's map from pixel logits back to z (N, D)."""
    h, body_vjp, _ = _forward(decoder.body, z, (1, 1), k)  # (N, prod(start_shape))
    start = decoder.start_shape
    logits, up_vjp, _ = _forward(decoder.upsample, h.view(-1, *start), start[1:], k)  # (N, C, H, W)
    colour: GlobalColour | None = decoder.colour
    if colour is not None:
        logits = logits + colour(z)

    def vjp(g: torch.Tensor) -> torch.Tensor:
        gz = body_vjp(up_vjp(g).flatten(1))
        return gz if colour is None else gz + g.sum((2, 3)) @ colour.linear.weight

    return logits, vjp


def _nll_logit_grad(logits: torch.Tensor, x: torch.Tensor, likelihood: str, inv_var) -> torch.Tensor:
    """d(-log p(x | logits)) / d logits for the model's likelihood (training/loss.py's reconstruction_loss);
    inv_var (C, 1, 1): 1 / sigma^2 of the learned-variance Gaussian."""
    p = torch.sigmoid(logits)
    if likelihood == "bernoulli":
        return p - x
    dp = p * (1 - p)  # d sigmoid
    if likelihood == "gaussian":  # (p - x)^2
        return 2 * (p - x) * dp
    return (p - x) * dp * inv_var  # (p - x)^2 / (2 sigma^2)


def refine_step(decoder: Decoder, x: torch.Tensor, z, m, v, t):
    """One Adam step on -log p(x | z) + beta |z|^2 / 2 from z (N, D), with Adam's moments m, v (N, D) and step
    number t (1, 2, ...; an int, or a 0-d tensor inside the exported loop): (z, m, v) after it."""
    config, k = decoder.config, _Constants(z)
    inv_var = torch.exp(-2 * decoder.log_sigma).view(-1, 1, 1) if config.learned_sigma else None
    logits, vjp = _base_logits(decoder, z, k)  # (N, C, H, W)
    g = vjp(_nll_logit_grad(logits, x, config.likelihood, inv_var)) + config.beta * z  # (N, D)
    m = BETAS[0] * m + (1 - BETAS[0]) * g
    v = BETAS[1] * v + (1 - BETAS[1]) * g * g
    m_hat, v_hat = m / (1 - BETAS[0] ** t), v / (1 - BETAS[1] ** t)
    return z - LR * m_hat / (torch.sqrt(v_hat) + EPS), m, v


def refine(decoder: Decoder, x: torch.Tensor, mu: torch.Tensor, steps: int) -> torch.Tensor:
    """mu (N, D) after `steps` Adam steps (refine_step), each image on its own (the steps of one image do not
    depend on the others in its batch)."""
    z, m, v = mu, torch.zeros_like(mu), torch.zeros_like(mu)
    for t in range(1, steps + 1):
        z, m, v = refine_step(decoder, x, z, m, v, t)
    return z
