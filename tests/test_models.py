"""Model shapes per architecture and image size, conditional models, and the config's round trip."""

from __future__ import annotations

import json

import pytest

torch = pytest.importorskip("torch")

from vaectl.errors import UserInputError  # noqa: E402
from vaectl.models import VAEConfig  # noqa: E402
from vaectl.models.vae import VAE, reparameterize  # noqa: E402

SMALL = dict(latent_dim=3, hidden=(16,), conv_channels=(4, 8, 8), conv_hidden=16)


def _check_shapes(cfg: VAEConfig, n: int = 2, y=None):
    torch.manual_seed(0)
    model = VAE(cfg)
    x = torch.rand(n, cfg.channels, cfg.height, cfg.width)
    mu, logvar = model.encoder(x, y)
    assert mu.shape == logvar.shape == (n, cfg.latent_dim)
    logits, mu2, logvar2 = model(x, y)
    assert logits.shape == (n, cfg.channels, cfg.height, cfg.width)
    recon = model.reconstruct(x, y)
    assert recon.shape == x.shape and recon.min() >= 0 and recon.max() <= 1
    samples = model.sample(n, y)
    assert samples.shape == x.shape and samples.min() >= 0 and samples.max() <= 1
    # gradients reach every parameter
    logits.sum().backward()
    assert all(p.grad is not None for p in model.parameters())


@pytest.mark.parametrize("arch", ["mlp", "conv"])
@pytest.mark.parametrize("size", [28, 32, 64])
@pytest.mark.parametrize("channels", [1, 3])
def test_shapes_for_each_architecture_and_size(arch, size, channels):
    _check_shapes(VAEConfig(arch=arch, channels=channels, height=size, width=size, **SMALL))


@pytest.mark.parametrize("arch", ["mlp", "conv"])
@pytest.mark.parametrize("height,width", [(30, 30), (45, 45), (45, 30), (17, 64)])
def test_odd_and_non_square_sizes_work(arch, height, width):
    _check_shapes(VAEConfig(arch=arch, height=height, width=width, **SMALL))


def test_conv_refuses_images_smaller_than_its_stages_clearly():
    with pytest.raises(UserInputError, match=r"at least 8x8 px, got 7x7"):
        VAEConfig(arch="conv", height=7, width=7, conv_channels=(4, 8, 8))
    with pytest.raises(UserInputError, match="at least one conv stage"):
        VAEConfig(arch="conv", conv_channels=())


@pytest.mark.parametrize("arch", ["mlp", "conv"])
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
    cfg = VAEConfig(arch="mlp", latent_dim=5, channels=3, height=32, width=30, hidden=(64, 32), likelihood="gaussian",
                    beta=3.0, num_classes=2, class_names=("cat", "dog"), dataset="pets")
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
    for bad, match in [(dict(latent_dim=0), "latent dimension"), (dict(arch="rnn"), "architecture"),
                       (dict(likelihood="poisson"), "likelihood"), (dict(channels=2), "channels"),
                       (dict(beta=-1.0), "beta"), (dict(hidden=(0,)), "positive"),
                       (dict(num_classes=2, class_names=("a",)), "one name per class")]:
        with pytest.raises(UserInputError, match=match):
            VAEConfig(**bad)
