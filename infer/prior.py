"""The priors a decoder can be sampled from (numpy only): N(0, I), and the fitted prior an export may carry.

    prior = priors_of(decoder.info)[0]                     # the default: what `vaectl generate` samples
    center, offset = prior.draw_parts(64, seed=0)          # float64 (64, D) each
    z = (center + temperature * offset).astype(np.float32)

A draw is split into (center, offset) so a temperature scales the spread around the centre the draw came
from (a mixture component's mean; 0 for N(0, I)), and so another program (the browser explorer) can apply
a temperature and get, bit for bit, the latents this module gives: center + t * offset in float64, then
rounded to float32.
"""

from __future__ import annotations

import math

import numpy as np

from ..contract import GraphInfo

LOG_2PI = math.log(2 * math.pi)


class Prior:
    """A density over the latent space that can be sampled."""

    name: str = ""  # what --prior takes and the explorer shows
    description: str = ""  # one line for users

    def draw_parts(self, n: int, seed_or_rng=None, labels=None) -> tuple[np.ndarray, np.ndarray]:
        """(center, offset), float64 (n, D): the latents are (center + temperature * offset).astype(float32)."""
        raise NotImplementedError

    def log_density(self, z, labels=None) -> np.ndarray:
        """log p(z), float64 (n,)."""
        raise NotImplementedError


class NormalPrior(Prior):
    """N(0, I), the prior the VAE was trained against."""

    name = "normal"
    description = "N(0, I): the standard normal prior the VAE was trained against"

    def __init__(self, latent_dim: int):
        self.latent_dim = latent_dim

    def draw_parts(self, n: int, seed_or_rng=None, labels=None) -> tuple[np.ndarray, np.ndarray]:
        rng = seed_or_rng if isinstance(seed_or_rng, np.random.Generator) else np.random.default_rng(seed_or_rng)
        return np.zeros((n, self.latent_dim)), rng.standard_normal((n, self.latent_dim))

    def log_density(self, z, labels=None) -> np.ndarray:
        z = np.asarray(z, dtype=np.float64).reshape(-1, self.latent_dim)
        return -0.5 * (z**2).sum(1) - 0.5 * self.latent_dim * LOG_2PI


def priors_of(info: GraphInfo) -> list[Prior]:
    """The priors a decoder offers, the default (what `vaectl generate` uses) first; N(0, I) is always one."""
    return [NormalPrior(info.config.latent_dim)]
