"""The priors a decoder samples from (numpy only): N(0, I), and a mixture fitted to the encoded training data.

A VAE is trained against N(0, I), but its encoder does not fill N(0, I): the aggregate posterior (where the
encoder puts the training images) leaves holes, and z drawn in a hole decodes to a blur. `vaectl export` fits a
mixture of full-covariance Gaussians to draws of q(z | x) of the training images and writes it into the
decoder's metadata (contract.PRIOR_KEY); sampling from it by default gives images like the reconstructions.

Every prior draws a latent as z = center + temperature * offset, from `normals_per_sample` standard normals
per latent taken in rows from one numpy Generator, so the images of a seed do not depend on the batch size:
  N(0, I):  center 0, offset the D normals (exactly what `Decoder.sample` drew before mixtures existed)
  mixture:  the first normal e_0 picks component k (the first k whose cumulative weight exceeds Phi(e_0));
            center mu_k, offset L_k @ (e_1 .. e_D), with L_k the Cholesky factor of the component's covariance
"""

from __future__ import annotations

import functools
import math
from typing import Any

import numpy as np

from .. import contract
from ..contract import GraphInfo
from ..errors import UserInputError, arg

NORMAL = "normal"
MIXTURE = "gmm"
LOG_2PI = math.log(2 * math.pi)
_ERFC = np.vectorize(math.erfc, otypes=[np.float64])


def as_rng(seed_or_rng) -> np.random.Generator:
    """A numpy Generator from a seed (a non-negative integer), None (fresh entropy) or a Generator."""
    if isinstance(seed_or_rng, np.random.Generator):
        return seed_or_rng
    if seed_or_rng is not None and (
        isinstance(seed_or_rng, bool) or not isinstance(seed_or_rng, (int, np.integer)) or seed_or_rng < 0
    ):
        raise UserInputError(f"a seed is a non-negative integer, got {seed_or_rng!r}")
    return np.random.default_rng(seed_or_rng)


def normal_cdf(x: np.ndarray) -> np.ndarray:
    """Phi(x), the standard normal's CDF, float64."""
    return 0.5 * _ERFC(-np.asarray(x, dtype=np.float64) / math.sqrt(2.0))


class Prior:
    """A distribution over the latent space that a decoder samples from."""

    name: str = ""  # what --prior takes and the explorer shows
    description: str = ""  # one line for users
    latent_dim: int = 0
    normals_per_sample: int = 0  # standard normals one latent consumes
    by_label: bool = False  # one distribution per label: the draws and the moments depend on the label

    def parts(self, normals: np.ndarray, labels=None) -> tuple[np.ndarray, np.ndarray]:
        """(center, offset), float64 (n, D), from standard normals (n, normals_per_sample)."""
        raise NotImplementedError

    def log_density(self, z, labels=None) -> np.ndarray:
        """log p(z), float64 (n,), for latents z (n, D)."""
        raise NotImplementedError

    def moments(self, label=None) -> tuple[np.ndarray, np.ndarray]:
        """(mean, standard deviation) of each latent component, float64 (D,) each."""
        raise NotImplementedError

    def draw_parts(self, n: int, seed_or_rng=None, labels=None) -> tuple[np.ndarray, np.ndarray]:
        """(center, offset), float64 (n, D): the latents are (center + temperature * offset).astype(float32)."""
        rng = as_rng(seed_or_rng)
        return self.parts(rng.standard_normal((n, self.normals_per_sample)), labels)

    def latents(self, n: int, seed_or_rng=None, temperature: float = 1.0, labels=None) -> np.ndarray:
        """n latents, float32 (n, D); temperature scales the spread around each center."""
        center, offset = self.draw_parts(n, seed_or_rng, labels)
        return compose(center, offset, temperature)

    def __repr__(self) -> str:
        return f"<Prior {self.name}: {self.description}>"


def compose(center: np.ndarray, offset: np.ndarray, temperature: float) -> np.ndarray:
    """The latents of (center, offset) at a temperature: computed in float64, rounded once to float32."""
    return (center + temperature * offset).astype(np.float32)


class NormalPrior(Prior):
    """N(0, I): what the VAE was trained against."""

    name = NORMAL

    def __init__(self, latent_dim: int):
        self.latent_dim = self.normals_per_sample = int(latent_dim)
        self.description = "N(0, I), the standard normal the model was trained against"

    def parts(self, normals, labels=None):
        normals = np.asarray(normals, dtype=np.float64)
        return np.zeros_like(normals), normals

    def log_density(self, z, labels=None):
        z = _as_latents(z, self.latent_dim)
        return -0.5 * (z**2 + LOG_2PI).sum(1)

    def moments(self, label=None):
        return np.zeros(self.latent_dim), np.ones(self.latent_dim)


class MixturePrior(Prior):
    """A mixture of full-covariance Gaussians, one mixture for every label or one per label (contract.PRIOR_KEY)."""

    name = MIXTURE

    def __init__(self, spec: dict[str, Any]):
        self.spec = spec
        self.by_label = contract.prior_by_label(spec)
        self.latent_dim = int(contract.prior_latent_dim(spec))
        arrays = [contract.mixture_arrays(m, self.latent_dim) for m in contract.prior_mixtures(spec)]
        self.weights = [w for w, _, _ in arrays]  # (K,) each
        self.means = [mu for _, mu, _ in arrays]  # (K, D)
        self.cholesky = [chol for _, _, chol in arrays]  # (K, D, D)
        self.normals_per_sample = self.latent_dim + 1
        self._cumulative = [np.cumsum(w) for w in self.weights]
        self.description = describe_mixture(spec, [len(w) for w in self.weights])

    # the density's parts, made on first use: sampling (every `vaectl generate`) needs neither
    @functools.cached_property
    def _inverse(self) -> list[np.ndarray]:
        return [np.linalg.inv(c) for c in self.cholesky]  # L^-1, for the Mahalanobis distances

    @functools.cached_property
    def _log_norm(self) -> list[np.ndarray]:
        return [  # log w_k - log |L_k| - D/2 log(2 pi)
            np.log(w) - np.log(np.diagonal(c, axis1=1, axis2=2)).sum(1) - 0.5 * self.latent_dim * LOG_2PI
            for w, c in zip(self.weights, self.cholesky)
        ]

    def _mixture_rows(self, labels, n: int) -> np.ndarray:
        """The mixture index of each of n rows: 0 for a shared mixture, the label for one per label."""
        if not self.by_label:
            return np.zeros(n, dtype=np.int64)
        if labels is None:
            raise UserInputError("this prior has one mixture per class: give the labels")
        rows = np.broadcast_to(np.asarray(labels, dtype=np.int64).reshape(-1), (n,))
        if len(rows) and (rows.min() < 0 or rows.max() >= len(self.weights)):
            raise UserInputError(f"label out of range for a prior of {len(self.weights)} classes")
        return rows

    def parts(self, normals, labels=None):
        normals = np.asarray(normals, dtype=np.float64)
        n = len(normals)
        center, offset = np.empty((n, self.latent_dim)), np.empty((n, self.latent_dim))
        rows = self._mixture_rows(labels, n)
        uniform = normal_cdf(normals[:, 0])  # (n,) in [0, 1]
        for m in sorted(set(rows.tolist())):  # (not np.unique: it imports numpy.ma, 15 ms of a CLI run)
            pick = rows == m
            k = np.minimum(np.searchsorted(self._cumulative[m], uniform[pick], side="right"), len(self.weights[m]) - 1)
            center[pick] = self.means[m][k]  # (n_m, D)
            offset[pick] = np.einsum("nij,nj->ni", self.cholesky[m][k], normals[pick, 1:])  # L_k @ e
        return center, offset

    def component_log_densities(self, z, mixture: int = 0) -> np.ndarray:
        """log w_k + log N(z; mu_k, L_k L_k^T) of each component, float64 (n, K)."""
        return component_log_densities(
            _as_latents(z, self.latent_dim), self.means[mixture], self._inverse[mixture], self._log_norm[mixture]
        )

    def log_density(self, z, labels=None):
        z = _as_latents(z, self.latent_dim)
        rows = self._mixture_rows(labels, len(z))
        out = np.empty(len(z))
        for m in sorted(set(rows.tolist())):  # (not np.unique: it imports numpy.ma, 15 ms of a CLI run)
            pick = rows == m
            out[pick] = log_sum_exp(self.component_log_densities(z[pick], m))
        return out

    def moments(self, label=None):
        m = 0 if not self.by_label or label is None else int(label)
        mean, cov = mixture_moments(self.weights[m], self.means[m], self.cholesky[m])
        return mean, np.sqrt(np.diagonal(cov))


def component_log_densities(z, means, inverse_cholesky, log_norm, chunk: int = 4096) -> np.ndarray:
    """log_norm_k - |L_k^-1 (z - mu_k)|^2 / 2 for every component: float64 (n, K).

    One matrix product for all components: z @ [L_1^-T ... L_K^-T] minus each mean's image, in chunks of rows."""
    k, d = means.shape
    weights = np.swapaxes(inverse_cholesky, 1, 2).transpose(1, 0, 2).reshape(d, k * d)  # (D, K*D): L_k^-T side by side
    shifts = np.einsum("kd,ked->ke", means, inverse_cholesky).reshape(k * d)  # (K*D,): L_k^-1 mu_k
    out = np.empty((len(z), k))
    for start in range(0, len(z), chunk):
        y = (z[start : start + chunk] @ weights - shifts).reshape(-1, k, d)  # (b, K, D): whitened by each component
        out[start : start + chunk] = log_norm - 0.5 * np.einsum("bkd,bkd->bk", y, y)
    return out


def log_sum_exp(a: np.ndarray) -> np.ndarray:
    """log(sum(exp(a), axis=1)) without overflow: (n, K) -> (n,)."""
    top = a.max(1)
    return top + np.log(np.exp(a - top[:, None]).sum(1))


def mixture_moments(weights, means, cholesky) -> tuple[np.ndarray, np.ndarray]:
    """The mixture's mean (D,) and covariance (D, D): sum_k w_k (Sigma_k + mu_k mu_k^T) - mean mean^T."""
    mean = weights @ means
    second = np.einsum(
        "k,kij->ij", weights, cholesky @ np.swapaxes(cholesky, 1, 2) + means[:, :, None] * means[:, None]
    )
    return mean, second - np.outer(mean, mean)


def span(values) -> str:
    """'8' when all values are 8, '8-16' when they range from 8 to 16 (a mixture per class each has its own)."""
    low, high = min(values), max(values)
    return str(low) if low == high else f"{low}-{high}"


def describe_mixture(spec: dict, components: list[int]) -> str:
    """One line: what the mixture is (with `components` in each of its mixtures) and what it was fitted to."""
    what = f"mixture of {span(components)} full-covariance Gaussian{'s' if max(components) > 1 else ''}"
    if contract.prior_by_label(spec):
        what += " per class"
    widths = [len(dims) for dims in map(contract.mixture_dims, contract.prior_mixtures(spec)) if dims is not None]
    if widths:
        what += f" over {span(widths)} of the {contract.prior_latent_dim(spec)} dimensions"
    fitted = contract.prior_fitted_to(spec)
    images = fitted.get("images")
    data = fitted.get("data")
    of = fitted.get("of_images")
    share = f" of the {of:,}" if isinstance(of, int) and isinstance(images, int) and of > images else ""
    source = f" of {images:,}{share} {data + ' ' if data else ''}training images" if isinstance(images, int) else ""
    return f"{what} fitted to the encoded training data (draws of q(z|x){source})"


def _as_latents(z, latent_dim: int) -> np.ndarray:
    z = np.asarray(z, dtype=np.float64)
    if z.ndim == 1:
        z = z[None]
    if z.ndim != 2 or z.shape[1] != latent_dim:
        raise UserInputError(f"expected latents of shape (N, {latent_dim}), got {z.shape}")
    return z


# ----------------------------------------------------------------------------- a graph's priors


def priors_of(info: GraphInfo) -> list[Prior]:
    """The priors a decoder can sample from, its default first: the export's fitted prior when it carries one
    this vaectl reads, then N(0, I) (always there)."""
    normal = NormalPrior(info.config.latent_dim)
    if info.prior is not None and contract.prior_kind(info.prior) == contract.PRIOR_GMM:
        return [MixturePrior(info.prior), normal]
    return [normal]


def prior_named(info: GraphInfo, name: str | None = None, source: str = "the decoder") -> Prior:
    """The prior called `name` (None: the graph's default), or UserInputError listing those there are."""
    priors = priors_of(info)
    if name is None:
        return priors[0]
    for prior in priors:
        if prior.name == name:
            return prior
    names = ", ".join(p.name for p in priors)
    if name == MIXTURE:
        raise UserInputError(
            f"{arg('prior', name)}: {source} carries no fitted prior (exported with {arg('prior', 'normal')}, or by an "
            f"older vaectl); its priors: {names}"
        )
    raise UserInputError(f"unknown prior {name!r}; {source} has: {names}")
