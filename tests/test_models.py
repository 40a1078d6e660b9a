"""Model shapes per architecture and image size, conditional models, and the config's round trip."""

from __future__ import annotations

import json

import pytest

torch = pytest.importorskip("torch")

from vaectl.errors import UserInputError  # noqa: E402
from vaectl.models import VAEConfig  # noqa: E402
from vaectl.models.vae import VAE, reparameterize  # noqa: E402

SMALL = dict(latent_dim=3, hidden=(16,), conv_channels=(4, 8, 8), conv_hidden=16)
ARCHS = ["mlp", "conv", "resnet"]


def _check_shapes(cfg: VAEConfig, n: int = 2, y=None):
    torch.manual_seed(0)
    model = VAE(cfg)
    x = torch.rand(n, cfg.channels, cfg.height, cfg.width)
    mu, logvar = model.encoder(x, y)
    assert mu.shape == logvar.shape == (n, cfg.latent_dim)
    logits, mu2, logvar2 = model(x, y)
    assert logits.shape == (n, cfg.channels, cfg.height, cfg.width)
    recon = model.reconstruct(x, y)  # deterministic: the decoded posterior mean, not a sample
    assert recon.shape == x.shape
    assert torch.equal(recon, torch.sigmoid(model.decoder(mu, y))) and torch.equal(recon, model.reconstruct(x, y))
    samples = model.sample(n, y, generator=torch.Generator().manual_seed(3))  # z ~ N(0, I), decoded
    z = torch.randn(n, cfg.latent_dim, generator=torch.Generator().manual_seed(3))
    assert samples.shape == x.shape and torch.equal(samples, torch.sigmoid(model.decoder(z, y)))
    # gradients reach every parameter
    logits.sum().backward()
    assert all(p.grad is not None for p in model.parameters())


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("size", [28, 32, 64])
@pytest.mark.parametrize("channels", [1, 3])
def test_shapes_for_each_architecture_and_size(arch, size, channels):
    _check_shapes(VAEConfig(arch=arch, channels=channels, height=size, width=size, **SMALL))


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("height,width", [(30, 30), (45, 45), (45, 30), (17, 64)])
def test_odd_and_non_square_sizes_work(arch, height, width):
    _check_shapes(VAEConfig(arch=arch, height=height, width=width, **SMALL))


def test_conv_refuses_images_smaller_than_its_stages_clearly():
    with pytest.raises(UserInputError, match=r"at least 8x8 px, got 7x7"):
        VAEConfig(arch="conv", height=7, width=7, conv_channels=(4, 8, 8))
    with pytest.raises(UserInputError, match="at least one conv stage"):
        VAEConfig(arch="conv", conv_channels=())


@pytest.mark.parametrize("arch", ARCHS)
def test_conditional_model_uses_the_label(arch):
    cfg = VAEConfig(arch=arch, num_classes=4, class_names=("a", "b", "c", "d"), **SMALL)
    y = torch.tensor([0, 3])
    _check_shapes(cfg, y=y)
    model = VAE(cfg).eval()
    z = torch.zeros(2, cfg.latent_dim)
    # same z, different labels -> different images: the decoder sees the label
    out_a = model.decoder(z, torch.tensor([0, 0]))
    out_b = model.decoder(z, torch.tensor([1, 1]))
    assert not torch.allclose(out_a, out_b)


def test_reparameterize_has_the_posterior_moments():
    torch.manual_seed(0)
    mu = torch.tensor([[1.5, -2.0]]).expand(200_000, 2)
    logvar = torch.tensor([[0.0, 2 * torch.log(torch.tensor(0.5)).item()]]).expand(200_000, 2)
    z = reparameterize(mu, logvar)
    assert torch.allclose(z.mean(0), torch.tensor([1.5, -2.0]), atol=0.01)
    assert torch.allclose(z.std(0), torch.tensor([1.0, 0.5]), atol=0.01)


def test_config_round_trips_through_json():
    cfg = VAEConfig(
        arch="mlp",
        latent_dim=5,
        channels=3,
        height=32,
        width=30,
        hidden=(64, 32),
        likelihood="gaussian",
        beta=3.0,
        num_classes=2,
        class_names=("cat", "dog"),
        dataset="pets",
    )
    again = VAEConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert again == cfg
    assert isinstance(again.hidden, tuple) and isinstance(again.class_names, tuple)


def test_config_refuses_unknown_keys_and_bad_values():
    d = VAEConfig().to_dict()
    with pytest.raises(UserInputError, match="newer version"):
        VAEConfig.from_dict({**d, "flux_capacitor": 1})
    with pytest.raises(UserInputError, match="invalid model config"):
        VAEConfig.from_dict({**d, "hidden": ["wide"]})
    with pytest.raises(UserInputError, match="not a mapping"):
        VAEConfig.from_dict([1, 2])
    for bad, match in [
        (dict(latent_dim=0), "latent dimension"),
        (dict(arch="rnn"), "architecture"),
        (dict(likelihood="poisson"), "likelihood"),
        (dict(channels=2), "channels"),
        (dict(beta=-1.0), "beta"),
        (dict(hidden=(0,)), "positive"),
        (dict(num_classes=2, class_names=("a",)), "one name per class"),
        (dict(context_channels=-1), "context channels"),
        (dict(context_kernel=4), "odd size"),
        (dict(context_kernel=1), "odd size"),
        (dict(context_channels=4, context_kernel=9, height=3), "at least 4 px high"),
    ]:
        with pytest.raises(UserInputError, match=match):
            VAEConfig(**bad)


# ----------------------------------------------------------------------------- row context


def _context_model(seed: int = 0, **overrides) -> VAE:
    """A tiny row-context VAE whose context term is switched on (its output layer starts at zero)."""
    cfg = VAEConfig(**{**SMALL, "context_channels": 4, "context_kernel": 5, **overrides})
    torch.manual_seed(seed)
    model = VAE(cfg).eval()
    with torch.no_grad():
        model.decoder.context.out.weight.normal_(0, 1.0)
        model.decoder.context.out.bias.normal_(0, 0.1)
    return model


def test_row_context_sees_only_the_rows_above():
    model = _context_model()
    ctx = model.decoder.context
    x = torch.rand(3, 1, 28, 28)
    base = ctx(x)
    for row in (0, 9, 27):
        changed = x.clone()
        changed[:, :, row:] = torch.rand_like(changed[:, :, row:])  # this row and everything below it
        got = ctx(changed)
        torch.testing.assert_close(got[:, :, : row + 1], base[:, :, : row + 1], rtol=0, atol=0)
        if row + 1 < 28:  # the row just below does see the change
            assert not torch.equal(got[:, :, row + 1], base[:, :, row + 1])
    # more than kernel // 2 rows up is out of reach: changing row 0 leaves rows 3.. alone
    changed = x.clone()
    changed[:, :, 0] = 1 - changed[:, :, 0]
    torch.testing.assert_close(ctx(changed)[:, :, 3:], base[:, :, 3:], rtol=0, atol=0)


@pytest.mark.parametrize("arch", ARCHS)
def test_generated_image_is_the_fixed_point_of_teacher_forcing(arch):
    """decoder(z) builds the image row by row; scoring that image with its own rows above gives the same logits."""
    model = _context_model(arch=arch, channels=3, height=20, width=17)
    z = torch.randn(4, model.config.latent_dim)
    with torch.no_grad():
        generated = model.decoder(z)  # (4, 3, 20, 17)
        forced = model.decoder(z, x=torch.sigmoid(generated))
        assert generated.shape == (4, 3, 20, 17)
        torch.testing.assert_close(forced, generated, rtol=0, atol=1e-5)
        # and the context matters: without it the logits differ
        assert (generated - model.decoder.base_logits(z)).abs().max() > 0.1


def test_a_fresh_context_model_starts_as_the_plain_decoder():
    cfg = VAEConfig(**SMALL, context_channels=4)
    model = VAE(cfg)
    z, x = torch.randn(2, cfg.latent_dim), torch.rand(2, 1, 28, 28)
    with torch.no_grad():
        torch.testing.assert_close(model.decoder(z), model.decoder.base_logits(z))
        torch.testing.assert_close(model.decoder(z, x=x), model.decoder.base_logits(z))


def test_context_model_shapes_and_gradients():
    _check_shapes(VAEConfig(**SMALL, context_channels=3, context_kernel=3, channels=3, height=16, width=16))
    _check_shapes(VAEConfig(**SMALL, context_channels=3, num_classes=2), y=torch.tensor([0, 1]))


def test_every_name_the_models_package_promises_resolves():
    import vaectl.models as models

    for name in models.__all__:
        assert getattr(models, name) is not None, name
    with pytest.raises(AttributeError):
        models.kl_divergence  # noqa: B018  (the loss lives in training/loss.py, beside the training loop)


# ----------------------------------------------------------------------------- guidance


def _guided(arch: str = "mlp", seed: int = 0, **overrides) -> VAE:
    cfg = VAEConfig(arch=arch, num_classes=3, **{**SMALL, "label_dropout": 0.2, **overrides})
    torch.manual_seed(seed)
    return VAE(cfg).eval()


@pytest.mark.parametrize("arch", ARCHS)
def test_guided_logits_are_the_classifier_free_mix(arch):
    model = _guided(arch)
    assert model.decoder.onehot.eye.shape == (4, 4)  # K classes + the "no label" class
    z, y = torch.randn(5, 3, generator=torch.Generator().manual_seed(1)), torch.tensor([0, 1, 2, 1, 0])
    with torch.no_grad():
        conditional = model.decoder.base_logits(z, y)
        unconditional = model.decoder.base_logits(z, torch.full_like(y, 3))  # label K: no label
        for w in (0.0, 0.5, 2.5, 7.0):
            got = model.decoder(z, y, guidance=torch.tensor([w]))
            torch.testing.assert_close(got, unconditional + w * (conditional - unconditional), rtol=0, atol=1e-5)
        # weight 1 is the conditional decoder exactly, not just closely
        assert torch.equal(model.decoder(z, y, guidance=torch.tensor([1.0])), model.decoder(z, y))
    assert not torch.allclose(conditional, unconditional)


@pytest.mark.parametrize("arch", ARCHS)
def test_guidance_without_label_dropout_pushes_away_from_the_average_label(arch):
    """No "no label" class to learn: the reference is the decoder fed a one-hot of 1/K everywhere."""
    model = _guided(arch, label_dropout=0.0, guidance=2.0)
    assert model.config.guided and not model.config.no_label_class and model.config.label_slots == 3
    assert model.encoder.onehot.eye.shape == (3, 3) and model.decoder.onehot.eye.shape == (4, 3)
    # the extra row is derived from the config, not stored: the weights are those of a plain conditional model
    plain = VAE(VAEConfig(arch=arch, num_classes=3, **SMALL))
    assert model.state_dict().keys() == plain.state_dict().keys()
    z, y = torch.randn(5, 3, generator=torch.Generator().manual_seed(1)), torch.tensor([0, 1, 2, 1, 0])
    with torch.no_grad():
        conditional = model.decoder.base_logits(z, y)
        # the average label by hand: the first layer sees [z, 1/3, 1/3, 1/3]
        body = model.decoder.body  # a Sequential whose first layer sees the one-hot, or that layer alone
        first, rest = (body[0], body[1:]) if isinstance(body, torch.nn.Sequential) else (body, torch.nn.Identity())
        average_input = torch.cat([z, torch.full((5, 3), 1 / 3)], dim=1)
        h = rest(first(average_input))
        average = (
            h.view(-1, 1, 28, 28) if arch == "mlp" else model.decoder.upsample(h.view(-1, *model.decoder.start_shape))
        )
        if model.decoder.colour is not None:  # the resnet's overall colour, from the same input
            average = average + model.decoder.colour(average_input)
        for w in (0.0, 0.5, 2.0, 7.0):
            got = model.decoder(z, y, guidance=torch.tensor([w]))
            torch.testing.assert_close(got, average + w * (conditional - average), rtol=0, atol=1e-5)
        assert torch.equal(model.decoder(z, y, guidance=torch.tensor([1.0])), model.decoder(z, y))
        # training never sees label K: the labels reach the encoder as given
        seen = []
        model.encoder.register_forward_pre_hook(lambda module, args: seen.append(args[1].clone()))
        model.train()(torch.rand(500, 1, 28, 28), torch.zeros(500, dtype=torch.long))
        assert set(seen[0].tolist()) == {0}


def test_guidance_applies_at_every_row_of_a_row_context_decoder():
    model = _guided(context_channels=4, context_kernel=5)
    with torch.no_grad():
        model.decoder.context.out.weight.normal_(0, 1.0)
        z, y = torch.randn(3, 3, generator=torch.Generator().manual_seed(2)), torch.tensor([0, 1, 2])
        assert torch.equal(model.decoder(z, y, guidance=torch.tensor([1.0])), model.decoder(z, y))
        # weight 0: each row generated from the unconditional logits (the rows above fed back as they came out)
        torch.testing.assert_close(
            model.decoder(z, y, guidance=torch.tensor([0.0])),
            model.decoder(z, torch.full_like(y, 3)),
            rtol=0,
            atol=1e-5,
        )
        # weight w: the row loop on the guided z part; the row context's term is the same for both labels
        w = torch.tensor([3.0])
        guided = model.decoder.guided_logits(z, y, w)
        rows, above = [], torch.zeros(3, 1, 2, 28)
        for i in range(28):
            row = guided[:, :, i : i + 1] + model.decoder.context.step(above)
            rows.append(row)
            above = torch.cat([above[:, :, 1:], torch.sigmoid(row)], dim=2)
        torch.testing.assert_close(model.decoder(z, y, guidance=w), torch.cat(rows, dim=2), rtol=0, atol=1e-5)


def test_label_dropout_gives_a_fraction_of_training_images_the_no_label_class():
    model = _guided(label_dropout=0.5)
    seen = []
    model.encoder.register_forward_pre_hook(lambda module, args: seen.append(args[1].clone()))
    y = torch.zeros(4000, dtype=torch.long)
    x = torch.rand(4000, 1, 28, 28)
    torch.manual_seed(0)
    model.train()(x, y)
    model.eval()(x, y)
    dropped = (seen[0] == 3).float().mean().item()
    assert 0.45 < dropped < 0.55 and set(seen[0].tolist()) == {0, 3}
    assert torch.equal(seen[1], y)  # evaluation and scoring use the label given


def test_guidance_config_is_checked():
    for bad, match in [
        (dict(label_dropout=0.2), "needs a conditional model"),
        (dict(num_classes=2, label_dropout=1.0), r"\[0, 1\)"),
        (dict(num_classes=2, label_dropout=-0.1), r"\[0, 1\)"),
        (dict(num_classes=2, label_dropout=0.2, guidance=-1.0), "finite number >= 0"),
        (dict(num_classes=2, label_dropout=0.2, guidance=float("nan")), "finite number >= 0"),
    ]:
        with pytest.raises(UserInputError, match=match):
            VAEConfig(**bad)
    with pytest.raises(UserInputError, match="guidance needs a conditional model"):
        VAEConfig(guidance=2.0)
    plain = VAEConfig(num_classes=2)
    assert not plain.guided and plain.label_slots == 2
    assert VAEConfig(num_classes=2, label_dropout=0.1).label_slots == 3
    average_reference = VAEConfig(num_classes=2, guidance=1.5)
    assert average_reference.guided and not average_reference.no_label_class and average_reference.label_slots == 2
    assert average_reference.to_dict()["guidance"] == 1.5  # stored, so the exported decoder takes the weight


# ----------------------------------------------------------------------------- resnet, learned sigma, the default


def test_resnet_dropout_acts_in_training_only_and_belongs_to_the_resnet():
    cfg = VAEConfig(arch="resnet", channels=3, height=16, width=16, latent_dim=4, conv_channels=(2, 4), dropout=0.5)
    model, x = VAE(cfg), torch.rand(2, 3, 16, 16)
    torch.manual_seed(0)
    assert not torch.equal(model(x)[1], model(x)[1])  # the encoder's blocks drop activations while training
    model.eval()
    assert torch.equal(model.encoder(x)[0], model.encoder(x)[0])
    assert cfg.to_dict()["dropout"] == 0.5 and "dropout" not in VAEConfig().to_dict()  # older readers: no key
    for bad, match in [
        (dict(arch="mlp", dropout=0.1), "dropout belongs to the resnet"),
        (dict(arch="resnet", height=16, width=16, conv_channels=(2, 4), dropout=1.0), r"\[0, 1\)"),
    ]:
        with pytest.raises(UserInputError, match=match):
            VAEConfig(**bad)


def test_resnet_is_made_of_diffusers_style_blocks():
    from vaectl.models.vae import Downsample, ResnetBlock, ResnetDecoder, ResnetEncoder, Upsample

    cfg = VAEConfig(arch="resnet", channels=3, height=16, width=16, latent_dim=3, conv_channels=(2, 4))
    model = VAE(cfg)
    assert isinstance(model.encoder, ResnetEncoder) and isinstance(model.decoder, ResnetDecoder)
    blocks = [m for m in model.encoder.features if isinstance(m, ResnetBlock)]
    downs = [m for m in model.encoder.features if isinstance(m, Downsample)]
    assert len(blocks) == len(downs) == 2
    assert isinstance(blocks[0].skip, torch.nn.Identity) and isinstance(blocks[1].skip, torch.nn.Conv2d)  # 2 -> 4
    assert blocks[1].skip.kernel_size == (1, 1)
    assert [m.norm1.num_groups for m in blocks] == [2, 2]  # groups divide the narrow widths
    ups = [m for m in model.decoder.upsample if isinstance(m, Upsample)]
    assert [u.size for u in ups] == [(8, 8), (16, 16)]  # 4 -> 8 -> 16: nearest resize to exact sizes
    assert ups[-1].conv.out_channels == 3  # the last one is conv_out
    # a block is the residual sum: with its second conv zeroed it is the identity
    block = ResnetBlock(4, 4)
    torch.nn.init.zeros_(block.conv2.weight), torch.nn.init.zeros_(block.conv2.bias)
    x = torch.randn(2, 4, 5, 5)
    assert torch.equal(block(x), x)


def test_mlp_and_conv_checkpoints_keep_their_parameter_names():
    """Checkpoints written before the architectures became classes of their own still load."""
    mlp = VAE(VAEConfig(arch="mlp", latent_dim=2, hidden=(8,), height=4, width=4))
    assert sorted(mlp.state_dict()) == sorted(
        f"{part}.{name}"
        for part, names in {
            "encoder": ["body.0", "mu", "logvar"],
            "decoder": ["body.0", "body.2"],
        }.items()
        for layer in names
        for name in (f"{layer}.weight", f"{layer}.bias")
    )
    conv = VAE(VAEConfig(arch="conv", latent_dim=2, conv_channels=(2, 4), conv_hidden=8, height=8, width=8))
    layers = {
        "encoder": ["features.0", "features.2", "body.0", "mu", "logvar"],
        "decoder": ["body.0", "body.2", "upsample.0", "upsample.2"],
    }
    expected = [f"{p}.{layer}.{w}" for p, ls in layers.items() for layer in ls for w in ("weight", "bias")]
    assert sorted(conv.state_dict()) == sorted(expected)


def test_learned_sigma_is_a_decoder_parameter_that_the_trained_config_carries():
    cfg = VAEConfig(
        arch="resnet", channels=3, height=8, width=8, latent_dim=2, conv_channels=(2,), likelihood="gaussian-learned"
    )
    model = VAE(cfg)
    assert model.log_sigma.shape == (3,) and model.log_sigma.requires_grad
    assert "decoder.log_sigma" in model.state_dict()
    with torch.no_grad():
        model.decoder.log_sigma.copy_(torch.tensor([-1.0, -2.0, -3.0]))
    trained = model.trained_config()
    assert trained.log_sigma == (-1.0, -2.0, -3.0) and cfg.log_sigma == ()  # the run's own config is untouched
    assert VAEConfig.from_dict(json.loads(json.dumps(trained.to_dict()))) == trained
    assert torch.equal(VAE(trained).log_sigma, model.log_sigma)  # a model built from it starts there
    assert "log_sigma" not in cfg.to_dict() and VAE(VAEConfig()).log_sigma is None
    with pytest.raises(UserInputError, match="one finite value per channel"):
        VAEConfig(channels=3, likelihood="gaussian-learned", log_sigma=(0.0,))
    with pytest.raises(UserInputError, match="belongs to the gaussian-learned"):
        VAEConfig(likelihood="bernoulli", log_sigma=(0.0,))


@pytest.mark.parametrize(
    "shape,widths,epochs",
    [
        ((1, 28, 28), None, None),  # the tutorial's images keep the MLP default
        ((3, 28, 28), (32, 64, 128), 100),  # colour: 28 -> 14 -> 7 -> 4
        ((1, 32, 32), (32, 64, 128), 100),  # 32 px: down to 4 x 4
        ((3, 64, 64), (16, 32, 64, 128), 60),  # the 32 x 32 map gets the 32 px model's 16 x 16 width's half
        ((3, 64, 48), (16, 32, 64, 128), 60),  # the smaller side decides: 48 -> 24 -> 12 -> 6 -> 3
        ((3, 256, 256), (16, 16, 16, 32, 64, 128), 60),  # never narrower than 16
    ],
)
def test_the_default_recipe_follows_the_images(shape, widths, epochs):
    from vaectl.errors import arg
    from vaectl.models.presets import for_images

    recipe, note = for_images(*shape)
    if widths is None:
        assert recipe is None and note.startswith("model: mlp VAE for 28x28 grey images")
        return
    assert recipe.model["arch"] == "resnet" and recipe.model["conv_channels"] == widths
    assert recipe.train["epochs"] == epochs and recipe.model["dropout"] > 0
    assert note.startswith(f"model: resnet VAE for {shape[2]}x{shape[1]} ") and arg("arch", "mlp") in note
    colour = shape[0] == 3  # mirrored; grey images may be digits or text
    assert recipe.train.get("hflip", False) == colour and (arg("hflip", False) in note) == colour
    if shape[1] > 64:
        return  # the model's forward pass below: the small sizes are enough
    cfg = VAEConfig(channels=shape[0], height=shape[1], width=shape[2], **recipe.model)
    assert VAE(cfg)(torch.rand(2, *shape))[0].shape == (2, *shape)
