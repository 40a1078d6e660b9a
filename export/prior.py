"""The prior `vaectl export` fits and writes into the decoder: a Gaussian mixture of the aggregate posterior.

The aggregate posterior is where the encoder puts the training images: one draw z ~ q(z | x) per image (several
per image for small datasets), not the posterior means. Means leave out q's spread, so a mixture fitted to them
collapses onto the dimensions a model does not use (their means are all ~0) and its log density is useless for
scoring. The mixture (export/mixture.py) has K full-covariance components; K is chosen by held-out likelihood:
candidate mixtures are fitted to the draws of 90 % of the images and scored on the draws of the other 10 %, the
best K is refitted to all of them. Everything is deterministic for a seed.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from .. import contract
from ..data import ImageDataset
from ..errors import UserInputError
from ..infer.prior import LOG_2PI, MixturePrior, mixture_moments
from ..models.config import VAEConfig
from .mixture import Mixture, fit_mixture

SEED = 0
CANDIDATES = (1, 2, 4, 8, 16, 32, 64)  # K tried, in order, while held-out likelihood improves
IMAGES_PER_COMPONENT_PER_DIM = 10  # K at most images / (10 D): a full covariance has D (D + 3) / 2 numbers
MIN_DRAWS = 20_000  # draws of q(z | x) to fit to: several per image below this many images
HOLDOUT_FRACTION = 0.1
MAX_HOLDOUT = 5_000  # images: more changes the choice of K little and costs fitting time
ENCODE_BATCH = 1_000
VERIFY_SAMPLES = 20_000


@dataclass(frozen=True)
class PriorChoice:
    """What `--prior` asked export for: "normal" (none fitted), or "gmm" with K components (None: chosen)."""

    kind: str
    k: int | None = None
    explicit: bool = False  # asked for by name: a missing dataset is an error, not a fallback to N(0, I)


def parse_choice(text: str | None) -> PriorChoice:
    """--prior of export: normal, gmm or gmm:K (None: gmm when the training data is at hand)."""
    if text is None:
        return PriorChoice("gmm")
    kind, _, k = text.partition(":")
    if kind == "normal" and not k:
        return PriorChoice("normal", explicit=True)
    if kind == "gmm":
        if not k:
            return PriorChoice("gmm", explicit=True)
        if k.isdigit() and int(k) >= 1:
            return PriorChoice("gmm", int(k), explicit=True)
    raise UserInputError(f"--prior takes normal, gmm or gmm:K (K components, K >= 1), got {text!r}")


def training_data(ckpt: dict, data_dir=None) -> ImageDataset:
    """The images the run trained on (as its checkpoint records them), or `data_dir`; UserInputError if absent."""
    from ..training.data import load_training_data

    train = ckpt.get("train") or {}
    config: VAEConfig = ckpt["config"]
    if not train and data_dir is None:
        raise UserInputError("the checkpoint does not record the data it was trained on")
    ds = load_training_data(
        data_dir if data_dir is not None else train.get("data"),
        train.get("dataset", "mnist-sample") if data_dir is None else "mnist-sample",
        train.get("image_size"),
        train.get("channels"),
        train.get("cache_dir"),
        train.get("seed", 0),
    )
    if tuple(ds.image_shape) != config.image_shape:
        raise UserInputError(
            f"dataset {ds.name!r} has images of shape {tuple(ds.image_shape)}, but the model takes {config.image_shape}"
        )
    if config.conditional and ds.train_labels is None:
        raise UserInputError(f"dataset {ds.name!r} has no labels; the conditional model needs them")
    return ds


@torch.no_grad()
def posterior_draws(model, images: np.ndarray, labels: np.ndarray | None, draws: int, seed: int) -> np.ndarray:
    """z ~ q(z | x), float64 (N, draws, D): `draws` per image of uint8 images (N, C, H, W)."""
    rng = np.random.default_rng(seed)
    out = []
    for start in range(0, len(images), ENCODE_BATCH):
        x = torch.from_numpy(images[start : start + ENCODE_BATCH]).float() / 255
        y = None if labels is None else torch.from_numpy(labels[start : start + ENCODE_BATCH])
        mu, logvar = (t.double().numpy() for t in model.encoder(x, y))  # (B, D) each
        eps = rng.standard_normal((len(mu), draws, mu.shape[1]))  # (B, draws, D)
        out.append(mu[:, None] + np.exp(0.5 * logvar)[:, None] * eps)
    return np.concatenate(out)


def max_components(images: int, latent_dim: int) -> int:
    return max(1, images // (IMAGES_PER_COMPONENT_PER_DIM * latent_dim))


def choose_k(z: np.ndarray, seed: int, log: Callable[[str], None] | None = None) -> tuple[int, dict[int, float]]:
    """K by held-out likelihood: fit CANDIDATES in turn to the draws of most images, score the mean log density
    of the held-out images' draws, stop when it no longer improves. z: (N images, draws, D).
    Returns (K, {K: held-out mean log density})."""
    n, _, d = z.shape
    order = np.random.default_rng(seed).permutation(n)
    held = min(MAX_HOLDOUT, max(1, int(round(n * HOLDOUT_FRACTION))))
    fit_z, held_z = z[order[held:]].reshape(-1, d), z[order[:held]].reshape(-1, d)
    limit = max_components(n - held, d)
    scores: dict[int, float] = {}
    best = 1
    for k in CANDIDATES:
        if k > limit:
            break
        scores[k] = float(fit_mixture(fit_z, k, seed).log_density(held_z).mean())
        if log is not None:
            log(f"    K = {k:<3d} held-out log density {scores[k]:.3f} nats per draw")
        if scores[k] <= scores[best] and k != best:
            break
        best = k
    return best, scores


def fit_prior(
    model,
    ds: ImageDataset,
    choice: PriorChoice,
    *,
    by_label: bool = False,
    seed: int = SEED,
    log: Callable[[str], None] | None = None,
) -> tuple[dict, str]:
    """(the contract's prior document, one line saying what was fitted) for a model and its training data."""
    with _one_blas_thread():
        return _fit_prior(model, ds, choice, by_label, seed, log)


def _one_blas_thread():
    """numpy's BLAS on one thread while fitting. The fit's matrix products are small; on a busy machine
    BLAS threads spin against each other and everything else (measured on a loaded 2-core machine: the same
    fit took 7-10x the CPU time with 2 threads than with 1)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # an install without the [train] extra's threadpoolctl: numpy's default threads
        return contextlib.nullcontext()
    return threadpool_limits(1, user_api="blas")


def _fit_prior(model, ds: ImageDataset, choice: PriorChoice, by_label: bool, seed: int, log) -> tuple[dict, str]:
    config: VAEConfig = model.config
    t0 = time.perf_counter()
    n = len(ds.train)
    draws = max(1, math.ceil(MIN_DRAWS / n))
    labels = ds.train_labels if config.conditional else None
    z = posterior_draws(model, ds.train, labels, draws, seed)  # (N, draws, D)
    groups = [np.arange(n)] if not by_label else [np.flatnonzero(labels == y) for y in range(config.num_classes)]
    mixtures, chosen, scores = [], [], {}
    for group in groups:
        if choice.k is not None:
            k = min(choice.k, len(group) * draws)
        else:
            k, scores = choose_k(z[group], seed, log)
        chosen.append(k)
        mixtures.append(fit_mixture(z[group].reshape(-1, config.latent_dim), k, seed))
    if by_label and config.no_label_class:  # the "no label" class samples from all of them
        mixtures.append(_pooled(mixtures, [len(g) for g in groups]))
    rule = (
        f"K = {choice.k} (asked for)"
        if choice.k is not None
        else "held-out log density of 10% of the images' draws, K in " + ", ".join(map(str, CANDIDATES))
    )
    spec = {
        "kind": contract.PRIOR_GMM,
        "latent_dim": config.latent_dim,
        "by_label": by_label,
        "mixtures": [m.as_dict() for m in mixtures],
        "fitted_to": {
            "data": ds.name,
            "images": n,
            "draws_per_image": draws,
            "what": "draws of q(z|x), the encoder's posterior, of the training images",
            "seed": seed,
            "rule": rule,
            **({"held_out_log_density": {str(k): round(v, 4) for k, v in scores.items()}} if scores else {}),
        },
    }
    ks = sorted(set(chosen))
    count = str(ks[0]) if len(ks) == 1 else f"{ks[0]}-{ks[-1]}"
    line = (
        f"prior: a mixture of {count} full-covariance Gaussian{'s' if ks[-1] > 1 else ''}{' per class' if by_label else ''}"
        f" fitted to {n * draws:,} draws of q(z|x) of the {n:,} {ds.name} training images "
        f"({'K asked for' if choice.k is not None else 'K by held-out likelihood'}; "
        f"{time.perf_counter() - t0:.1f} s); `--prior normal` samples N(0, I)"
    )
    return spec, line


def _pooled(mixtures: list[Mixture], sizes: list[int]) -> Mixture:
    """One mixture of several, each weighted by its number of images."""
    share = np.asarray(sizes, dtype=np.float64) / sum(sizes)
    return Mixture(
        np.concatenate([s * m.weights for s, m in zip(share, mixtures)]),
        np.concatenate([m.means for m in mixtures]),
        np.concatenate([m.cholesky for m in mixtures]),
    )


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
