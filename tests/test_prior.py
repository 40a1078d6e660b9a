"""The fitted prior: the mixture's EM, its sampler and density (numpy only), the contract's format, a reader
that uses numpy and the ONNX metadata alone, and the prior that `vaectl export` fits, verifies and writes."""

from __future__ import annotations

import base64
import json
import math

import numpy as np
import pytest
from conftest import cli, expect_usage_error

from vaectl import contract
from vaectl.contract import build_metadata, parse_metadata
from vaectl.errors import UserInputError
from vaectl.models import VAEConfig
from vaectl.prior import MixturePrior, NormalPrior, mixture_moments, prior_named, priors_of
from vaectl.prior.mixture import Mixture, fit_mixture, kmeans_plus_plus, m_step, pair_products

# ----------------------------------------------------------------------------- helpers


def spec_of(mixtures, by_label: bool = False) -> dict:
    """A prior document (contract.PRIOR_KEY) from Mixture objects."""
    d = mixtures[0].means.shape[1]
    return {"kind": "gmm", "latent_dim": d, "by_label": by_label, "mixtures": [m.as_dict() for m in mixtures]}


def numpy_arrays(mixture: dict, d: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A mixture entry's arrays read as the contract describes them, with numpy alone: base64 of float64 LE,
    a mixture over "dims" put in the full D coordinates (mean 0, identity factor on the others)."""
    w = np.frombuffer(base64.b64decode(mixture["weights"]), "<f8")
    k, dims = len(w), mixture.get("dims", list(range(d)))
    a = len(dims)
    mu, chol = np.zeros((k, d)), np.tile(np.eye(d), (k, 1, 1))
    mu[:, dims] = np.frombuffer(base64.b64decode(mixture["means"]), "<f8").reshape(k, a)
    chol[np.ix_(range(k), dims, dims)] = np.frombuffer(base64.b64decode(mixture["cholesky"]), "<f8").reshape(k, a, a)
    return w, mu, chol


def as_lists(spec: dict) -> dict:
    """The same prior document with nested JSON lists for arrays (the form a hand-written prior may take)."""
    d = spec["latent_dim"]
    mixtures = [
        dict(zip(("weights", "means", "cholesky"), (a.tolist() for a in numpy_arrays(m, d)))) for m in spec["mixtures"]
    ]
    return {**spec, "mixtures": mixtures}


def components(doc: dict) -> int:
    """K of the first mixture of a prior document."""
    return len(base64.b64decode(doc["mixtures"][0]["weights"])) // 8


def random_mixture(k: int, d: int, seed: int) -> Mixture:
    rng = np.random.default_rng(seed)
    weights = rng.random(k) + 0.2
    chol = np.tril(rng.normal(size=(k, d, d)) * 0.3)
    idx = np.arange(d)
    chol[:, idx, idx] = np.abs(chol[:, idx, idx]) + 0.2
    return Mixture(weights / weights.sum(), rng.normal(size=(k, d)) * 3, chol)


def gaussian_log_density(z, mean, cov) -> np.ndarray:
    """log N(z; mean, cov) straight from the textbook formula."""
    d = len(mean)
    diff = z - mean
    return -0.5 * (
        np.einsum("ni,ij,nj->n", diff, np.linalg.inv(cov), diff)
        + math.log(np.linalg.det(cov))
        + d * math.log(2 * math.pi)
    )


# ----------------------------------------------------------------------------- EM


def test_em_recovers_a_known_mixture_and_is_deterministic_for_a_seed():
    truth = random_mixture(3, 2, seed=4)
    truth.means = np.array([[-6.0, 0.0], [0.0, 6.0], [6.0, 0.0]])  # well apart
    rng = np.random.default_rng(0)
    k = rng.choice(3, size=30_000, p=truth.weights)
    noise = np.einsum("nij,nj->ni", truth.cholesky[k], rng.standard_normal((30_000, 2)))
    x = truth.means[k] + noise
    fitted = fit_mixture(x, 3, seed=0)
    order = np.argsort(fitted.means[:, 0])
    assert np.allclose(fitted.weights[order], truth.weights, atol=0.02)
    assert np.allclose(fitted.means[order], truth.means, atol=0.1)
    cov = fitted.cholesky @ np.swapaxes(fitted.cholesky, 1, 2)
    assert np.allclose(cov[order], truth.cholesky @ np.swapaxes(truth.cholesky, 1, 2), atol=0.05)
    assert fitted.converged
    again = fit_mixture(x, 3, seed=0)
    assert np.array_equal(again.means, fitted.means) and np.array_equal(again.cholesky, fitted.cholesky)
    assert fitted.log_density(x).mean() > fit_mixture(x, 1, seed=0).log_density(x).mean() + 0.5
    # overlapping components: EM climbs well above where one step from the k-means start leaves it
    near = truth.means[k] / 8 + noise
    one_step, full = fit_mixture(near, 3, seed=0, max_iter=1), fit_mixture(near, 3, seed=0)
    assert full.log_density(near).mean() > one_step.log_density(near).mean() + 0.01


def test_one_component_is_the_sample_mean_and_covariance():
    x = np.random.default_rng(1).normal(size=(500, 3)) @ np.array([[1.0, 0, 0], [0.5, 2, 0], [0, 0.3, 0.1]])
    fitted = fit_mixture(x, 1, seed=0)
    assert np.allclose(fitted.means[0], x.mean(0))
    cov = fitted.cholesky[0] @ fitted.cholesky[0].T
    assert np.allclose(cov, np.cov(x, rowvar=False, bias=True), rtol=1e-4, atol=1e-5)  # the floor is tiny


def test_the_covariance_floor_keeps_points_on_a_line_fittable():
    t = np.random.default_rng(2).normal(size=(400, 1))
    x = np.concatenate([t, 2 * t, np.zeros_like(t)], 1)  # rank 1 in 3-D: a plain covariance is singular
    fitted = fit_mixture(x, 2, seed=0)
    assert np.isfinite(fitted.log_density(x)).all()
    assert (np.diagonal(fitted.cholesky, axis1=1, axis2=2) > 0).all()


def test_em_shortcuts_match_the_direct_formulas():
    # the E step's expanded quadratic form and the M step's second moments from pair products: the same
    # densities and covariances as whitening each point and summing centred outer products
    rng = np.random.default_rng(5)
    mixture = random_mixture(4, 5, seed=6)
    x = rng.normal(size=(300, 5)) * 2
    expanded = mixture.expanded_log_densities(x, pair_products(x))
    assert np.allclose(expanded, mixture.component_log_densities(x), rtol=1e-10, atol=1e-9)
    resp = rng.dirichlet(np.ones(4), size=300)  # (N, K)
    fitted = m_step(x, resp, floor=0.0)
    for k in range(4):
        mean = resp[:, k] @ x / resp[:, k].sum()
        cov = (resp[:, k, None] * (x - mean)).T @ (x - mean) / resp[:, k].sum()
        assert np.allclose(fitted.means[k], mean) and np.allclose(fitted.cholesky[k] @ fitted.cholesky[k].T, cov)


def test_em_continued_from_a_start_keeps_its_components_and_climbs():
    truth = random_mixture(3, 2, seed=8)
    rng = np.random.default_rng(1)
    k = rng.choice(3, size=5_000, p=truth.weights)
    x = truth.means[k] + np.einsum("nij,nj->ni", truth.cholesky[k], rng.standard_normal((5_000, 2)))
    rough = fit_mixture(x[:1_000], 3, seed=0, max_iter=2)
    continued = fit_mixture(x, 3, seed=0, start=rough)
    assert continued.k == 3 and continued.converged
    assert continued.log_density(x).mean() > rough.log_density(x).mean()
    assert np.array_equal(continued.means, fit_mixture(x, 3, seed=0, start=rough).means)  # deterministic
    with pytest.raises(ValueError):
        fit_mixture(x, 2, start=rough)


def test_the_fit_is_bounded_subsampling_a_large_dataset_in_a_seeded_order():
    from vaectl.prior.fit import FIT_DRAWS, HOLDOUT_DRAWS, MIN_DRAWS, Subsets

    small = Subsets.of(4_000, seed=0)  # the embedded sample: every image, several draws each
    assert (small.used, small.draws, small.held) == (4_000, math.ceil(MIN_DRAWS / 4_000), 400)
    large = Subsets.of(10 * FIT_DRAWS, seed=0)
    assert large.draws == 1 and large.used == FIT_DRAWS and large.held == HOLDOUT_DRAWS
    assert len(set(large.order.tolist())) == FIT_DRAWS and large.order.max() < 10 * FIT_DRAWS
    assert np.array_equal(large.order, Subsets.of(10 * FIT_DRAWS, seed=0).order)
    assert not np.array_equal(large.order, Subsets.of(10 * FIT_DRAWS, seed=1).order)


def test_kmeans_plus_plus_starts_in_every_separate_cluster():
    x = np.concatenate([np.random.default_rng(3).normal(size=(100, 2)) * 0.1 + c for c in ([0, 0], [50, 0], [0, 50])])
    centers = kmeans_plus_plus(x, 3, np.random.default_rng(0))
    assert sorted(np.round(centers / 50).astype(int).tolist()) == [[0, 0], [0, 1], [1, 0]]


def clustered_encoder(active: tuple[int, ...], latent_dim: int):
    """An encoder for images (N, 1, 2, 2): on the `active` dimensions q(z|x) is narrow around a point set by
    the image's pixels (three clusters of images, three clusters of z), on every other dimension it is N(0, 1)
    for every image, as on a dimension a trained VAE leaves unused."""

    def encode(x, y=None):
        mu, logvar = np.zeros((len(x), latent_dim)), np.zeros((len(x), latent_dim))
        for i, d in enumerate(active):
            mu[:, d] = 8 * x[:, 0, 0, i] - 4  # pixel 0, 127 or 255 -> z near -4, 0 or 4
            logvar[:, d] = math.log(0.3**2)
        return mu, logvar

    return encode


def clustered_images(n: int) -> np.ndarray:
    """uint8 (n, 1, 2, 2) images in three clusters (their first two pixels 0, 127 or 255 together)."""
    cluster = np.arange(n) % 3
    images = np.zeros((n, 1, 2, 2), dtype=np.uint8)
    images[:, 0, 0, 0] = np.array([0, 127, 255], dtype=np.uint8)[cluster]
    images[:, 0, 0, 1] = np.array([255, 0, 127], dtype=np.uint8)[cluster]
    return images


def test_the_mixture_covers_the_dimensions_the_encoder_uses_and_leaves_the_others_n01():
    from vaectl.data import ImageDataset
    from vaectl.prior.fit import fit_prior, parse_choice

    config = VAEConfig(latent_dim=4, channels=1, height=2, width=2)
    ds = ImageDataset("clusters", clustered_images(2_000), clustered_images(30))
    doc, line = fit_prior(clustered_encoder((0, 2), 4), config, ds, parse_choice(None))
    fitted = doc["fitted_to"]
    assert fitted["mixed_dims"] == doc["mixtures"][0]["dims"] == [0, 2]  # the mixture is written over those two
    assert "over 2 of the 4 latent dimensions" in line and "mixed_dims" in fitted["rule"]
    scores = {int(k): v for k, v in fitted["held_out_log_density"].items()}
    w, mu, chol = numpy_arrays(doc["mixtures"][0], 4)
    assert len(w) == max(scores, key=scores.get) >= 3  # the three clusters, chosen by held-out density
    # the unused dimensions: mean 0 and an identity block in every component, exactly
    assert (mu[:, [1, 3]] == 0).all()
    assert np.array_equal(chol[:, [1, 3]][:, :, [1, 3]], np.tile(np.eye(2), (len(w), 1, 1)))
    assert (chol[:, [1, 3]][:, :, [0, 2]] == 0).all() and (chol[:, [0, 2]][:, :, [1, 3]] == 0).all()
    contract.check_prior(doc, config, "test")  # still lower-triangular: any reader's Cholesky factor
    # so the density factorizes: the 2-D mixture of the used dimensions times N(0, I) of the others
    z = np.random.default_rng(5).normal(size=(200, 4)) * 3
    used = np.log(
        sum(
            wk * np.exp(gaussian_log_density(z[:, [0, 2]], mk[[0, 2]], (ck @ ck.T)[np.ix_([0, 2], [0, 2])]))
            for wk, mk, ck in zip(w, mu, chol)
        )
    )
    unused = -0.5 * (z[:, [1, 3]] ** 2).sum(1) - math.log(2 * math.pi)
    assert np.allclose(MixturePrior(doc).log_density(z), used + unused, atol=1e-9)
    # and the held-out scores are densities of all four dimensions: the best one is what the fitted
    # prior gives the draws of fresh images, within the noise of 200 held-out images
    fresh = clustered_encoder((0, 2), 4)(clustered_images(3_000).astype(np.float32) / 255)
    draws = fresh[0] + np.exp(0.5 * fresh[1]) * np.random.default_rng(6).standard_normal(fresh[0].shape)
    assert abs(MixturePrior(doc).log_density(draws).mean() - max(scores.values())) < 0.1


def test_a_model_that_uses_no_dimension_gets_its_mixture_over_all_of_them():
    from vaectl.data import ImageDataset
    from vaectl.prior.fit import fit_prior, parse_choice

    config = VAEConfig(latent_dim=3, channels=1, height=2, width=2)
    ds = ImageDataset("clusters", clustered_images(1_000), clustered_images(30))
    doc, line = fit_prior(clustered_encoder((), 3), config, ds, parse_choice("gmm:2"))
    assert doc["fitted_to"]["mixed_dims"] == [0, 1, 2] and "latent dimensions" not in line
    mixture = MixturePrior(doc)
    assert np.allclose(mixture.moments()[0], 0, atol=0.05) and np.allclose(mixture.moments()[1], 1, atol=0.05)


def test_an_embedded_mixture_is_the_mixture_times_n01_on_the_other_coordinates():
    small = random_mixture(3, 2, seed=4)
    big = small.embedded(np.array([1, 3]), 5)
    z = np.random.default_rng(2).normal(size=(50, 5)) * 2
    expected = small.log_density(z[:, [1, 3]]) - 0.5 * (z[:, [0, 2, 4]] ** 2).sum(1) - 1.5 * math.log(2 * math.pi)
    assert np.allclose(big.log_density(z), expected, atol=1e-10)
    assert np.array_equal(np.triu(big.cholesky, 1), np.zeros_like(big.cholesky))
    assert np.array_equal(big.weights, small.weights)


# ----------------------------------------------------------------------------- the sampler and density


def test_mixture_density_is_the_textbook_gaussian_mixture():
    m = random_mixture(3, 4, seed=0)
    prior = MixturePrior(spec_of([m]))
    z = prior.latents(50, 1, temperature=1.5).astype(np.float64)  # near the components: no exp underflows below
    want = np.log(
        sum(
            w * np.exp(gaussian_log_density(z, mu, chol @ chol.T))
            for w, mu, chol in zip(m.weights, m.means, m.cholesky)
        )
    )
    assert np.allclose(prior.log_density(z), want, rtol=1e-10)
    assert np.allclose(m.log_density(z), want, rtol=1e-10)  # the fitter scores with the same density


def test_a_2d_mixture_density_integrates_to_one():
    prior = MixturePrior(spec_of([random_mixture(2, 2, seed=5)]))
    grid = np.linspace(-14, 14, 561)
    zz = np.stack(np.meshgrid(grid, grid), -1).reshape(-1, 2)
    mass = np.exp(prior.log_density(zz)).sum() * (grid[1] - grid[0]) ** 2
    assert mass == pytest.approx(1.0, abs=2e-3)


def test_mixture_draws_have_the_mixtures_moments_and_each_component_its_share():
    m = random_mixture(4, 3, seed=2)
    prior = MixturePrior(spec_of([m]))
    center, offset = prior.draw_parts(40_000, 0)
    z = center + offset
    mean, cov = mixture_moments(m.weights, m.means, m.cholesky)
    assert np.allclose(z.mean(0), mean, atol=0.05)
    assert np.allclose(np.cov(z, rowvar=False), cov, atol=0.15)
    picked = np.array([np.flatnonzero((m.means == c).all(1))[0] for c in center])  # the component of each draw
    assert np.allclose(np.bincount(picked, minlength=4) / len(picked), m.weights, atol=0.01)


def test_draws_do_not_depend_on_how_they_are_split_and_temperature_scales_the_offset():
    prior = MixturePrior(spec_of([random_mixture(3, 5, seed=1)]))
    whole = prior.draw_parts(10, np.random.default_rng(7))
    rng = np.random.default_rng(7)
    parts = [prior.draw_parts(n, rng) for n in (3, 1, 6)]
    assert np.array_equal(np.concatenate([p[0] for p in parts]), whole[0])
    assert np.array_equal(np.concatenate([p[1] for p in parts]), whole[1])
    center, offset = whole
    assert np.array_equal(prior.latents(10, 7, temperature=0.0), center.astype(np.float32))
    assert np.array_equal(prior.latents(10, 7, temperature=0.5), (center + 0.5 * offset).astype(np.float32))


def test_the_normal_prior_draws_exactly_numpys_standard_normals():
    prior = NormalPrior(6)
    center, offset = prior.draw_parts(4, 3)
    assert not center.any() and np.array_equal(offset, np.random.default_rng(3).standard_normal((4, 6)))
    want = (np.random.default_rng(3).standard_normal((4, 6)) * 0.7).astype(np.float32)
    assert np.array_equal(prior.latents(4, 3, temperature=0.7), want)  # the draws vaectl always made
    z = np.random.default_rng(0).normal(size=(5, 6))
    assert np.allclose(prior.log_density(z), gaussian_log_density(z, np.zeros(6), np.eye(6)))


def test_a_prior_per_label_draws_and_scores_each_row_with_its_labels_mixture():
    a, b = random_mixture(2, 3, seed=1), random_mixture(3, 3, seed=2)
    prior = MixturePrior(spec_of([a, b], by_label=True))
    labels = np.array([1, 0, 1, 1, 0])
    center, _ = prior.draw_parts(5, 0, labels)
    assert all(any((c == mu).all() for mu in (a, b)[y].means) for c, y in zip(center, labels))
    z = np.random.default_rng(0).normal(size=(5, 3))
    want = [MixturePrior(spec_of([(a, b)[y]])).log_density(z[i : i + 1])[0] for i, y in enumerate(labels)]
    assert np.allclose(prior.log_density(z, labels), want)
    with pytest.raises(UserInputError, match="give the labels"):
        prior.draw_parts(2, 0)


# ----------------------------------------------------------------------------- the contract's format


def test_metadata_carries_the_prior_and_derived_graphs_keep_it():
    cfg = VAEConfig(latent_dim=3)
    spec = spec_of([random_mixture(2, 3, seed=0)])
    props = build_metadata(cfg, "decoder", "ab" * 32, prior=spec)
    info = parse_metadata(props)
    assert info.prior == json.loads(json.dumps(spec)) and info.format_version == 1
    assert contract.metadata_of(info, "fp16")[contract.PRIOR_KEY] == props[contract.PRIOR_KEY]
    assert [p.name for p in priors_of(info)] == ["gmm", "normal"]
    assert prior_named(info, "normal").name == "normal" and prior_named(info).name == "gmm"
    plain = parse_metadata(build_metadata(cfg, "decoder", "ab" * 32))
    assert plain.prior is None and [p.name for p in priors_of(plain)] == ["normal"]
    with pytest.raises(UserInputError, match="carries no fitted prior"):
        prior_named(plain, "gmm")
    with pytest.raises(UserInputError, match="unknown prior 'flow'"):
        prior_named(info, "flow")


def test_the_contract_writes_the_prior_document_it_describes_and_reads_it_back():
    """contract.prior_document and mixture_document give the JSON of the contract's docstring (spelled out here,
    the arrays base64 of little-endian float64), and the contract's readers give back what was written."""
    some, every = random_mixture(2, 3, seed=1), random_mixture(1, 4, seed=2)

    def b64(a):
        return base64.b64encode(np.asarray(a, "<f8").tobytes()).decode("ascii")

    doc = contract.prior_document(
        4,
        True,
        [
            contract.mixture_document(some.weights, some.means, some.cholesky, dims=np.array([0, 2, 3])),
            contract.mixture_document(every.weights, every.means, every.cholesky),
        ],
        {"data": "clusters"},
    )
    assert doc == {
        "kind": "gmm",
        "latent_dim": 4,
        "by_label": True,
        "mixtures": [
            {"dims": [0, 2, 3], "weights": b64(some.weights), "means": b64(some.means), "cholesky": b64(some.cholesky)},
            {"weights": b64(every.weights), "means": b64(every.means), "cholesky": b64(every.cholesky)},
        ],
        "fitted_to": {"data": "clusters"},
    }
    contract.check_prior(json.loads(json.dumps(doc)), VAEConfig(latent_dim=4, num_classes=2), "test")
    assert (contract.prior_kind(doc), contract.prior_latent_dim(doc), contract.prior_by_label(doc)) == ("gmm", 4, True)
    assert [contract.mixture_dims(m) for m in contract.prior_mixtures(doc)] == [[0, 2, 3], None]
    assert contract.prior_fitted_to(doc) == {"data": "clusters"}
    bare = contract.prior_document(4, False, doc["mixtures"][1:])
    assert "fitted_to" not in bare and contract.prior_fitted_to(bare) == {} and not contract.prior_by_label(bare)
    assert contract.prior_kind(None) is None


@pytest.mark.parametrize(
    "edit, why",
    [
        (lambda s: s.update(latent_dim=4), "latent_dim 4"),
        (lambda s: s["mixtures"][0].update(weights=[0.5, 0.6]), "sum to 1"),
        (lambda s: s["mixtures"][0]["cholesky"][0][0].__setitem__(1, 0.3), "lower-triangular"),
        (lambda s: s["mixtures"][0]["cholesky"][1][2].__setitem__(2, -1.0), "positive diagonal"),
        (lambda s: s["mixtures"][0]["means"][0].__setitem__(0, float("nan")), "NaN"),
        (lambda s: s["mixtures"][0].update(means=[[0.0, 0.0, 0.0]]), "shapes"),
        (lambda s: s.update(mixtures=[]), "no mixtures"),
        (lambda s: s.update(by_label=True), "1 mixtures for the 0 labels"),
    ],
)
def test_a_malformed_prior_is_refused_in_one_line(edit, why):
    cfg = VAEConfig(latent_dim=3)
    spec = as_lists(spec_of([random_mixture(2, 3, seed=0)]))  # lists, to edit single values
    edit(spec)
    props = {**build_metadata(cfg, "decoder", ""), contract.PRIOR_KEY: json.dumps(spec)}
    with pytest.raises(UserInputError, match=f"malformed vaectl.prior metadata.*{why}"):
        parse_metadata(props, "d.onnx")


@pytest.mark.parametrize(
    "edit, why",
    [
        (lambda m: m.update(means=m["means"][:-4]), "numeric weights, means and cholesky"),  # not base64
        (lambda m: m.update(means="!" + m["means"][1:]), "numeric weights, means and cholesky"),
        (lambda m: m.update(cholesky=contract.encode_floats(np.eye(3))), "shapes"),  # one matrix for 2 components
        (lambda m: m.update(weights=contract.encode_floats([0.5, 0.25, 0.25])), "shapes"),
    ],
)
def test_a_prior_whose_base64_arrays_are_damaged_is_refused_in_one_line(edit, why):
    cfg = VAEConfig(latent_dim=3)
    spec = spec_of([random_mixture(2, 3, seed=0)])
    edit(spec["mixtures"][0])
    props = {**build_metadata(cfg, "decoder", ""), contract.PRIOR_KEY: json.dumps(spec)}
    with pytest.raises(UserInputError, match=f"malformed vaectl.prior metadata.*{why}"):
        parse_metadata(props, "d.onnx")


def test_the_base64_arrays_hold_the_fitted_float64_values_exactly_and_lists_read_the_same():
    mixture = random_mixture(3, 4, seed=5)
    spec = spec_of([mixture])
    assert all(isinstance(v, str) for v in spec["mixtures"][0].values())
    for got, want in zip(numpy_arrays(spec["mixtures"][0], 4), (mixture.weights, mixture.means, mixture.cholesky)):
        assert got.dtype == np.float64 and np.array_equal(got, want)
    cfg = VAEConfig(latent_dim=4)
    z = np.random.default_rng(0).standard_normal((50, 4))
    priors = [
        prior_named(parse_metadata({**build_metadata(cfg, "decoder", ""), contract.PRIOR_KEY: json.dumps(doc)}))
        for doc in (spec, as_lists(spec))
    ]
    assert np.array_equal(priors[0].log_density(z), priors[1].log_density(z))
    assert np.array_equal(priors[0].latents(20, seed_or_rng=1), priors[1].latents(20, seed_or_rng=1))


def test_a_mixture_over_some_dims_reads_as_the_full_mixture_and_says_export_format_3():
    small = random_mixture(3, 2, seed=6)
    compact = {"kind": "gmm", "latent_dim": 4, "by_label": False, "mixtures": [small.as_dict(dims=[1, 3])]}
    full = spec_of([small.embedded(np.array([1, 3]), 4)])
    assert len(json.dumps(compact)) < 0.5 * len(json.dumps(full))  # what "dims" is for: 2 of 4 coordinates
    cfg = VAEConfig(latent_dim=4)
    read = [parse_metadata(build_metadata(cfg, "decoder", "", prior=doc)) for doc in (compact, full)]
    assert [info.format_version for info in read] == [3, 1]  # a format-2 reader says "upgrade" to the first
    z = np.random.default_rng(0).standard_normal((50, 4)) * 2
    priors = [prior_named(info) for info in read]
    assert np.array_equal(priors[0].log_density(z), priors[1].log_density(z))
    assert np.array_equal(priors[0].latents(20, seed_or_rng=1), priors[1].latents(20, seed_or_rng=1))
    # a reader with numpy alone (the helper above, as docs/sample-quality.md shows) gets the same arrays
    w, mu, chol = numpy_arrays(compact["mixtures"][0], 4)
    assert np.array_equal(mu, priors[1].means[0]) and np.array_equal(chol, priors[1].cholesky[0])


@pytest.mark.parametrize(
    "dims, why",
    [
        ([2, 1], "ascending"),
        ([0, 4], "ascending"),
        ([1, 1], "ascending"),
        ([], "non-empty list"),
        ("1,3", "non-empty list"),
        ([0, 1, 2], "shapes .*expected \\(K,\\), \\(K, 3\\)"),  # arrays for 2 coordinates, 3 named
    ],
)
def test_a_mixtures_malformed_dims_are_refused_in_one_line(dims, why):
    spec = {"kind": "gmm", "latent_dim": 4, "mixtures": [{**random_mixture(2, 2, seed=0).as_dict(), "dims": dims}]}
    props = {**build_metadata(VAEConfig(latent_dim=4), "decoder", ""), contract.PRIOR_KEY: json.dumps(spec)}
    with pytest.raises(UserInputError, match=f"malformed vaectl.prior metadata.*{why}"):
        parse_metadata(props, "d.onnx")


def test_a_prior_kind_this_vaectl_does_not_know_leaves_n01():
    """A newer vaectl may write another kind (a flow): this one still reads the graph and samples N(0, I)."""
    cfg = VAEConfig(latent_dim=3)
    props = {**build_metadata(cfg, "decoder", ""), contract.PRIOR_KEY: json.dumps({"kind": "flow", "layers": 4})}
    info = parse_metadata(props)
    assert info.prior["kind"] == "flow" and [p.name for p in priors_of(info)] == ["normal"]
    with pytest.raises(ValueError):
        build_metadata(cfg, "encoder", "", prior=spec_of([random_mixture(1, 3, seed=0)]))


# ----------------------------------------------------------------------------- a reader with numpy alone


def read_prior_with_numpy_only(path):
    """What another tool does with the contract's description: the metadata's JSON, numpy, nothing of vaectl."""
    import onnxruntime

    props = onnxruntime.InferenceSession(str(path)).get_modelmeta().custom_metadata_map
    doc = json.loads(props["vaectl.prior"])
    (mixture,) = doc["mixtures"]
    w, mu, chol = numpy_arrays(mixture, doc["latent_dim"])

    def log_p(z):
        terms = []
        for k in range(len(w)):
            y = np.linalg.solve(chol[k], (z - mu[k]).T).T  # L_k^-1 (z - mu_k)
            terms.append(
                np.log(w[k])
                - np.log(np.diag(chol[k])).sum()
                - 0.5 * (y**2).sum(1)
                - 0.5 * len(mu[k]) * np.log(2 * np.pi)
            )
        return np.logaddexp.reduce(np.stack(terms), axis=0)

    def sample(n, rng):
        k = rng.choice(len(w), size=n, p=w)
        return mu[k] + np.einsum("nij,nj->ni", chol[k], rng.standard_normal((n, mu.shape[1])))

    return doc, log_p, sample


def test_another_tool_samples_and_scores_the_exported_prior_with_numpy_alone(mlp_graphs):
    from vaectl.infer import Decoder

    doc, log_p, sample = read_prior_with_numpy_only(mlp_graphs / "decoder.onnx")
    assert doc["kind"] == "gmm" and doc["latent_dim"] == 4
    z = sample(20_000, np.random.default_rng(0))
    ours = Decoder(mlp_graphs / "decoder.onnx").prior()
    assert ours.name == "gmm"
    assert np.allclose(log_p(z[:500]), ours.log_density(z[:500]), rtol=1e-9)
    # vaectl's draws and the other tool's come from one distribution: the mixture's mean and covariance
    (m,) = doc["mixtures"]
    w, mu, chol = numpy_arrays(m, 4)
    mean = w @ mu
    cov = np.einsum("k,kij->ij", w, chol @ np.swapaxes(chol, 1, 2) + mu[:, :, None] * mu[:, None]) - np.outer(
        mean, mean
    )
    scale = np.sqrt(np.diag(cov))
    for draws in (z, ours.latents(20_000, 1).astype(np.float64)):
        assert np.allclose(draws.mean(0) / scale, mean / scale, atol=0.03)
        assert np.allclose(
            np.cov(draws, rowvar=False) / np.outer(scale, scale), cov / np.outer(scale, scale), atol=0.06
        )


# ----------------------------------------------------------------------------- what export fits


def test_export_fits_a_prior_to_draws_of_the_posterior_and_every_variant_carries_it(tiny_mlp_run, mlp_graphs):
    import onnx

    from vaectl.data import load_mnist_sample
    from vaectl.infer import Decoder, Encoder
    from vaectl.models.checkpoint import Checkpoint
    from vaectl.prior.fit import fit_prior, parse_choice, posterior_draws

    props = {p.key: p.value for p in onnx.load(str(mlp_graphs / "decoder.onnx")).metadata_props}
    fp16 = {p.key: p.value for p in onnx.load(str(mlp_graphs / "decoder.fp16.onnx")).metadata_props}
    assert fp16["vaectl.prior"] == props["vaectl.prior"]
    assert "vaectl.prior" not in {p.key for p in onnx.load(str(mlp_graphs / "encoder.onnx")).metadata_props}
    doc = json.loads(props["vaectl.prior"])
    fitted = doc["fitted_to"]
    assert (fitted["data"], fitted["images"], fitted["draws_per_image"]) == ("mnist-sample", 4000, 5)
    k = components(doc)
    assert k == max(map(int, fitted["held_out_log_density"]), key=lambda c: fitted["held_out_log_density"][str(c)])
    # the same fit again, from the checkpoint: deterministic
    ckpt = Checkpoint.load(tiny_mlp_run)
    again, line = fit_prior(ckpt.numpy_encode(), ckpt.config, load_mnist_sample(), parse_choice(None))
    assert json.loads(json.dumps(again)) == doc
    assert f"mixture of {k} full-covariance Gaussian" in line and "4,000 mnist-sample training images" in line
    # it was fitted to draws of q(z|x), not to the means: it scores fresh draws of the test images better than
    # N(0, I) does, and their means (no spread) would make a much narrower mixture
    ds = load_mnist_sample()
    draws = posterior_draws(ckpt.numpy_encode(), ds.test, None, 1, seed=9)[:, 0]
    prior = Decoder(mlp_graphs / "decoder.onnx").prior()
    assert (
        prior.log_density(draws).mean() > Decoder(mlp_graphs / "decoder.onnx").prior("normal").log_density(draws).mean()
    )
    means, _ = Encoder(mlp_graphs / "encoder.onnx").encode(ds.train)
    assert np.allclose(prior.moments()[0], means.mean(0), atol=0.05)
    assert (
        prior.moments()[1] ** 2
        > means.var(0) + 0.5 * np.exp(Encoder(mlp_graphs / "encoder.onnx").encode(ds.train)[1]).mean(0)
    ).all()


def test_export_prior_flags_and_missing_data(tiny_mlp_run, tmp_path):
    import onnx

    def prior_of(directory):
        props = {p.key: p.value for p in onnx.load(str(directory / "decoder.onnx")).metadata_props}
        return json.loads(props["vaectl.prior"]) if "vaectl.prior" in props else None

    r = cli("export", tiny_mlp_run, "--out", tmp_path / "normal", "--prior", "normal")
    assert r.exit_code == 0 and prior_of(tmp_path / "normal") is None
    assert "prior: none fitted (--prior normal): samples come from N(0, I)" in r.stderr
    r = cli("export", tiny_mlp_run, "--out", tmp_path / "three", "--prior", "gmm:3")
    assert r.exit_code == 0 and components(prior_of(tmp_path / "three")) == 3
    assert "a mixture of 3 full-covariance Gaussians fitted to 20,000 draws" in r.stderr
    for bad in ("gmm:0", "gmm:x", "flow", "normal:3"):
        expect_usage_error(cli("export", tiny_mlp_run, "--out", tmp_path / "bad", "--prior", bad), "--prior takes")
    assert not (tmp_path / "bad").exists()
    expect_usage_error(
        cli("export", tiny_mlp_run, "--out", tmp_path / "bad", "--prior", "normal", "--data", tmp_path),
        "--prior normal fits none",
    )
    expect_usage_error(
        cli("export", tiny_mlp_run, "--out", tmp_path / "bad", "--data", tmp_path / "nowhere"), "cannot fit the prior"
    )
    assert not (tmp_path / "bad").exists()


def test_a_checkpoint_without_its_data_exports_with_n01_and_says_so(tmp_path):
    pytest.importorskip("torch")
    from export_helpers import save_tiny_checkpoint

    ckpt = save_tiny_checkpoint(tmp_path / "bare.pt")  # records no training data
    r = cli("export", ckpt, "--out", tmp_path / "out")
    assert r.exit_code == 0, r.stderr
    assert "prior: none fitted, the training data is not at hand (" in r.stderr
    expect_usage_error(cli("export", ckpt, "--out", tmp_path / "o2", "--prior", "gmm"), "cannot fit the prior")


def test_export_verifies_the_prior_it_publishes(tiny_mlp_run, tmp_path, monkeypatch):
    """A sampler that disagrees with the parameters (here: L^T instead of L) fails the export; nothing is written."""
    from vaectl import prior as prior_module

    good_parts = prior_module.MixturePrior.parts

    def transposed(self, normals, labels=None):
        self.cholesky = [np.swapaxes(c, 1, 2) for c in self.cholesky]
        try:
            return good_parts(self, normals, labels)
        finally:
            self.cholesky = [np.swapaxes(c, 1, 2) for c in self.cholesky]

    monkeypatch.setattr(prior_module.MixturePrior, "parts", transposed)
    r = cli("export", tiny_mlp_run, "--out", tmp_path / "out", "--prior", "gmm:2")
    assert r.exit_code == 1, r.stderr
    assert "decoder.prior: draws' mean/variance are" in r.stderr and "standard errors from the mixture's" in r.stderr
    assert not (tmp_path / "out").exists()
    failures: list[str] = []
    from vaectl.export.prior import verify_prior

    bad = {
        "kind": "gmm",
        "latent_dim": 4,
        "mixtures": [{"weights": [1.0], "means": [[0.0] * 4], "cholesky": [[[0.0] * 4] * 4]}],
    }
    verify_prior(bad, VAEConfig(latent_dim=4), failures)
    assert failures and "positive diagonal" in failures[0]
