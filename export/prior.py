"""The prior's torch side at export: the model's encoder as the fit's callable, and the prior's verification
(vaectl.prior.fit fits it; vaectl.prior reads it)."""

from __future__ import annotations

import math

import numpy as np
import torch

from .. import contract
from ..errors import UserInputError
from ..models.config import VAEConfig
from ..prior import LOG_2PI, MixturePrior, mixture_moments
from ..prior.fit import SEED
from ..threads import choose_threads

VERIFY_SAMPLES = 20_000


def torch_encoder(model):
    """The fit's encode callable (vaectl.prior.fit.Encode) of a torch VAE: posterior mean and log-variance.
    Encoding the training images is export's longest torch work: it takes the threads train would (vaectl/threads.py)."""
    torch.set_num_threads(choose_threads())

    @torch.no_grad()
    def encode(x: np.ndarray, y: np.ndarray | None):
        mu, logvar = model.encoder(torch.from_numpy(x), None if y is None else torch.from_numpy(y))
        return mu.numpy(), logvar.numpy()

    return encode


# ----------------------------------------------------------------------------- verification


def verify_prior(spec: dict | None, config: VAEConfig, failures: list[str], label: str = "decoder.prior") -> None:
    """Check a prior document as read back from the staged decoder; append what is wrong to `failures`.

    Its parameters are finite and well-formed (contract.check_prior); numpy's draws have the mixture's mean
    and covariance; the reader's log density matches a direct evaluation of each Gaussian."""
    if spec is None:
        failures.append(f"{label}: the decoder carries no prior although one was fitted")
        return
    try:
        contract.check_prior(spec, config, label)
    except UserInputError as e:
        failures.append(str(e))
        return
    prior = MixturePrior(spec)
    rng = np.random.default_rng(SEED)
    for m in range(len(prior.weights)):
        labels = np.full(VERIFY_SAMPLES, m) if prior.by_label else None
        z = prior.latents(VERIFY_SAMPLES, rng, labels=labels).astype(np.float64)  # (S, D)
        if not np.isfinite(z).all():
            failures.append(f"{label}: draws contain NaN or inf")
            return
        mean, cov = mixture_moments(prior.weights[m], prior.means[m], prior.cholesky[m])
        std = np.sqrt(np.diagonal(cov))
        # within 6 standard errors of the sample mean and of the sample variance (sqrt((m4 - var^2) / S))
        mean_err = float((np.abs(z.mean(0) - mean) / (std / math.sqrt(len(z)))).max())
        var_se = np.sqrt(np.maximum(((z - z.mean(0)) ** 4).mean(0) - z.var(0) ** 2, 1e-300) / len(z))
        var_err = float((np.abs(z.var(0) - std**2) / var_se).max())
        if mean_err > 6 or var_err > 6:
            failures.append(
                f"{label}: draws' mean/variance are {mean_err:.1f}/{var_err:.1f} standard errors from the mixture's"
            )
        direct = _direct_log_density(z[:200], prior.weights[m], prior.means[m], prior.cholesky[m])
        read = prior.log_density(z[:200], labels[:200] if labels is not None else None)
        worst = float(np.abs(direct - read).max())
        if not np.isfinite(read).all() or not worst <= 1e-6 * max(1.0, float(np.abs(direct).max())):
            failures.append(f"{label}: log density differs from a direct evaluation by {worst:.3g} nats")


def _direct_log_density(z, weights, means, cholesky) -> np.ndarray:
    """log sum_k w_k N(z; mu_k, L_k L_k^T), from the covariance itself (slogdet, solve): another path than the reader's."""
    d = z.shape[1]
    parts = []
    for w, mu, chol in zip(weights, means, cholesky):
        cov = chol @ chol.T
        _, logdet = np.linalg.slogdet(cov)
        diff = z - mu
        maha = (diff * np.linalg.solve(cov, diff.T).T).sum(1)
        parts.append(math.log(w) - 0.5 * (maha + logdet + d * LOG_2PI))
    a = np.stack(parts, 1)
    top = a.max(1)
    return top + np.log(np.exp(a - top[:, None]).sum(1))
