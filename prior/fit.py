"""Fitting the prior `vaectl export` writes into the decoder: a Gaussian mixture of the aggregate posterior.

The aggregate posterior is where the encoder puts the training images: one draw z ~ q(z | x) per image (several
per image for small datasets), not the posterior means. Means leave out q's spread, so a mixture fitted to them
collapses onto the dimensions a model does not use (their means are all ~0) and its log density is useless for
scoring. The mixture (prior/mixture.py) has K full-covariance components over the latent dimensions the encoder
uses (mean KL of q(z_d | x) to N(0, 1) of UNUSED_KL or more): on the others q is N(0, 1) for every image, so
they stay N(0, 1), an identity block in every component. Left in, those dimensions cost the mixture
D (D + 3) / 2 numbers a component for nothing, and held-out likelihood then stops K early (a 64-D model using 12
dimensions: 16 components over all 64, 128 over the 12, a better held-out score and sharper samples).
K is chosen by held-out likelihood: candidate mixtures (K = 1, 2, 4, ... while the score improves, a capped
number of EM iterations each) are fitted to the draws of 90 % of the images and scored on the draws of the
other 10 %; the best candidate's EM then continues on all of them. The fit is bounded: at most FIT_DRAWS draws
(a larger dataset is subsampled, its images in a seeded order), so it takes seconds on the embedded sample and
well under a minute on 60,000 images. Everything is deterministic for a seed. numpy only: the model's encoder
comes in as a callable (export and `vaectl eval` of a checkpoint pass their torch encoder), so export and
training share this fit.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .. import contract
from ..data import ImageDataset
from ..errors import UserInputError, arg
from ..models.config import VAEConfig
from . import NormalPrior, span
from .mixture import TOL, Mixture, fit_mixture

# encode(images float32 (B, C, H, W) in [0, 1], labels int64 (B,) or None) -> (mu, logvar, ...) arrays (B, D)
Encode = Callable[[np.ndarray, "np.ndarray | None"], tuple]

SEED = 0
CANDIDATES = (1, 2, 4, 8, 16, 32, 64, 128)  # K tried, in order, while held-out likelihood improves
# K at most images / (10 A), A the dimensions mixed: a full covariance over them has A (A + 3) / 2 numbers
IMAGES_PER_COMPONENT_PER_DIM = 10
MIN_DRAWS = 20_000  # draws of q(z | x) to fit to: several per image below this many images
FIT_DRAWS = 50_000  # draws fitted at most (the images of a larger dataset are subsampled): bounds the fit's time
HOLDOUT_DRAWS = 5_000  # draws of the images held out while choosing K, at most 10 % of the images
HOLDOUT_FRACTION = 0.1
SELECT_MAX_ITER = 30  # EM iterations of a candidate K at most: enough to rank them (the chosen one runs on)
ENCODE_BATCH = 1_000
# A dimension whose posteriors' mean KL to N(0, 1) is under this is left to N(0, 1): that costs the prior at most
# this much log density per draw, as the aggregate posterior's KL to N(0, 1) is at most its posteriors' mean KL
# (convexity). Unused dimensions of trained models sit near 1e-4 nats; 0.01 keeps the barely used ones in.
UNUSED_KL = 0.01


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
    raise UserInputError(f"{arg('prior')} takes normal, gmm or gmm:K (K components, K >= 1), got {text!r}")


def posterior_draws(encode: Encode, images: np.ndarray, labels: np.ndarray | None, draws: int, seed: int) -> np.ndarray:
    """z ~ q(z | x), float64 (N, draws, D): `draws` per image of uint8 images (N, C, H, W)."""
    return draws_and_kl(encode, images, labels, draws, seed)[0]


def draws_and_kl(
    encode: Encode, images: np.ndarray, labels: np.ndarray | None, draws: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """(posterior_draws, the mean KL of q(z_d | x) to N(0, 1) of each dimension d over the images, (D,))."""
    rng = np.random.default_rng(seed)
    out, kl_sum = [], 0.0
    for start in range(0, len(images), ENCODE_BATCH):
        x = images[start : start + ENCODE_BATCH].astype(np.float32) / 255
        y = None if labels is None else labels[start : start + ENCODE_BATCH]
        mu, logvar = (np.asarray(t, dtype=np.float64) for t in encode(x, y)[:2])  # (B, D) each
        eps = rng.standard_normal((len(mu), draws, mu.shape[1]))  # (B, draws, D)
        out.append(mu[:, None] + np.exp(0.5 * logvar)[:, None] * eps)
        kl_sum = kl_sum + (0.5 * (mu**2 + np.exp(logvar) - 1 - logvar)).sum(0)  # KL(N(mu, s^2) || N(0, 1)), (D,)
    return np.concatenate(out), np.asarray(kl_sum) / len(images)


def mixed_dims(kl_per_dim: np.ndarray) -> np.ndarray:
    """The dimensions the mixture covers, ascending: those whose mean KL of q(z_d | x) to N(0, 1) is UNUSED_KL
    or more, or all of them when none is (nothing then to tell apart)."""
    used = np.flatnonzero(kl_per_dim >= UNUSED_KL)
    return used if len(used) else np.arange(len(kl_per_dim))


def max_components(images: int, dims: int) -> int:
    return max(1, images // (IMAGES_PER_COMPONENT_PER_DIM * dims))


@dataclass(frozen=True)
class Subsets:
    """Which images' draws a fit uses: the first `used` images of one seeded permutation of the training
    images (all of them up to FIT_DRAWS draws), the first `held` of those held out while choosing K."""

    order: np.ndarray  # (N,) a permutation of the images
    draws: int  # draws of q(z | x) per image
    used: int
    held: int

    @classmethod
    def of(cls, n: int, seed: int) -> Subsets:
        draws = max(1, math.ceil(MIN_DRAWS / n))
        used = min(n, FIT_DRAWS // draws)
        held = max(1, min(math.ceil(HOLDOUT_DRAWS / draws), round(used * HOLDOUT_FRACTION)))
        return cls(np.random.default_rng(seed).permutation(n)[:used], draws, used, held)


def choose_k(
    z: np.ndarray,
    held: int,
    limit: int,
    seed: int,
    log: Callable[[str], None] | None = None,
    offset: float = 0.0,
) -> tuple[Mixture, dict[int, float]]:
    """K by held-out likelihood: fit CANDIDATES (up to `limit`) in turn to the draws of all images but the
    first `held` (SELECT_MAX_ITER EM iterations at most), score the mean log density of the held-out images'
    draws, stop when it no longer improves. z: (images, draws, D). `offset` is added to every score (the
    held-out draws' log density in the dimensions left out of z).
    Returns (the best candidate, {K: held-out mean log density})."""
    d = z.shape[2]
    held_z, fit_z = z[:held].reshape(-1, d), z[held:].reshape(-1, d)
    scores: dict[int, float] = {}
    best: Mixture | None = None
    for k in CANDIDATES:
        if k > min(limit, len(fit_z)) and best is not None:
            break
        candidate = fit_mixture(fit_z, k, seed, max_iter=SELECT_MAX_ITER)
        scores[k] = float(candidate.log_density(held_z).mean()) + offset
        if log is not None:
            log(f"    K = {k:<3d} held-out log density {scores[k]:.3f} nats per draw")
        if best is not None and scores[k] <= scores[best.k]:
            break
        best = candidate
    assert best is not None  # K = 1 is always tried
    return best, scores


def fit_prior(
    encode: Encode,
    config: VAEConfig,
    ds: ImageDataset,
    choice: PriorChoice,
    *,
    by_label: bool = False,
    seed: int = SEED,
    log: Callable[[str], None] | None = None,
) -> tuple[dict, str]:
    """(the contract's prior document, one line saying what was fitted) for a model (its config and encoder)
    and its training data."""
    with _one_blas_thread():
        return _fit_prior(encode, config, ds, choice, by_label, seed, log)


def _one_blas_thread():
    """numpy's BLAS on one thread while fitting. The fit's matrix products are small; on a busy machine
    BLAS threads spin against each other and everything else (measured on a loaded 2-core machine: the same
    fit took 7-10x the CPU time with 2 threads than with 1)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # an install without the [train] extra's threadpoolctl: numpy's default threads
        return contextlib.nullcontext()
    return threadpool_limits(1, user_api="blas")


def fit_rule(choice: PriorChoice) -> str:
    """The rule that set K and the draws fitted, in words (the log line and the document's fitted_to.rule)."""
    draws = (
        f"draws of q(z|x) of the training images ({MIN_DRAWS:,} at least, one per image above that, of "
        f"{FIT_DRAWS:,} images at most: a seeded subsample of a larger dataset)"
    )
    dims = (
        f"over the latent dimensions whose mean KL of q(z|x) to N(0, 1) is {UNUSED_KL:g} nats or more "
        "(mixed_dims; all of them when none is), each other dimension N(0, 1)"
    )
    if choice.k is not None:
        return f"K = {choice.k} (asked for) {dims}, EM to a gain under {TOL} nats per draw on {draws}"
    return (
        f"K {dims}, by held-out log density on {draws}: K = {', '.join(map(str, CANDIDATES))} "
        "(at most images / (10 A), A the dimensions mixed) "
        f"in turn, each fitted ({SELECT_MAX_ITER} EM iterations at most) to the draws of all images but "
        f"{HOLDOUT_FRACTION:.0%} of them ({HOLDOUT_DRAWS:,} draws at most), scored on the held-out images' draws, "
        f"until the score stops improving; the best one's EM continued on all the draws to a gain under {TOL} nats"
    )


def _fit_prior(
    encode: Encode, config: VAEConfig, ds: ImageDataset, choice: PriorChoice, by_label: bool, seed: int, log
) -> tuple[dict, str]:
    t0 = time.perf_counter()
    d = config.latent_dim
    labels = ds.train_labels if config.conditional else None
    groups = (
        [np.arange(len(ds.train))] if not by_label else [np.flatnonzero(labels == y) for y in range(config.num_classes)]
    )
    mixtures: list[Mixture] = []
    scores: dict[int, float] = {}
    used, draws = 0, 1
    mixed: list[list[int]] = []  # each group's mixed dimensions
    left_out_kl = 0.0  # the most any group's left-out dimensions can cost its mixture, nats per draw
    for group in groups:
        subsets = Subsets.of(len(group), seed)
        images = group[subsets.order]
        z, kl = draws_and_kl(encode, ds.train[images], None if labels is None else labels[images], subsets.draws, seed)
        dims = mixed_dims(kl)  # (A,): the mixture's; the others stay N(0, 1)
        rest = np.setdiff1d(np.arange(d), dims)
        z_mixed = z[:, :, dims]  # (images, draws, A)
        if choice.k is not None:
            mixture = fit_mixture(z_mixed.reshape(-1, len(dims)), min(choice.k, z.shape[0] * z.shape[1]), seed)
        else:
            held = z[: subsets.held, :, rest]  # (held images, draws, D - A): N(0, 1) there, the same for every K
            held_rest = (
                float(NormalPrior(len(rest)).log_density(held.reshape(-1, len(rest))).mean()) if len(rest) else 0.0
            )
            start, scores = choose_k(
                z_mixed, subsets.held, max_components(subsets.used, len(dims)), seed, log, offset=held_rest
            )
            mixture = fit_mixture(z_mixed.reshape(-1, len(dims)), start.k, seed, start=start)
        mixtures.append(mixture)
        mixed.append(dims.tolist())
        left_out_kl = max(left_out_kl, float(kl[rest].sum()))
        used, draws = used + subsets.used, max(draws, subsets.draws)
    chosen = [m.k for m in mixtures]
    # each mixture over its dims ("dims" in the document when it leaves some out)
    entries = [m.as_dict(dims if len(dims) < d else None) for m, dims in zip(mixtures, mixed)]
    if by_label and config.no_label_class:  # the "no label" class samples from all of them, over all D
        full = [m.embedded(np.asarray(dims), d) for m, dims in zip(mixtures, mixed)]
        entries.append(_pooled(full, [len(g) for g in groups]).as_dict())
    n = len(ds.train)
    fitted_to = {
        "data": ds.name,
        "images": used,
        "of_images": n,
        "draws_per_image": draws,
        "what": "draws of q(z|x), the encoder's posterior, of the training images",
        "seed": seed,
        "mixed_dims": mixed[0] if len(mixed) == 1 else mixed,
        "left_out_kl": round(left_out_kl, 6),
        "rule": fit_rule(choice),
        **({"held_out_log_density": {str(k): round(v, 4) for k, v in scores.items()}} if scores else {}),
    }
    spec = contract.prior_document(d, by_label, entries, fitted_to)

    of = f"{used:,} of the {n:,}" if used < n else f"the {n:,}"
    widths = [len(m) for m in mixed]
    over = (
        f" over {span(widths)} of the {d} latent dimensions (those the encoder uses; N(0, 1) on the others)"
        if max(widths) < d
        else ""
    )
    line = (
        f"prior: a mixture of {span(chosen)} full-covariance Gaussian{'s' if max(chosen) > 1 else ''}"
        f"{' per class' if by_label else ''}"
        f"{over} fitted to {used * draws:,} draws of q(z|x) of {of} {ds.name} training images "
        f"({'K asked for' if choice.k is not None else 'K by held-out likelihood'}; "
        f"{time.perf_counter() - t0:.1f} s); {arg('prior', 'normal')} samples N(0, I)"
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
