"""models/refine.py: the written-out decoder gradient against autograd, the Adam steps against torch.optim.Adam,
and the refinement as the exported encoder carries it."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from conftest import make_colour_folder, run_vaectl_in_process  # noqa: E402
from export_helpers import QUIET, save_tiny_checkpoint, session  # noqa: E402

from vaectl.errors import UserInputError  # noqa: E402
from vaectl.models import VAEConfig  # noqa: E402
from vaectl.models.refine import BETAS, EPS, LR, _base_logits, _Constants, _nll_logit_grad, refine  # noqa: E402
from vaectl.models.vae import VAE  # noqa: E402
from vaectl.training.loss import reconstruction_loss  # noqa: E402

# Odd sizes on purpose: 20 px maps to 10, 5, 3, so the nearest upsampling from 3 to 5 copies rows unevenly.
CASES = {
    "colour-learned-sigma": dict(
        channels=3, height=20, width=12, likelihood="gaussian-learned", log_sigma=(-2.0, -1.5, -1.0)
    ),
    "grey-bernoulli": dict(channels=1, height=20, width=20, conv_channels=(2, 4, 4), likelihood="bernoulli"),
    "grey-gaussian": dict(channels=1, height=12, width=16, likelihood="gaussian"),
}


def tiny_model(seed=0, **overrides) -> VAE:
    config = VAEConfig(**{"arch": "resnet", "latent_dim": 3, "conv_channels": (2, 4), "beta": 0.7, **overrides})
    torch.manual_seed(seed)
    model = VAE(config).double().eval()
    with torch.no_grad():  # away from the initial weights: GroupNorm's affine and the biases matter too
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return model


def refined_checkpoint(tmp_path, steps: int):
    """A checkpoint file of an untrained tiny colour resnet (20x12) that refines with `steps` steps."""
    return save_tiny_checkpoint(tmp_path / "r.pt", **CASES["colour-learned-sigma"], arch="resnet", refine_steps=steps)


def images(config: VAEConfig, n: int = 4):
    return torch.rand(n, *config.image_shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)


def objective(model: VAE, z, x):
    # -log p(x | z) + beta |z|^2 / 2 per image, with autograd's own modules (Decoder.base_logits)
    logits = model.decoder.base_logits(z)
    log_sigma = model.decoder.log_sigma if model.config.learned_sigma else None
    return reconstruction_loss(logits, x, model.config.likelihood, log_sigma) + model.config.beta * 0.5 * z.pow(2).sum(
        1
    )


@pytest.mark.parametrize("case", CASES)
def test_written_out_gradient_equals_autograd(case):
    model = tiny_model(**CASES[case])
    x = images(model.config)
    z = torch.randn(len(x), 3, dtype=torch.float64, generator=torch.Generator().manual_seed(2)).requires_grad_(True)
    (expected,) = torch.autograd.grad(objective(model, z, x).sum(), z)
    with torch.no_grad():
        logits, vjp = _base_logits(model.decoder, z, _Constants(z))
        inv_var = torch.exp(-2 * model.decoder.log_sigma).view(-1, 1, 1) if model.config.learned_sigma else None
        got = vjp(_nll_logit_grad(logits, x, model.config.likelihood, inv_var)) + model.config.beta * z
        torch.testing.assert_close(logits, model.decoder.base_logits(z), rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(got, expected, rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("case", CASES)
def test_steps_are_torch_adam_on_the_negative_elbo_and_lower_it(case):
    model = tiny_model(**CASES[case])
    x = images(model.config)
    with torch.no_grad():
        mu, _ = model.encoder(x)
        got = refine(model.decoder, x, mu, steps=5)
    z = mu.clone().requires_grad_(True)
    adam = torch.optim.Adam([z], lr=LR, betas=BETAS, eps=EPS)
    for _ in range(5):
        adam.zero_grad()
        objective(model, z, x).sum().backward()
        adam.step()
    torch.testing.assert_close(got, z.detach(), rtol=1e-7, atol=1e-9)
    with torch.no_grad():
        assert (objective(model, got, x) < objective(model, mu, x)).all()


def test_each_image_is_refined_on_its_own():
    model = tiny_model(**CASES["colour-learned-sigma"])
    x = images(model.config, n=5)
    with torch.no_grad():
        mu, _ = model.encoder(x)
        together = refine(model.decoder, x, mu, steps=4)
        alone = torch.cat([refine(model.decoder, x[i : i + 1], mu[i : i + 1], steps=4) for i in range(5)])
    torch.testing.assert_close(together, alone, rtol=1e-9, atol=1e-12)


def test_encode_and_reconstruct_use_the_configured_steps():
    model = tiny_model(**CASES["colour-learned-sigma"], refine_steps=3)
    x = images(model.config)
    plain_mu, plain_logvar = model.encoder(x)
    mu, logvar = model.encode(x)
    torch.testing.assert_close(mu, refine(model.decoder, x, plain_mu, 3))
    torch.testing.assert_close(model.encode(x, refine_steps=1)[0], refine(model.decoder, x, plain_mu, 1))
    torch.testing.assert_close(logvar, plain_logvar)  # only the mean moves
    torch.testing.assert_close(model.reconstruct(x), torch.sigmoid(model.decoder(mu)))
    assert not torch.allclose(mu, plain_mu)
    model.with_refine_steps(0)
    torch.testing.assert_close(model.encode(x)[0], plain_mu)


@pytest.mark.parametrize(
    "overrides, message",
    [
        (dict(arch="mlp", refine_steps=5), "refine_steps belongs to the unconditional resnet"),
        (
            dict(arch="resnet", height=16, width=16, conv_channels=(2, 4), num_classes=3, refine_steps=2),
            "unconditional",
        ),
        (dict(arch="resnet", height=16, width=16, conv_channels=(2, 4), refine_steps=-1), "must be >= 0"),
        (
            dict(arch="resnet", height=16, width=16, conv_channels=(2, 4), context_channels=4, refine_steps=2),
            "without a row context",
        ),
    ],
)
def test_refine_steps_belong_to_the_unconditional_resnet_without_a_row_context(overrides, message):
    with pytest.raises(UserInputError, match=message):
        VAEConfig(**overrides)


# ----------------------------------------------------------------------------- in the exported encoder


def test_the_exported_encoder_loops_as_many_steps_as_fed_and_export_sets_the_default(tmp_path):
    import onnx

    from vaectl.export import export_model
    from vaectl.infer import Encoder
    from vaectl.infer.describe import describe_model, format_description
    from vaectl.models.checkpoint import Checkpoint

    ckpt = refined_checkpoint(tmp_path, 4)
    model = Checkpoint.load(ckpt).model()
    x = np.random.default_rng(0).random((3, *model.config.image_shape), dtype=np.float32)
    export_model(ckpt, tmp_path / "onnx", prior="normal", **QUIET)
    graph = onnx.load(tmp_path / "onnx" / "encoder.onnx").graph
    assert [n.op_type for n in graph.node].count("Loop") == 1  # one copy of the step, not one per step
    assert [i.name for i in graph.input] == ["image", "refine_steps"]
    encoder = session(tmp_path / "onnx" / "encoder.onnx")
    for steps in (0, 1, 4, 9):
        got = encoder.run(["mu"], {"image": x, "refine_steps": np.array([steps], np.int64)})[0]
        with torch.no_grad():
            want = model.encode(torch.from_numpy(x), refine_steps=steps)[0].numpy()
        np.testing.assert_allclose(got, want, atol=1e-5, err_msg=f"{steps} steps")
    text = format_description(describe_model(tmp_path / "onnx" / "encoder.onnx"))
    assert "refinement  4 steps" in text and "refine_steps: tensor(int64) [1] (the model's: 4 steps)" in text
    runtime = Encoder(tmp_path / "onnx")
    np.testing.assert_array_equal(runtime.encode(x, refine_steps=np.int64(2))[0], runtime.encode(x, refine_steps=2)[0])
    for bad in (-1, 1.5, True):
        with pytest.raises(UserInputError, match="refine_steps must be a whole number >= 0"):
            runtime.encode(x, refine_steps=bad)
    np.testing.assert_allclose(runtime.encode(x)[0], model.encode(torch.from_numpy(x))[0].numpy(), atol=1e-5)
    np.testing.assert_allclose(
        runtime.encode(x, refine_steps=0)[0], model.encoder(torch.from_numpy(x))[0].detach().numpy(), atol=1e-5
    )

    export_model(ckpt, tmp_path / "off", refine_steps=0, prior="normal", **QUIET)
    assert [i.name for i in onnx.load(tmp_path / "off" / "encoder.onnx").graph.input] == ["image"]
    assert "refinement" not in format_description(describe_model(tmp_path / "off" / "encoder.onnx"))
    with pytest.raises(UserInputError, match="does not refine its latent"):
        Encoder(tmp_path / "off").encode(x, refine_steps=2)


def test_export_checks_the_refined_mu_within_its_own_bound_and_catches_a_wrong_loop(tmp_path):
    from vaectl.export import export_model
    from vaectl.export.verify import REFINED_ATOL, Report, verify_against_torch
    from vaectl.models.checkpoint import Checkpoint

    ckpt = refined_checkpoint(tmp_path, 4)
    result = export_model(ckpt, tmp_path / "onnx", prior="normal", **QUIET)
    assert result.max_abs_diff["refined encoder.mu"] <= 1e-4
    model = Checkpoint.load(ckpt).model()
    report = Report()
    verify_against_torch(model, "encoder", tmp_path / "onnx" / "encoder.onnx", 1e-4, None, report)
    assert not report.failures and report.compared_with["refined encoder.mu"] == ("PyTorch", REFINED_ATOL * 1e-4)

    # A graph whose loop steps through another decoder: the encoder alone still matches, its refinement not.
    with torch.no_grad():
        model.decoder.body.weight.mul_(1.5)
    report = Report()
    verify_against_torch(model, "encoder", tmp_path / "onnx" / "encoder.onnx", 1e-4, None, report)
    assert report.failures and all(f.startswith("refined encoder.mu at N=") for f in report.failures)
    assert "> atol 0.001" in report.failures[0]


def test_a_colour_folder_trains_with_refinement_unless_told_otherwise(tmp_path):
    images = make_colour_folder(tmp_path / "images", n=12, size=(16, 16), classes=())
    common = ["train", "--data", images, "--epochs", "1", "--conv-channels", "2,4", "--threads", "1"]
    for extra, expected in (([], 20), (["--refine-steps", "3"], 3), (["--context-channels", "2"], 0)):
        out = tmp_path / f"run{len(extra)}{expected}"
        code, stderr = run_vaectl_in_process(*common, "--out", out, *extra)
        assert code == 0, stderr
        from vaectl.models.checkpoint import Checkpoint

        assert Checkpoint.load(out).config.refine_steps == expected
        assert (f"{expected} refinement steps at inference" in stderr) == bool(expected)  # the training line
    code, stderr = run_vaectl_in_process(*common, "--out", tmp_path / "mlp", "--arch", "mlp", "--refine-steps", "2")
    assert code == 2 and "--refine-steps belongs to the unconditional resnet (--arch resnet)" in stderr


def test_encode_takes_another_number_of_steps_and_refuses_bad_ones(tmp_path):
    from vaectl.export import export_model

    ckpt = refined_checkpoint(tmp_path, 4)
    export_model(ckpt, tmp_path / "onnx", prior="normal", **QUIET)
    images = make_colour_folder(tmp_path / "images", n=6, size=(12, 20), classes=())
    rows = {}
    for steps in (None, 0, 4):
        out = tmp_path / f"z{steps}.npy"
        extra = () if steps is None else ("--refine-steps", steps)
        code, stderr = run_vaectl_in_process(
            "encode", tmp_path / "onnx", *sorted(images.iterdir()), "--out", out, *extra
        )
        assert code == 0, stderr
        rows[steps] = np.load(out)["mu"]
    assert np.array_equal(rows[None], rows[4]) and not np.allclose(rows[0], rows[4])
    code, stderr = run_vaectl_in_process(
        "encode", tmp_path / "onnx", images / "000.png", "--out", tmp_path / "bad.npy", "--refine-steps", -1
    )
    assert code == 2 and "--refine-steps must be a whole number >= 0" in stderr
    assert not (tmp_path / "bad.npy").exists()
    export_model(ckpt, tmp_path / "off", refine_steps=0, prior="normal", **QUIET)
    code, stderr = run_vaectl_in_process(
        "encode", tmp_path / "off", images / "000.png", "--out", tmp_path / "bad.npy", "--refine-steps", 3
    )
    assert code == 2 and "does not refine its latent" in stderr


def test_the_refining_encoder_loads_without_onnxruntime_warnings(tmp_path, capfd):
    # untrained: its GroupNorm weights are all ones, equal values the exporter passes through Identity nodes,
    # which onnxruntime cannot fold where the loop's body reads them (it warns on every load otherwise)
    from vaectl.export import export_model

    export_model(refined_checkpoint(tmp_path, 2), tmp_path / "onnx", prior="normal", **QUIET)
    capfd.readouterr()
    x = np.random.default_rng(0).random((2, 3, 20, 12), dtype=np.float32)
    session(tmp_path / "onnx" / "encoder.onnx", severity=2).run(None, {"image": x, "refine_steps": np.array([2])})
    err = capfd.readouterr().err
    assert "[W:onnxruntime" not in err and "[E:onnxruntime" not in err, err[-2000:]


def test_the_checkpoint_behind_the_infer_interface_refines_as_the_export(tmp_path):
    from vaectl.export import export_model
    from vaectl.infer import Encoder
    from vaectl.pytorch import checkpoint_pair

    ckpt = refined_checkpoint(tmp_path, 5)
    export_model(ckpt, tmp_path / "onnx", prior="normal", **QUIET)
    x = np.random.default_rng(0).random((3, 3, 20, 12), dtype=np.float32)
    pair, graphs = checkpoint_pair(ckpt), Encoder(tmp_path / "onnx")
    for steps in (None, 0, 2):
        want = graphs.encode(x, refine_steps=steps)[0]
        np.testing.assert_allclose(pair.encoder.encode(x, refine_steps=steps)[0], want, atol=1e-5)
