"""The negative ELBO's parts against closed forms, manual formulas and a Monte Carlo estimate."""

from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch")

from vaectl.training.loss import (  # noqa: E402
    MIN_LOG_SIGMA,
    fitted_log_sigma,
    gaussian_nll_sum,
    kl_divergence,
    negative_elbo,
    reconstruction_loss,
)


def test_kl_matches_the_closed_form_for_diagonal_gaussians():
    mu = torch.tensor([[0.0, 1.0, -2.0]], dtype=torch.float64)
    sigma = torch.tensor([[1.0, 0.5, 3.0]], dtype=torch.float64)
    kl = kl_divergence(mu, 2 * sigma.log())
    # KL(N(m, s^2) || N(0, 1)) = log(1/s) + (s^2 + m^2) / 2 - 1/2, written out per dimension
    expected = [math.log(1 / s) + (s * s + m * m) / 2 - 0.5 for m, s in zip(mu[0].tolist(), sigma[0].tolist())]
    assert kl.shape == (1, 3)
    assert kl[0].tolist() == pytest.approx(expected, rel=1e-12)
    assert kl[0, 0].item() == 0.0  # q equal to the prior


def test_kl_matches_torch_distributions():
    torch.manual_seed(0)
    mu, logvar = torch.randn(5, 4, dtype=torch.float64), torch.randn(5, 4, dtype=torch.float64)
    q = torch.distributions.Normal(mu, (0.5 * logvar).exp())
    p = torch.distributions.Normal(torch.zeros_like(mu), torch.ones_like(mu))
    assert torch.allclose(kl_divergence(mu, logvar), torch.distributions.kl_divergence(q, p))


def test_kl_matches_a_monte_carlo_estimate():
    torch.manual_seed(0)
    mu = torch.tensor([0.7, -1.2], dtype=torch.float64)
    logvar = torch.tensor([-0.5, 0.8], dtype=torch.float64)
    q = torch.distributions.Normal(mu, (0.5 * logvar).exp())
    prior = torch.distributions.Normal(0.0, 1.0)
    z = q.sample((400_000,))  # (S, 2)
    mc = (q.log_prob(z) - prior.log_prob(z)).mean(0)  # E_q[log q - log p]
    assert torch.allclose(kl_divergence(mu[None], logvar[None])[0], mc, atol=0.01)


def test_bernoulli_reconstruction_is_bce_from_logits():
    logits = torch.tensor([[[[-3.0, 0.0], [2.5, 0.3]]]], dtype=torch.float64)  # (1, 1, 2, 2)
    x = torch.tensor([[[[0.0, 1.0], [1.0, 0.25]]]], dtype=torch.float64)
    p = torch.sigmoid(logits)
    manual = -(x * p.log() + (1 - x) * (1 - p).log()).sum()
    got = reconstruction_loss(logits, x, "bernoulli")
    assert got.shape == (1,)
    assert got.item() == pytest.approx(manual.item(), rel=1e-12)


def test_bernoulli_reconstruction_stays_finite_for_extreme_logits():
    logits = torch.tensor([[[[200.0, -200.0, 200.0, -200.0]]]])
    x = torch.tensor([[[[1.0, 0.0, 0.0, 1.0]]]])
    got = reconstruction_loss(logits, x, "bernoulli")
    assert torch.isfinite(got).all()
    # right with certainty costs ~0; wrong with certainty costs |logit| (log(1 + e^200) = 200 + tiny)
    assert got.item() == pytest.approx(400.0, rel=1e-6)


def test_gaussian_reconstruction_is_summed_squared_error_of_the_mean():
    torch.manual_seed(0)
    logits, x = torch.randn(3, 1, 4, 5), torch.rand(3, 1, 4, 5)
    expected = [((torch.sigmoid(logits[i]) - x[i]) ** 2).sum().item() for i in range(3)]
    assert reconstruction_loss(logits, x, "gaussian").tolist() == pytest.approx(expected, rel=1e-6)


def test_unknown_likelihood_is_refused():
    with pytest.raises(ValueError, match="unknown likelihood"):
        reconstruction_loss(torch.zeros(1, 1, 2, 2), torch.zeros(1, 1, 2, 2), "poisson")


@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian"])
def test_negative_elbo_combines_recon_and_beta_weighted_kl(likelihood):
    torch.manual_seed(0)
    logits, x = torch.randn(4, 1, 3, 3), torch.rand(4, 1, 3, 3)
    mu, logvar = torch.randn(4, 2), torch.randn(4, 2)
    recon = reconstruction_loss(logits, x, likelihood)
    loss0, recon0, kl0 = negative_elbo(logits, x, mu, logvar, likelihood, beta=0.0)
    assert torch.equal(loss0, recon) and torch.equal(recon0, recon)  # beta = 0: a plain autoencoder
    assert kl0.shape == (4, 2)
    loss3, _, kl3 = negative_elbo(logits, x, mu, logvar, likelihood, beta=3.0)
    assert torch.allclose(loss3, recon + 3.0 * kl_divergence(mu, logvar).sum(1))


# ----------------------------------------------------------------------------- gaussian with a learned sigma


def test_learned_gaussian_is_the_exact_normal_nll_with_a_sigma_per_channel():
    torch.manual_seed(0)
    logits = torch.randn(4, 3, 5, 6, dtype=torch.float64)
    x = torch.rand(4, 3, 5, 6, dtype=torch.float64)
    log_sigma = torch.tensor([-2.0, -1.0, 0.5], dtype=torch.float64)
    got = reconstruction_loss(logits, x, "gaussian-learned", log_sigma)
    normal = torch.distributions.Normal(torch.sigmoid(logits), log_sigma.exp().view(1, 3, 1, 1))
    assert torch.allclose(got, -normal.log_prob(x).flatten(1).sum(1), rtol=1e-12)
    # by hand for one pixel of channel 2: 0.5 ((x - m) / s)^2 + log s + 0.5 log(2 pi)
    one = reconstruction_loss(logits[:1, 2:, :1, :1], x[:1, 2:, :1, :1], "gaussian-learned", log_sigma[2:])
    m, s = torch.sigmoid(logits[0, 2, 0, 0]).item(), math.exp(0.5)
    assert one.item() == pytest.approx(0.5 * ((x[0, 2, 0, 0].item() - m) / s) ** 2 + 0.5 + 0.5 * math.log(2 * math.pi))
    # the gradient reaches sigma, and at the optimum sigma^2 is the mean squared error of its channel
    ls = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([ls], max_iter=100)

    def closure():
        opt.zero_grad()
        loss = reconstruction_loss(logits, x, "gaussian-learned", ls).sum()
        loss.backward()
        return loss

    opt.step(closure)
    mse = (torch.sigmoid(logits) - x).pow(2).mean((0, 2, 3))
    assert torch.allclose((2 * ls).exp().detach(), mse, rtol=1e-5)


def test_the_fitted_sigma_is_the_most_likely_one_and_its_sum_is_the_exact_nll():
    torch.manual_seed(2)
    logits = torch.randn(5, 3, 4, 6, dtype=torch.float64)
    x = torch.rand(5, 3, 4, 6, dtype=torch.float64)
    squared = (x - torch.sigmoid(logits)).pow(2).sum((0, 2, 3))  # (3,)
    count = 5 * 4 * 6
    fitted = fitted_log_sigma(squared, count)
    assert torch.allclose(fitted, 0.5 * torch.log(squared / count))  # sigma^2 = the channel's mean square
    best = gaussian_nll_sum(squared, count, fitted)
    assert best.item() == pytest.approx(reconstruction_loss(logits, x, "gaussian-learned", fitted).sum().item())
    for shift in (-0.05, 0.05):  # any other sigma is less likely
        assert gaussian_nll_sum(squared, count, fitted + shift) > best
    # a perfect reconstruction stops at the 8-bit rounding noise instead of at log 0
    assert fitted_log_sigma(torch.zeros(3, dtype=torch.float64), count).tolist() == [MIN_LOG_SIGMA] * 3
    assert math.exp(MIN_LOG_SIGMA) == pytest.approx(1 / 255 / math.sqrt(12))


@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian-learned"])
def test_numpy_scoring_matches_the_training_loss(likelihood):
    """vaectl eval (scoring.log_likelihood, numpy) and training (reconstruction_loss, torch) agree: the
    same number, not only up to a constant, for the likelihoods whose loss is the exact NLL."""
    from vaectl.scoring import log_likelihood

    torch.manual_seed(1)
    logits, x = torch.randn(3, 3, 4, 4, dtype=torch.float64), torch.rand(3, 3, 4, 4, dtype=torch.float64)
    log_sigma = (-1.5, -2.0, -0.5)
    nll = reconstruction_loss(logits, x, likelihood, torch.tensor(log_sigma, dtype=torch.float64))
    lp = log_likelihood(x.flatten(1).numpy(), torch.sigmoid(logits).flatten(1).numpy(), likelihood, log_sigma)
    assert lp == pytest.approx(-nll.numpy(), rel=1e-6)


def test_bits_per_dim_follows_the_discrete_data_convention():
    from vaectl.scoring import CONVENTIONS, bits_per_dim

    # a uniform density on [0, 1] (NLL 0) is 8 bits per 8-bit value; a Bernoulli NLL is converted as it is
    assert bits_per_dim(0.0, 3 * 32 * 32, "gaussian-learned") == pytest.approx(8.0)
    assert bits_per_dim(0.0, 10, "gaussian") == pytest.approx(8.0)
    assert bits_per_dim(10 * math.log(2), 10, "bernoulli") == pytest.approx(1.0)
    assert bits_per_dim(-10 * math.log(2), 10, "gaussian-learned") == pytest.approx(7.0)
    assert "ln 256" in CONVENTIONS["gaussian-learned"] and "ln 256" not in CONVENTIONS["bernoulli"]
