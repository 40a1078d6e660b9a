"""The negative ELBO, per image: reconstruction + beta * KL (closed form per latent dimension)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)
# 8-bit pixels come in steps of 1/255: a sigma under their rounding noise, 1 / (255 sqrt(12)), would score the
# rounding rather than the model
MIN_LOG_SIGMA = math.log(1 / (255 * math.sqrt(12)))


def kl_divergence(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    # KL(N(mu, sigma^2) || N(0, 1)) per dimension = 0.5 * (mu^2 + sigma^2 - 1 - log sigma^2)
    return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar)  # (N, D)


def reconstruction_loss(
    logits: torch.Tensor, x: torch.Tensor, likelihood: str, log_sigma: torch.Tensor | None = None
) -> torch.Tensor:
    """-log p(x | z) summed over pixels: (N, C, H, W) -> (N,). Up to a constant for "gaussian" (the tutorial's
    squared error); exact for "bernoulli" and for "gaussian-learned", whose log_sigma (C,) is the decoder's."""
    if likelihood == "bernoulli":  # binary cross-entropy from logits, stable for any logit
        per_pixel = F.binary_cross_entropy_with_logits(logits, x, reduction="none")
    elif likelihood == "gaussian":  # the tutorial's squared error on the sigmoid mean
        per_pixel = (torch.sigmoid(logits) - x).pow(2)
    elif likelihood == "gaussian-learned":  # -log N(x; sigmoid(logits), sigma^2), sigma per channel
        log_sigma = log_sigma.view(1, -1, 1, 1)  # (1, C, 1, 1)
        z = (x - torch.sigmoid(logits)) * torch.exp(-log_sigma)
        per_pixel = 0.5 * z.pow(2) + log_sigma + HALF_LOG_2PI
    else:
        raise ValueError(f"unknown likelihood {likelihood!r}")
    return per_pixel.flatten(1).sum(1)


def fitted_log_sigma(squared_error: torch.Tensor, count: int) -> torch.Tensor:
    """The per-channel log sigma under which residuals with these summed squares (C,), `count` per channel, are
    most likely: log sqrt(mean square), at least MIN_LOG_SIGMA."""
    return (0.5 * torch.log(squared_error / count)).clamp_min(MIN_LOG_SIGMA)


def gaussian_nll_sum(squared_error: torch.Tensor, count: int, log_sigma: torch.Tensor) -> torch.Tensor:
    # sum over channels of -log N(residual; 0, sigma^2) summed over its `count` residuals, from their summed squares
    return (0.5 * squared_error * torch.exp(-2 * log_sigma) + count * (log_sigma + HALF_LOG_2PI)).sum()


def negative_elbo(logits, x, mu, logvar, likelihood: str, beta: float = 1.0, log_sigma=None):
    """Returns (loss per image (N,), reconstruction (N,), KL per dimension (N, D))."""
    recon = reconstruction_loss(logits, x, likelihood, log_sigma)  # (N,)
    kl = kl_divergence(mu, logvar)  # (N, D)
    return recon + beta * kl.sum(1), recon, kl
