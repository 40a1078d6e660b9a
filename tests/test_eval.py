"""vaectl eval: the IWAE bound, ELBO parts and active units, against brute force and on trained models."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
from conftest import TINY_CONTEXT_MODEL, TINY_CONTEXT_TRAINING, run_vaectl

from vaectl.errors import UserInputError
from vaectl.scoring import bernoulli_entropy_floor, log_likelihood, score


def _sigmoid(a):
    return 1.0 / (1.0 + np.exp(-a))


def _tiny_model(w=(2.0, -1.5), b=(0.3, 0.1), mu=0.4, logvar=-0.7):
    """1-D latent, 2-pixel images: p(x_i = 1 | z) = sigmoid(w_i z + b_i); q(z | x) = N(mu, exp(logvar))."""
    w, b = np.asarray(w), np.asarray(b)

    def encode(x, y):
        n = len(x)
        return np.full((n, 1), mu, np.float32), np.full((n, 1), logvar, np.float32)

    def decode(z, y):
        return _sigmoid(z.astype(np.float64) @ w[None] + b).reshape(len(z), 1, 1, 2)

    return encode, decode


def _brute_force_nll(x_bits, w, b):
    """-log p(x) = -log integral N(z; 0, 1) p(x | z) dz on a dense grid."""
    z = np.linspace(-12, 12, 200_001)
    p = _sigmoid(z[:, None] * w + b)
    px_z = np.prod(np.where(x_bits == 1, p, 1 - p), axis=1)
    prior = np.exp(-0.5 * z**2) / math.sqrt(2 * math.pi)
    return -math.log(np.trapezoid(prior * px_z, z))


def test_iwae_converges_to_the_exact_nll_and_elbo_parts_match_closed_forms():
    w, b, mu, logvar = np.array([2.0, -1.5]), np.array([0.3, 0.1]), 0.4, -0.7
    encode, decode = _tiny_model(w, b, mu, logvar)
    x = np.array([[[[255, 0]]]], dtype=np.uint8)  # one binary image (exact bernoulli NLL)
    exact = _brute_force_nll(np.array([1, 0]), w, b)
    report = score(encode, decode, x, None, likelihood="bernoulli", k=200_000, seed=0)
    assert report.iwae_nll == pytest.approx(exact, abs=5e-3)
    assert report.neg_elbo >= exact - 5e-3  # the ELBO is a lower bound on log p(x)
    closed_kl = 0.5 * (mu**2 + math.exp(logvar) - 1 - logvar)
    assert report.kl == pytest.approx(closed_kl, rel=1e-6)
    # reconstruction term by quadrature over q(z | x)
    z = np.linspace(mu - 12, mu + 12, 200_001)
    q = np.exp(-0.5 * (z - mu) ** 2 / math.exp(logvar)) / math.sqrt(2 * math.pi * math.exp(logvar))
    p = _sigmoid(z[:, None] * w + b)
    exact_recon = -np.trapezoid(q * (np.log(p[:, 0]) + np.log(1 - p[:, 1])), z)
    assert report.recon == pytest.approx(exact_recon, abs=1e-2)
    assert report.bits_per_dim == pytest.approx(report.iwae_nll / (2 * math.log(2)))


def _mixture_prior(weights, means, stds):
    from vaectl.prior import MixturePrior

    return MixturePrior(
        {
            "kind": "gmm",
            "latent_dim": 1,
            "mixtures": [{"weights": weights, "means": [[m] for m in means], "cholesky": [[[s]] for s in stds]}],
        }
    )


def test_iwae_under_a_mixture_prior_converges_to_the_exact_nll_under_it():
    w, b, mu, logvar = np.array([2.0, -1.5]), np.array([0.3, 0.1]), 0.4, 0.0  # q wider than each component
    encode, decode = _tiny_model(w, b, mu, logvar)
    x = np.array([[[[255, 0]]]], dtype=np.uint8)
    prior = _mixture_prior([0.3, 0.7], [-0.5, 1.0], [0.6, 0.7])
    z = np.linspace(-12, 12, 200_001)
    p = _sigmoid(z[:, None] * w + b)
    density = np.exp(prior.log_density(z[:, None]))
    exact = -math.log(np.trapezoid(density * p[:, 0] * (1 - p[:, 1]), z))
    report = score(encode, decode, x, None, likelihood="bernoulli", k=200_000, seed=0, prior=prior)
    assert report.prior == "gmm" and report.iwae_nll_prior == pytest.approx(exact, abs=5e-3)
    assert report.neg_elbo_prior >= exact - 5e-3
    assert report.iwae_nll == pytest.approx(_brute_force_nll(np.array([1, 0]), w, b), abs=5e-3)  # N(0, I) beside it


def test_a_mixture_that_is_n01_scores_exactly_like_n01():
    encode, decode = _tiny_model()
    x = np.random.default_rng(0).integers(0, 256, (30, 1, 1, 2)).astype(np.uint8)
    report = score(encode, decode, x, None, likelihood="bernoulli", k=50, prior=_mixture_prior([1.0], [0.0], [1.0]))
    assert report.iwae_nll_prior == pytest.approx(report.iwae_nll, abs=1e-9)
    assert report.neg_elbo_prior == pytest.approx(report.neg_elbo, abs=0.05)  # Monte Carlo KL vs closed form
    from vaectl.prior import NormalPrior

    plain = score(encode, decode, x, None, likelihood="bernoulli", k=50, prior=NormalPrior(1))
    assert plain.prior is None and plain.iwae_nll_prior is None and plain.iwae_nll == report.iwae_nll


def test_log_likelihood_closed_forms():
    x = np.array([[0.0, 1.0, 0.25]])
    mean = np.array([[0.1, 0.8, 0.5]])
    bce = -(x * np.log(mean) + (1 - x) * np.log(1 - mean)).sum()
    assert log_likelihood(x, mean, "bernoulli")[0] == pytest.approx(-bce)
    sse = ((x - mean) ** 2).sum()
    assert log_likelihood(x, mean, "gaussian")[0] == pytest.approx(-sse - 1.5 * math.log(math.pi))
    # saturated decoder outputs stay finite
    assert np.isfinite(log_likelihood(np.array([[1.0, 0.0]]), np.array([[0.0, 1.0]]), "bernoulli")).all()


def test_entropy_floor_is_below_any_models_cross_entropy():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (20, 1, 4, 4)).astype(np.float64) / 255
    floor = bernoulli_entropy_floor(x)
    for mean in (x, np.clip(x + 0.1, 0, 1), np.full_like(x, 0.5)):
        ce = -log_likelihood(x.reshape(20, -1), mean.reshape(20, -1), "bernoulli").mean()
        assert ce >= floor - 1e-4
    assert -log_likelihood(x.reshape(20, -1), x.reshape(20, -1), "bernoulli").mean() == pytest.approx(floor, abs=1e-3)


def test_active_units_zero_when_the_encoder_ignores_its_input():
    encode, decode = _tiny_model()
    x = np.random.default_rng(0).integers(0, 256, (50, 1, 1, 2)).astype(np.uint8)
    report = score(encode, decode, x, None, likelihood="bernoulli", k=4)
    assert report.active_units == 0
    assert report.kl_per_dim[0] == pytest.approx(report.kl, rel=1e-4)


def test_k_zero_is_refused():
    encode, decode = _tiny_model()
    with pytest.raises(UserInputError):
        score(encode, decode, np.zeros((1, 1, 1, 2), np.uint8), None, likelihood="bernoulli", k=0)


def test_iwae_bound_tightens_with_k_on_a_trained_model(tiny_mlp_run):
    from vaectl.training.eval_checkpoint import evaluate_checkpoint

    reports = {k: evaluate_checkpoint(tiny_mlp_run, k=k, n=200, seed=0) for k in (1, 10, 100)}
    # k = 1 is the ELBO with a one-sample KL instead of the closed form: equal up to Monte Carlo noise
    assert reports[1].iwae_nll == pytest.approx(reports[1].neg_elbo, abs=2.0)
    assert all(r.active_units >= 1 for r in reports.values())
    assert reports[100].iwae_nll < reports[10].iwae_nll + 0.2
    assert reports[10].iwae_nll < reports[1].iwae_nll + 0.2
    assert reports[100].iwae_nll < reports[1].iwae_nll  # strictly better with 100 samples on a real model
    assert reports[100].iwae_nll < reports[100].neg_elbo


def test_eval_cli_json(tiny_mlp_run):
    result = run_vaectl("eval", tiny_mlp_run, "--k", "8", "-n", "40", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["n"] == 40 and report["k"] == 8 and report["likelihood"] == "bernoulli"
    assert report["iwae_nll"] <= report["neg_elbo"] + 1.0
    assert report["bits_per_dim"] == pytest.approx(report["iwae_nll"] / (784 * math.log(2)))
    assert report["bits_per_dim_prior"] == pytest.approx(report["iwae_nll_prior"] / (784 * math.log(2)))
    assert len(report["kl_per_dim"]) == 4
    assert report["entropy_floor"] < report["iwae_nll"]


@pytest.mark.parametrize("args, needle", [(["--k", "0"], "--k"), (["-n", "0"], "-n")])
def test_eval_cli_bad_numbers(tiny_mlp_run, args, needle):
    result = run_vaectl("eval", tiny_mlp_run, *args)
    assert result.returncode == 2
    assert needle in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_eval_cli_refuses_data_of_the_wrong_shape(tiny_mlp_run, tmp_path):
    from PIL import Image

    for i in range(4):
        Image.fromarray(np.full((32, 32), i * 40, np.uint8)).save(tmp_path / f"{i}.png")
    result = run_vaectl("eval", tiny_mlp_run, "--data", tmp_path, "--k", "2")
    assert result.returncode == 2
    assert "shape" in result.stderr and "Traceback" not in result.stderr


@pytest.fixture(scope="module")
def tiny_mlp_onnx(tiny_mlp_run, tmp_path_factory):
    from vaectl.export import export_model

    result = export_model(tiny_mlp_run, tmp_path_factory.mktemp("eval_onnx"), log=lambda m: None)
    return result.encoder, result.decoder


def test_onnx_and_pytorch_paths_agree(tiny_mlp_run, tiny_mlp_onnx):
    from vaectl.infer.evaluate import evaluate_onnx
    from vaectl.training.eval_checkpoint import evaluate_checkpoint

    # same seed -> same draws: the two paths differ only by float32 rounding, far below Monte Carlo noise
    onnx_report = evaluate_onnx(*tiny_mlp_onnx, k=16, n=100, seed=3)
    torch_report = evaluate_checkpoint(tiny_mlp_run, k=16, n=100, seed=3)
    assert onnx_report.iwae_nll == pytest.approx(torch_report.iwae_nll, abs=0.05)
    assert onnx_report.neg_elbo == pytest.approx(torch_report.neg_elbo, abs=0.05)
    assert onnx_report.kl == pytest.approx(torch_report.kl, abs=1e-3)
    assert onnx_report.active_units == torch_report.active_units
    # under the fitted prior too: the checkpoint path fits what export wrote into the decoder (same data and seed)
    assert onnx_report.prior == torch_report.prior == "gmm"
    assert onnx_report.iwae_nll_prior == pytest.approx(torch_report.iwae_nll_prior, abs=0.05)
    assert onnx_report.iwae_nll_prior < onnx_report.iwae_nll  # the fitted prior explains the data better
    # a different seed moves the estimate only by Monte Carlo noise
    other = evaluate_onnx(*tiny_mlp_onnx, k=16, n=100, seed=4)
    assert other.iwae_nll == pytest.approx(torch_report.iwae_nll, abs=2.0)


def test_a_guided_conditional_model_is_scored_as_the_plain_conditional_model_on_both_paths(
    tiny_guided_run, guided_graphs
):
    """Guidance sharpens samples at no training cost; the model's likelihood is that of the conditional decoder
    (w = 1), which the checkpoint path scores. The graphs carry w = 2 as their default: scoring must not use it."""
    from vaectl.infer.evaluate import evaluate_onnx
    from vaectl.training.eval_checkpoint import evaluate_checkpoint

    onnx_report = evaluate_onnx(guided_graphs / "encoder.onnx", guided_graphs / "decoder.onnx", k=8, n=100, seed=3)
    torch_report = evaluate_checkpoint(tiny_guided_run, k=8, n=100, seed=3)
    assert onnx_report.iwae_nll == pytest.approx(torch_report.iwae_nll, abs=0.05)
    assert onnx_report.neg_elbo == pytest.approx(torch_report.neg_elbo, abs=0.05)
    # under the fitted prior too (both paths fit the same mixture)
    assert onnx_report.prior == torch_report.prior == "gmm"
    assert onnx_report.iwae_nll_prior == pytest.approx(torch_report.iwae_nll_prior, abs=0.05)


def test_row_context_model_onnx_and_pytorch_paths_agree(tiny_context_run, context_graphs, tmp_path):
    """The row context scores each pixel given the real rows above it, on both paths, and it pays off."""
    from vaectl.infer.evaluate import evaluate_onnx
    from vaectl.training import TrainConfig, train
    from vaectl.training.eval_checkpoint import evaluate_checkpoint

    onnx_report = evaluate_onnx(context_graphs / "encoder.onnx", context_graphs / "decoder.onnx", k=16, n=100, seed=3)
    torch_report = evaluate_checkpoint(tiny_context_run, k=16, n=100, seed=3)
    assert onnx_report.iwae_nll == pytest.approx(torch_report.iwae_nll, abs=0.05)
    assert onnx_report.neg_elbo == pytest.approx(torch_report.neg_elbo, abs=0.05)
    assert torch_report.iwae_nll <= torch_report.neg_elbo
    # the same model and training without the context: a far worse likelihood (measured: 199.0 vs 175.3)
    train(
        TrainConfig(out=str(tmp_path / "plain"), **TINY_CONTEXT_TRAINING), dict(TINY_CONTEXT_MODEL), log=lambda m: None
    )
    plain = evaluate_checkpoint(tmp_path / "plain", k=16, n=100, seed=3)
    assert torch_report.iwae_nll < plain.iwae_nll - 10, (torch_report.iwae_nll, plain.iwae_nll)


def test_eval_cli_onnx_path(tiny_mlp_onnx):
    encoder, decoder = tiny_mlp_onnx
    result = run_vaectl("eval", "--encoder", encoder, "--decoder", decoder, "--k", "4", "-n", "20", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["n"] == 20
    text = run_vaectl("eval", "--encoder", encoder, "--decoder", decoder, "--k", "4", "-n", "20").stdout
    assert "under N(0, I), the standard normal prior of the ELBO (its KL term):" in text
    assert "under gmm, the prior generate samples from (mixture of" in text
    normal = run_vaectl("eval", "--encoder", encoder, "--decoder", decoder, "--k", "4", "-n", "20", "--prior", "normal")
    assert normal.returncode == 0 and "under gmm" not in normal.stdout
    bad = run_vaectl("eval", "--encoder", encoder, "--decoder", decoder, "--k", "0")
    assert bad.returncode == 2 and "--k" in bad.stderr and "Traceback" not in bad.stderr


def test_eval_cli_refuses_a_pair_from_different_exports(tiny_mlp_onnx, tiny_conv_run, tmp_path):
    from vaectl.export import export_model

    other = export_model(tiny_conv_run, tmp_path, log=lambda m: None)
    result = run_vaectl("eval", "--encoder", tiny_mlp_onnx[0], "--decoder", other.decoder, "--k", "2")
    assert result.returncode == 2
    assert "different" in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_eval_says_what_it_scored_and_warns_under_100_images(tiny_mlp_onnx, tmp_path):
    """An image folder of 4 files is scored on its 10 % hold-out: 1 image. The report says so, and warns."""
    from conftest import cli
    from PIL import Image

    folder = tmp_path / "four"
    folder.mkdir()
    for i in range(4):
        Image.fromarray(np.full((28, 28), i * 60, np.uint8)).save(folder / f"{i}.png")
    encoder, decoder = tiny_mlp_onnx
    text = cli("eval", "--encoder", encoder, "--decoder", decoder, "--data", folder, "--k", 2)
    assert text.exit_code == 0, text.stderr
    assert "data: four, validation hold-out (the data has no test split), 1 image\n" in text.stdout
    assert "warning: only 1 image scored: figures from fewer than 100 images" in text.stdout
    as_json = cli("eval", "--encoder", encoder, "--decoder", decoder, "--data", folder, "--k", 2, "--json")
    report = json.loads(as_json.stdout)
    assert (report["dataset"], report["split"], report["n"], report["split_size"]) == ("four", "hold-out", 1, 1)
    assert report["warnings"] == [as_json.stderr.strip().removeprefix("warning: ")] and "1 image" in as_json.stderr

    enough = cli("eval", "--encoder", encoder, "--decoder", decoder, "-n", 100, "--k", 2)
    assert "data: mnist-sample, test split, the first 100 of 1,000 images\n" in enough.stdout
    assert "warning" not in enough.stdout
    report = json.loads(cli("eval", "--encoder", encoder, "--decoder", decoder, "-n", 100, "--k", 2, "--json").stdout)
    assert (report["dataset"], report["split"], report["n"], report["warnings"]) == ("mnist-sample", "test", 100, [])


def test_eval_of_a_checkpoint_says_what_it_scored(tiny_mlp_run):
    from vaectl.training.eval_checkpoint import evaluate_checkpoint

    report = evaluate_checkpoint(tiny_mlp_run, k=2, n=30)
    assert report.data() == "mnist-sample, test split, the first 30 of 1,000 images"
    assert report.warnings() and "only 30 images scored" in report.warnings()[0]


def test_report_aligns_its_numbers_and_puts_a_gaussian_elbo_on_the_training_logs_scale():
    """The numbers share one column (their decimal points aligned, whatever the labels' lengths); a gaussian
    model's negative ELBO is also printed as training logs it: less the constant (D/2) log(pi)."""
    from vaectl.scoring import CONVENTIONS, EvalReport, format_report

    report = EvalReport(
        n=500, k=1000, likelihood="gaussian", convention=CONVENTIONS["gaussian"], latent_dim=2, num_pixels=784,
        neg_elbo=511.833, recon=480.0, kl=31.833, iwae_nll=505.5, bits_per_dim=0.93, active_units=2,
        posterior_var=0.01, kl_per_dim=[15.0, 16.833], prior="gmm", prior_description="a mixture",
        neg_elbo_prior=509.0, iwae_nll_prior=504.0, dataset="mnist-sample", split_size=1000,
    )  # fmt: skip
    lines = format_report(report).splitlines()
    numbers = [line for line in lines if " nats " in line]
    assert len(numbers) == 5 and len({line.index(".") for line in numbers}) == 1, numbers
    offset = 392 * math.log(math.pi)
    training = next(line for line in numbers if "as training logs it" in line)
    assert f"{511.833 - offset:.3f} nats" in training and f"{480.0 - offset:.3f}" in training
    assert "without the constant" in next(line for line in lines if line.startswith("convention:"))
    bernoulli = format_report(dataclasses.replace(report, likelihood="bernoulli", entropy_floor=100.0))
    assert "as training logs it" not in bernoulli  # binary cross-entropy: the training loss is the NLL itself


def test_graphs_scored_on_a_folder_hold_out_what_their_run_held_out(tmp_path):
    """A run trained with --seed 3 holds out another tenth of a folder than seed 0 would. Its exported graphs,
    scored on that folder away from the run, score the run's own hold-out: the figures the checkpoint gives."""
    from PIL import Image

    from vaectl.export import export_model
    from vaectl.infer.evaluate import evaluate_onnx
    from vaectl.training import TrainConfig, train
    from vaectl.training.eval_checkpoint import evaluate_checkpoint

    folder = tmp_path / "blobs"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(60):  # 6 held out
        Image.fromarray(rng.integers(0, 256, (12, 12), dtype=np.uint8)).save(folder / f"{i:02d}.png")
    run = tmp_path / "run"
    cfg = TrainConfig(out=str(run), data=str(folder), epochs=1, batch_size=16, seed=3, grid_every=0)
    train(cfg, dict(arch="mlp", latent_dim=2, hidden=(16,)), log=lambda m: None)
    graphs = export_model(run, tmp_path / "onnx", prior="normal", log=lambda m: None)

    on_graphs = evaluate_onnx(graphs.encoder, graphs.decoder, data_dir=folder, k=4, seed=1, prior="normal")
    on_checkpoint = evaluate_checkpoint(run, k=4, seed=1)
    assert (on_graphs.split, on_graphs.n) == (on_checkpoint.split, on_checkpoint.n) == ("hold-out", 6)
    assert on_graphs.neg_elbo == pytest.approx(on_checkpoint.neg_elbo, abs=0.05)
    # seed 0's hold-out is other images: scoring those would have given other figures
    from vaectl.data import load_data
    from vaectl.infer import Encoder
    from vaectl.infer.commands import encode

    own, zero = load_data(folder, seed=3).test, load_data(folder, seed=0).test
    assert not np.array_equal(own, zero)
    # encode (and reconstruct, explore) read the same split of the folder
    encode(graphs.encoder, out=tmp_path / "z.npy", data_dir=folder, split="test")
    mu, _ = Encoder(graphs.encoder).encode(own)
    np.testing.assert_allclose(np.load(tmp_path / "z.npy")["mu"], mu, atol=1e-6)


def test_eval_of_graphs_in_their_run_reads_the_runs_data_and_notes_copied_images(tmp_path, monkeypatch):
    """`vaectl eval RUN/onnx` with no --data scores what `vaectl eval RUN` scores: the folder the run trained on,
    at the run's --image-size, its own hold-out; both say when held-out images are copies of training images."""
    import json

    from conftest import cli
    from PIL import Image

    monkeypatch.setenv("VAECTL_CACHE", str(tmp_path / "cache"))
    folder = tmp_path / "blobs"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(60):
        Image.fromarray(rng.integers(0, 256, (20, 20), dtype=np.uint8)).save(folder / f"{i:02d}.png")
    for i in range(0, 60, 2):  # every other picture twice: some of the 6 held out have a copy in training
        (folder / f"copy-{i:02d}.png").write_bytes((folder / f"{i:02d}.png").read_bytes())
    run = tmp_path / "run"
    flags = ["--epochs", "1", "--arch", "mlp", "--latent-dim", "2", "--hidden", "16", "--batch-size", "16"]
    result = cli(
        "train", "--data", folder, "--out", run, "--image-size", "16", "--seed", "3", "--grid-every", "0", *flags
    )
    assert result.exit_code == 0, result.output
    assert cli("export", run, "--out", run / "onnx", "--prior", "normal").exit_code == 0

    reports, notes = [], []
    for model in (run / "onnx", run):
        result = cli("eval", model, "--k", "4", "--seed", "1", "--json")
        assert result.exit_code == 0, result.output
        reports.append(json.loads(result.stdout))
        notes.append([line for line in result.stderr.splitlines() if "exact copies" in line])
    on_graphs, on_checkpoint = reports
    assert (on_graphs["split"], on_graphs["n"]) == (on_checkpoint["split"], on_checkpoint["n"]) == ("hold-out", 9)
    assert on_graphs["neg_elbo"] == pytest.approx(on_checkpoint["neg_elbo"], abs=0.05)
    assert len(notes[0]) == 1 and notes[0] == notes[1]
    assert notes[0][0].startswith("note: ") and f"held-out images in {folder} are exact copies" in notes[0][0]
