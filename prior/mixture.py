"""A full-covariance Gaussian mixture fitted by EM, numpy only: k-means++ start, a covariance floor.

    mixture = fit_mixture(points, k=8, seed=0)     # points float64 (N, D)
    mixture.log_density(points)                    # (N,), the same density vaectl.prior evaluates
Deterministic for a seed (one numpy Generator drives every random choice).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..contract import mixture_document, over_all_dims
from . import LOG_2PI, component_log_densities, log_sum_exp

MAX_ITER = 100
TOL = 1e-3  # stop when the mean log-likelihood per point gains less than this (nats)
COV_FLOOR = 1e-6  # added to every covariance's diagonal, times the points' mean variance: no singular component
KMEANS_ITER = 20  # at most this many Lloyd iterations after the k-means++ seeding (EM refines the rest)


@dataclass
class Mixture:
    weights: np.ndarray  # (K,), positive, sum 1
    means: np.ndarray  # (K, D)
    cholesky: np.ndarray  # (K, D, D), lower-triangular, positive diagonal
    iterations: int = 0
    converged: bool = False

    @property
    def k(self) -> int:
        return len(self.weights)

    def log_norm(self) -> np.ndarray:
        """log w_k - log |L_k| - D/2 log(2 pi), (K,)."""
        d = self.means.shape[1]
        return np.log(self.weights) - np.log(np.diagonal(self.cholesky, axis1=1, axis2=2)).sum(1) - 0.5 * d * LOG_2PI

    def component_log_densities(self, x: np.ndarray) -> np.ndarray:
        """log w_k + log N(x; mu_k, Sigma_k), (N, K)."""
        return component_log_densities(x, self.means, np.linalg.inv(self.cholesky), self.log_norm())

    def expanded_log_densities(self, x: np.ndarray, pairs: np.ndarray) -> np.ndarray:
        """component_log_densities from the points' pair products (pair_products(x)), for EM's E step: the
        quadratic form expanded, x^T P x - 2 mu^T P x + mu^T P mu with P = Sigma^-1, is one product of the
        (N, D (D + 1) / 2) pairs with the K precisions' upper triangles, half the work of whitening every
        point by every component. The fit centres its points, so float64 keeps the expansion exact enough."""
        d = x.shape[1]
        inverse = np.linalg.inv(self.cholesky)  # (K, D, D): L^-1
        precision = np.swapaxes(inverse, 1, 2) @ inverse  # (K, D, D): Sigma^-1 = L^-T L^-1
        i, j = np.triu_indices(d)
        upper = precision[:, i, j] * np.where(i == j, 1.0, 2.0)  # (K, P): x^T P x = pairs . upper
        linear = np.einsum("kij,kj->ki", precision, self.means)  # (K, D): P mu
        constant = np.einsum("ki,ki->k", linear, self.means)  # (K,): mu^T P mu
        return self.log_norm() - 0.5 * (pairs @ upper.T - 2 * x @ linear.T + constant)

    def log_density(self, x: np.ndarray) -> np.ndarray:
        return log_sum_exp(self.component_log_densities(x))

    def embedded(self, dims: np.ndarray, latent_dim: int) -> Mixture:
        """This mixture of the coordinates `dims` (ascending) as one of all `latent_dim` of them, each other
        coordinate N(0, 1) and independent: mean 0 and an identity block in every component (what
        contract.mixture_arrays reads a mixture with "dims" as)."""
        means, cholesky = over_all_dims(self.means, self.cholesky, dims, latent_dim)
        return Mixture(self.weights, means, cholesky, self.iterations, self.converged)

    def as_dict(self, dims=None) -> dict:
        """The contract's mixture entry (contract.mixture_document): each array as float64 in base64, exactly;
        with `dims`, this mixture is over those coordinates of the latent."""
        return mixture_document(self.weights, self.means, self.cholesky, dims)


def kmeans_plus_plus(x: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """k starting centers (k, D): the first uniformly, each next with probability proportional to its squared
    distance from the nearest center so far (Arthur and Vassilvitskii 2007), the best of 2 + log k such
    candidates each time (the greedy variant scikit-learn uses)."""
    trials = 2 + int(np.log(k))
    sq = (x * x).sum(1)  # (N,)
    centers = [x[rng.integers(len(x))]]
    d2 = ((x - centers[0]) ** 2).sum(1)  # (N,) to the nearest center so far
    for _ in range(1, k):
        cumulative = np.cumsum(d2)
        candidates = np.searchsorted(cumulative, rng.random(trials) * cumulative[-1]).clip(max=len(x) - 1)
        to_candidates = np.maximum(sq[None] - 2 * x[candidates] @ x.T + sq[candidates, None], 0)  # (trials, N)
        options = np.minimum(d2, to_candidates)
        best = int(options.sum(1).argmin())
        centers.append(x[candidates[best]])
        d2 = options[best]
    return np.array(centers)


def kmeans_labels(x: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """Hard assignments (N,): k-means++ seeding, then Lloyd iterations until no point changes cluster."""
    centers = kmeans_plus_plus(x, k, rng)
    sq = (x * x).sum(1)[:, None]
    labels = np.full(len(x), -1)
    for _ in range(KMEANS_ITER):
        new = (sq - 2 * x @ centers.T + (centers * centers).sum(1)).argmin(1)
        if (new == labels).all():
            break
        labels = new
        counts = np.bincount(labels, minlength=k)
        sums = np.stack([np.bincount(labels, weights=x[:, i], minlength=k) for i in range(x.shape[1])], 1)  # (k, D)
        filled = counts > 0
        centers[filled] = sums[filled] / counts[filled, None]  # an emptied cluster keeps its center
    return labels


def pair_products(x: np.ndarray) -> np.ndarray:
    """x_i x_j for i <= j of every row: (N, D (D + 1) / 2). Computed once per fit, so that each M step's
    second moments of all components are one matrix product (resp^T @ pairs) instead of K."""
    d = x.shape[1]
    out = np.empty((len(x), d * (d + 1) // 2))
    start = 0
    for i in range(d):  # row i of the upper triangle: x_i x_i .. x_i x_D (np.triu_indices' order)
        out[:, start : start + d - i] = x[:, i, None] * x[:, i:]
        start += d - i
    return out


def m_step(x: np.ndarray, resp: np.ndarray, floor: float, pairs: np.ndarray | None = None) -> Mixture:
    """Weights, means and covariances (as Cholesky factors) from responsibilities (N, K).

    Sigma_k = E_k[x x^T] - mu_k mu_k^T, E_k the responsibility-weighted mean; `pairs` is pair_products(x)."""
    n, d = x.shape
    k = resp.shape[1]
    pairs = pair_products(x) if pairs is None else pairs
    nk = resp.sum(0) + 10 * np.finfo(np.float64).eps  # (K,)
    means = resp.T @ x / nk[:, None]  # (K, D)
    second = np.empty((k, d, d))
    i, j = np.triu_indices(d)
    second[:, i, j] = resp.T @ pairs / nk[:, None]  # (K, D (D + 1) / 2): the upper triangle of E_k[x x^T]
    second[:, j, i] = second[:, i, j]
    cov = second - means[:, :, None] * means[:, None, :]  # (K, D, D)
    cov[:, np.arange(d), np.arange(d)] += floor
    cholesky = np.empty_like(cov)
    for c in range(k):
        try:
            cholesky[c] = np.linalg.cholesky(cov[c])
        except np.linalg.LinAlgError:  # E[x x^T] - mu mu^T lost its last digits: the centred sum, exactly
            diff = x - means[c]
            exact = diff.T @ (resp[:, c, None] * diff) / nk[c]
            exact.flat[:: d + 1] += floor
            cholesky[c] = np.linalg.cholesky(exact)
    return Mixture(nk / n, means, cholesky)


def fit_mixture(
    x: np.ndarray,
    k: int,
    seed: int = 0,
    max_iter: int = MAX_ITER,
    tol: float = TOL,
    floor: float = COV_FLOOR,
    start: Mixture | None = None,
) -> Mixture:
    """EM for a k-component full-covariance mixture of the points x (N, D) (N >= k), from k-means++ clusters
    or, given `start` (a mixture of k components), from that mixture: EM continued on other points."""
    x = np.asarray(x, dtype=np.float64)
    if len(x) < k:
        raise ValueError(f"{len(x)} points cannot fit {k} components")
    if start is not None and start.k != k:
        raise ValueError(f"a start of {start.k} components for a mixture of {k}")
    rng = np.random.default_rng(seed)
    cov_floor = floor * float(x.var(0).mean())
    center = x.mean(0)
    x = x - center  # the second moments about the data's mean: no cancellation against a large offset
    pairs = pair_products(x)  # (N, D (D + 1) / 2)
    if start is not None:
        mixture = Mixture(start.weights, start.means - center, start.cholesky)
    else:
        resp = np.eye(k)[kmeans_labels(x, k, rng)] if k > 1 else np.ones((len(x), 1))
        mixture = m_step(x, resp, cov_floor, pairs)
    previous = -np.inf
    for it in range(1, max_iter + 1):
        log_joint = mixture.expanded_log_densities(x, pairs)  # E step: (N, K)
        log_px = log_sum_exp(log_joint)  # (N,)
        resp = np.exp(log_joint - log_px[:, None])
        mean_ll = float(log_px.mean())
        mixture = m_step(x, resp, cov_floor, pairs)
        mixture.iterations = it
        if mean_ll - previous < tol:
            mixture.converged = True
            break
        previous = mean_ll
    mixture.means += center
    return mixture
