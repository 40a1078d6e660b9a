"""Putting a number on a model (torch-free): negative ELBO, importance-weighted NLL, active units.

The math runs on numpy in float64 and takes the model as two callables, so the PyTorch checkpoint
and the ONNX graphs are scored by the same code on the same random draws:
    encode(x float32 (B, C, H, W), y int64 (B,) | None) -> (mu, logvar) float (B, D)
    decode(z float32 (B, D), y | None) -> pixel means in [0, 1], float (B, C, H, W)
A row-context model (pixels depend on the rows above them, not only on z) gives one more array each way:
    encode(x, y) -> (mu, logvar, context_logits (B, C, H, W)), the term from x's real rows above each pixel
    decode(z, y, context_logits) -> pixel means sigmoid(base_logits(z) + context_logits)
The bounds are computed under N(0, I), the standard normal prior of the ELBO (the one training's KL term uses;
a beta = 0 model was trained without it), and, given a `prior` (a vaectl.prior.Prior: the mixture `vaectl
generate` samples from), under it too, from the same draws. All figures are per image, in nats.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np

from .errors import UserInputError, arg, plural

IWAE_K = 1000  # importance samples per image for the IWAE bound, by default
FEW_IMAGES = 100  # below this many images the figures move by more than their differences between models
ACTIVE_UNIT_THRESHOLD = 0.01  # Burda et al. (2016): active when Cov_x(E_q[z | x]) > 0.01
PROB_EPS = 1e-7  # decoder outputs are float32 sigmoids: keep log(p) and log(1 - p) finite
GAUSSIAN_VARIANCE = 0.5  # summed squared error == -log N(x; mean, 1/2) - (D/2) log(pi)
LOG_2PI = math.log(2 * math.pi)

LOG_256 = math.log(256)  # an 8-bit value's bin is 1/256 wide on [0, 1]: log p(bin) ~ log density - log 256

CONVENTIONS = {
    "bernoulli": "bernoulli likelihood: pixels in [0, 1] scored with binary cross-entropy summed over pixels "
    "(exact NLL on binarized data; on continuous data a score bounded below by the pixels' entropy); "
    "bits/dim = NLL / (D ln 2), D = channels x height x width",
    "gaussian": f"gaussian likelihood with fixed variance {GAUSSIAN_VARIANCE} per pixel "
    "(log-density: minus summed squared error minus (D/2) log(pi); training logs the summed squared error, "
    "without the constant); {bpd}",
    "gaussian-learned": "gaussian likelihood with the model's learned sigma per channel (log-density of the "
    "pixels in [0, 1]); {bpd}",
}
# A density on [0, 1]-scaled pixels, in the discrete-data convention of colour-image papers: bits per 8-bit
# value, the density's NLL plus log(256) per dimension for the change of scale.
_DENSITY_BPD = "bits/dim = (NLL + D ln 256) / (D ln 2), D = channels x height x width: bits per 8-bit value"
CONVENTIONS = {name: text.replace("{bpd}", _DENSITY_BPD) for name, text in CONVENTIONS.items()}
DENSITIES = ("gaussian", "gaussian-learned")  # likelihoods that are densities on [0, 1], not probabilities


def bits_per_dim(nll: float, num_pixels: int, likelihood: str) -> float:
    """Bits per dimension of an NLL in nats per image (CONVENTIONS): a density's gets log(256) per dimension
    for the change of scale from [0, 1] to the 256 values of 8-bit data."""
    return (nll + (num_pixels * LOG_256 if likelihood in DENSITIES else 0.0)) / (num_pixels * math.log(2))


@dataclass
class EvalReport:
    n: int
    k: int
    likelihood: str
    convention: str
    latent_dim: int
    num_pixels: int
    neg_elbo: float  # reconstruction + KL (beta = 1)
    recon: float  # E_q[-log p(x | z)], Monte Carlo over the k draws
    kl: float  # KL(q(z | x) || N(0, I)), closed form
    iwae_nll: float  # -log (1/k sum_k p(x, z_k) / q(z_k | x)), an upper bound on -log p(x)
    bits_per_dim: float  # iwae_nll per dimension in bits (bits_per_dim(): the CONVENTIONS of the likelihood)
    active_units: int
    posterior_var: float  # mean sigma^2 of q(z | x); near 0 means the posterior collapsed to a point (beta = 0)
    kl_per_dim: list[float] = field(default_factory=list)
    entropy_floor: float | None = None  # bernoulli: mean summed binary entropy of the pixels
    binarized: bool = False
    seed: int = 0
    # under the prior `generate` samples from, when it is not N(0, I): its name and description, the negative
    # ELBO with KL(q || prior) estimated from the k draws, and the IWAE bound
    prior: str | None = None
    prior_description: str | None = None
    neg_elbo_prior: float | None = None
    iwae_nll_prior: float | None = None
    dataset: str = ""  # what was scored: the dataset's name,
    split: str = "test"  # its test split, or "hold-out" (data/VALIDATION_FRACTION held out: no test split)
    split_size: int = 0  # images in that split (n: the first n of them were scored)

    def data(self) -> str:
        """'mnist-sample, test split, the first 50 of 1,000 images': what was scored."""
        which = "test split" if self.split == "test" else "validation hold-out (the data has no test split)"
        count = plural(self.n, "image")
        if self.split_size > self.n:
            count = f"the first {self.n:,} of {plural(self.split_size, 'image')}"
        return f"{self.dataset}, {which}, {count}"

    def warnings(self) -> list[str]:
        if self.n >= FEW_IMAGES:
            return []
        return [
            f"only {plural(self.n, 'image')} scored: figures from fewer than {FEW_IMAGES} images are too noisy "
            "to compare models; score more images"
        ]

    def to_dict(self) -> dict:
        prior = self.iwae_nll_prior
        bits_prior = None if prior is None else bits_per_dim(prior, self.num_pixels, self.likelihood)
        return {**asdict(self), "bits_per_dim_prior": bits_prior, "warnings": self.warnings()}


def log_likelihood(x: np.ndarray, mean: np.ndarray, likelihood: str, log_sigma=()) -> np.ndarray:
    """log p(x | z) summed over pixels: x (B, P), mean (..., B, P) -> (..., B), float64.

    gaussian-learned: log_sigma has one value per channel; P is channel-major (C, H, W) flattened."""
    mean = mean.astype(np.float64)
    if likelihood == "bernoulli":
        p = np.clip(mean, PROB_EPS, 1 - PROB_EPS)
        return (x * np.log(p) + (1 - x) * np.log1p(-p)).sum(-1)
    if likelihood == "gaussian":
        return -((x - mean) ** 2).sum(-1) / (2 * GAUSSIAN_VARIANCE) - 0.5 * x.shape[-1] * math.log(
            2 * math.pi * GAUSSIAN_VARIANCE
        )
    if likelihood == "gaussian-learned":
        if len(log_sigma) == 0:
            raise UserInputError("this gaussian-learned model carries no log_sigma in its config; re-export it")
        log_s = np.repeat(np.asarray(log_sigma, dtype=np.float64), x.shape[-1] // len(log_sigma))  # (P,)
        return (-0.5 * ((x - mean) * np.exp(-log_s)) ** 2 - log_s - 0.5 * LOG_2PI).sum(-1)
    raise UserInputError(f"unknown likelihood {likelihood!r}")


def bernoulli_entropy_floor(x: np.ndarray) -> float:
    """Mean over images of sum_i H(x_i): no Bernoulli model's cross-entropy can go below it."""
    x = x.reshape(len(x), -1).astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        h = -(np.where(x > 0, x * np.log(x), 0.0) + np.where(x < 1, (1 - x) * np.log1p(-x), 0.0))
    return float(h.sum(1).mean())


def score(
    encode: Callable,
    decode: Callable,
    images: np.ndarray,
    labels: np.ndarray | None,
    *,
    likelihood: str,
    row_context: bool = False,
    k: int = IWAE_K,
    seed: int = 0,
    binarize: bool = False,
    batch_size: int = 64,
    max_rows: int = 8192,
    progress: Callable[[int, int], None] | None = None,
    prior=None,
    log_sigma=(),
) -> EvalReport:
    """Score uint8 images (N, C, H, W). `max_rows` bounds the decoder batch (images x draws).
    log_sigma: the gaussian-learned likelihood's per-channel log sigma (the trained config's).

    prior: a Prior (log_density(z, labels)) to score under beside N(0, I); None or N(0, I) itself: only N(0, I)."""
    if k < 1:
        raise UserInputError(f"{arg('k')} must be at least 1, got {k}")
    if len(images) == 0:
        raise UserInputError("no images to evaluate")
    rng = np.random.default_rng(seed)
    x_all = images.astype(np.float32) / 255.0  # (N, C, H, W)
    if binarize:  # a fixed stochastic binarization: pixel ~ Bernoulli(intensity)
        x_all = (np.random.default_rng(seed + 1).random(x_all.shape) < x_all).astype(np.float32)
    n, num_pixels = len(x_all), int(np.prod(x_all.shape[1:]))
    other = prior is not None and prior.name != "normal"
    sums = np.zeros(6)  # recon, kl, iwae, posterior variance; under the other prior: -ELBO, iwae
    kl_dims, mus = np.zeros(0), []
    for start in range(0, n, batch_size):
        x = x_all[start : start + batch_size]  # (B, C, H, W)
        y = None if labels is None else labels[start : start + batch_size]
        encoded = encode(x, y)
        mu, logvar = (np.asarray(a, dtype=np.float64) for a in encoded[:2])  # (B, D), (B, D)
        context = encoded[2] if row_context else None  # (B, C, H, W) or None
        b, d = mu.shape
        std = np.exp(0.5 * logvar)
        x_flat = x.reshape(b, -1).astype(np.float64)  # (B, P)
        log_w = np.empty((k, b))  # log p(x, z_k) - log q(z_k | x)
        log_w_prior = np.empty((k, b))  # the same with the other prior's log p(z_k)
        log_px = np.empty((k, b))
        chunk = max(1, max_rows // b)
        for k0 in range(0, k, chunk):
            kc = min(chunk, k - k0)
            eps = rng.standard_normal((kc, b, d))  # (kc, B, D)
            z = mu + std * eps  # (kc, B, D)
            y_rep = None if y is None else np.tile(y, kc)
            z_rows = z.reshape(kc * b, d).astype(np.float32)
            if context is None:
                mean = decode(z_rows, y_rep)
            else:  # draw j of image i sits at row j * b + i, like z_rows
                mean = decode(z_rows, y_rep, np.tile(context, (kc, 1, 1, 1)))
            mean = np.asarray(mean).reshape(kc, b, -1)
            lp = log_likelihood(x_flat, mean, likelihood, log_sigma)  # (kc, B)
            log_pz = -0.5 * (z**2 + LOG_2PI).sum(-1)  # (kc, B)
            log_qz = -0.5 * (eps**2 + logvar + LOG_2PI).sum(-1)  # (kc, B)
            log_px[k0 : k0 + kc] = lp
            log_w[k0 : k0 + kc] = lp + log_pz - log_qz
            if other:
                log_prior = prior.log_density(z.reshape(kc * b, d), y_rep).reshape(kc, b)  # (kc, B)
                log_w_prior[k0 : k0 + kc] = lp + log_prior - log_qz
        kl = 0.5 * (mu**2 + np.exp(logvar) - 1.0 - logvar)  # (B, D), closed form
        iwae = _neg_log_mean_exp(log_w)  # (B,)
        sums[:4] += [-log_px.mean(0).sum(), kl.sum(), iwae.sum(), np.exp(logvar).mean(1).sum()]
        if other:
            sums[4:] += [-log_w_prior.mean(0).sum(), _neg_log_mean_exp(log_w_prior).sum()]
        kl_dims = kl.sum(0) if start == 0 else kl_dims + kl.sum(0)
        mus.append(mu)
        if progress:
            progress(b, n)
    recon, kl, iwae, posterior_var, neg_elbo_prior, iwae_prior = sums / n
    mu_all = np.concatenate(mus)  # (N, D)
    active = int((mu_all.var(0) > ACTIVE_UNIT_THRESHOLD).sum()) if n > 1 else 0
    return EvalReport(
        n=n,
        k=k,
        likelihood=likelihood,
        convention=CONVENTIONS[likelihood],
        latent_dim=int(mu_all.shape[1]),
        num_pixels=num_pixels,
        neg_elbo=recon + kl,
        recon=recon,
        kl=kl,
        iwae_nll=iwae,
        bits_per_dim=bits_per_dim(iwae, num_pixels, likelihood),
        active_units=active,
        posterior_var=posterior_var,
        kl_per_dim=[round(float(v), 5) for v in kl_dims / n],
        entropy_floor=bernoulli_entropy_floor(x_all) if likelihood == "bernoulli" else None,
        binarized=binarize,
        seed=seed,
        prior=prior.name if other else None,
        prior_description=prior.description if other else None,
        neg_elbo_prior=neg_elbo_prior if other else None,
        iwae_nll_prior=iwae_prior if other else None,
    )


def _neg_log_mean_exp(log_w: np.ndarray) -> np.ndarray:
    """-log(mean_k exp(log_w[k])) per column, (k, B) -> (B,), log-sum-exp in float64."""
    m = log_w.max(0)
    return -(m + np.log(np.exp(log_w - m).mean(0)))


def sigmoid(logits: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * logits))  # = 1 / (1 + exp(-logits)), without overflow warnings


def training_scale_offset(r: EvalReport) -> float:
    """What the training log leaves out of the negative log-likelihood: 0 for bernoulli (its loss is the
    NLL); for gaussian the constant (D/2) log(pi), D pixels (training sums squared errors: CONVENTIONS)."""
    return 0.5 * r.num_pixels * math.log(math.pi) if r.likelihood == "gaussian" else 0.0


def format_report(r: EvalReport) -> str:
    """The report `vaectl eval` prints: a column of labels, a column of numbers aligned on the point."""
    nll = f"IWAE NLL bound (k={r.k})"
    rows: list[tuple[str, str, str]] = []  # (label, number, what follows)

    def figure(label: str, value: float, rest: str) -> None:
        rows.append((label, f"{value:.3f}", f"nats  {rest}"))

    def n01(indent: str) -> None:
        figure(f"{indent}negative ELBO", r.neg_elbo, f"(reconstruction {r.recon:.3f} + KL {r.kl:.3f})")
        offset = training_scale_offset(r)
        if offset:
            figure(
                f"{indent}  as training logs it",
                r.neg_elbo - offset,
                f"(summed squared error {r.recon - offset:.3f} + KL {r.kl:.3f}: the line above less "
                f"(D/2) log(pi) = {offset:.3f}; training's val weighs the KL by beta)",
            )
        figure(f"{indent}{nll}", r.iwae_nll, f"({r.bits_per_dim:.4f} bits/dim)")

    headings: dict[int, str] = {}  # row index -> a line above that row
    if r.prior is not None and r.iwae_nll_prior is not None and r.neg_elbo_prior is not None:
        headings[len(rows)] = "under N(0, I), the standard normal prior of the ELBO (its KL term):"
        n01("  ")
        headings[len(rows)] = f"under {r.prior}, the prior generate samples from ({r.prior_description}):"
        figure(
            "  negative ELBO",
            r.neg_elbo_prior,
            f"(reconstruction {r.recon:.3f} + KL to this prior, estimated from the k draws)",
        )
        bits = bits_per_dim(r.iwae_nll_prior, r.num_pixels, r.likelihood)
        figure(f"  {nll}", r.iwae_nll_prior, f"({bits:.4f} bits/dim)")
    else:
        n01("")
    rows.append(
        ("active units", f"{r.active_units} / {r.latent_dim}", f"      (mean posterior variance {r.posterior_var:.3g})")
    )
    if r.entropy_floor is not None and not r.binarized:
        figure("entropy floor", r.entropy_floor, "(no bernoulli model scores below this on these pixels)")
    label_width = max(len(label) for label, _, _ in rows) + 2
    number_width = max(len(number) for _, number, _ in rows)
    lines = [
        f"data: {r.data()}",
        f"k = {r.k} importance samples per image (seed {r.seed}){', binarized' if r.binarized else ''}",
        f"convention: {r.convention}",
    ]
    for i, (label, number, rest) in enumerate(rows):
        if i in headings:
            lines.append(headings[i])
        lines.append(f"{label:<{label_width}}{number:>{number_width}} {rest}")
    kl = " ".join(f"{v:.2f}" for v in r.kl_per_dim)
    lines.append(f"{'KL per dimension':<{label_width}}{kl}  (to N(0, 1))")
    lines += [f"warning: {w}" for w in r.warnings()]
    return "\n".join(lines)
