"""The VAE: separate Encoder (image -> mu, logvar) and Decoder (z -> pixel logits) modules.

No I/O here. Both modules take an optional integer label `y` when `config.num_classes > 0`
(a conditional VAE): the label enters as a one-hot vector concatenated to the features.
"""

from __future__ import annotations

import torch
from torch import nn

from .config import VAEConfig


def reparameterize(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    # z = mu + sigma * eps, eps ~ N(0, I): the sample stays differentiable in mu and logvar
    return mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)


def _conv_sizes(side: int, stages: int) -> list[int]:
    """Feature-map side after each stride-2, padding-1, 3x3 conv: [side, ceil(side/2), ...]."""
    sizes = [side]
    for _ in range(stages):
        sizes.append((sizes[-1] + 1) // 2)
    return sizes


def _relu_mlp(width: int, hidden) -> list[nn.Module]:
    """Linear + ReLU for each width in `hidden`, starting from `width` inputs."""
    layers = []
    for h in hidden:
        layers += [nn.Linear(width, h), nn.ReLU()]
        width = h
    return layers


class _OneHot(nn.Module):
    """Label -> one-hot rows. A Gather from an identity matrix: exports to plain ONNX."""

    def __init__(self, num_classes: int):
        super().__init__()
        self.register_buffer("eye", torch.eye(num_classes), persistent=False)

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        return self.eye[y]  # (N,) int64 -> (N, K)


class Encoder(nn.Module):
    def __init__(self, config: VAEConfig):
        super().__init__()
        self.config = c = config
        k = c.num_classes
        self.onehot = _OneHot(k) if k else None
        if c.arch == "mlp":
            self.features = nn.Identity()
            self.body = nn.Sequential(*_relu_mlp(c.num_pixels + k, c.hidden))
            width = c.hidden[-1] if c.hidden else c.num_pixels + k
        else:
            convs, cin = [], c.channels
            for cout in c.conv_channels:
                convs += [nn.Conv2d(cin, cout, 3, stride=2, padding=1), nn.ReLU()]
                cin = cout
            self.features = nn.Sequential(*convs)
            hs, ws = _conv_sizes(c.height, len(c.conv_channels)), _conv_sizes(c.width, len(c.conv_channels))
            flat = cin * hs[-1] * ws[-1]
            self.body = nn.Sequential(nn.Linear(flat + k, c.conv_hidden), nn.ReLU())
            width = c.conv_hidden
        self.mu = nn.Linear(width, c.latent_dim)
        self.logvar = nn.Linear(width, c.latent_dim)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.features(x).flatten(1)  # (N, C, H, W) -> (N, F)
        if self.onehot is not None:
            h = torch.cat([h, self.onehot(y)], dim=1)  # (N, F + K)
        h = self.body(h)  # (N, hidden)
        return self.mu(h), self.logvar(h)  # (N, D), (N, D)


class Decoder(nn.Module):
    def __init__(self, config: VAEConfig):
        super().__init__()
        self.config = c = config
        k = c.num_classes
        self.onehot = _OneHot(k) if k else None
        if c.arch == "mlp":
            hidden = tuple(reversed(c.hidden))
            width = hidden[-1] if hidden else c.latent_dim + k
            self.body = nn.Sequential(*_relu_mlp(c.latent_dim + k, hidden), nn.Linear(width, c.num_pixels))
            self.upsample = None
        else:
            n = len(c.conv_channels)
            hs, ws = _conv_sizes(c.height, n), _conv_sizes(c.width, n)
            self.start_shape = (c.conv_channels[-1], hs[-1], ws[-1])
            self.body = nn.Sequential(
                nn.Linear(c.latent_dim + k, c.conv_hidden),
                nn.ReLU(),
                nn.Linear(c.conv_hidden, c.conv_channels[-1] * hs[-1] * ws[-1]),
                nn.ReLU(),
            )
            ups = []
            outs = list(reversed(c.conv_channels[:-1])) + [c.channels]
            cin = c.conv_channels[-1]
            for i, cout in enumerate(outs):
                stage = n - i  # upsample from sizes[stage] to sizes[stage - 1]
                pad = (hs[stage - 1] - (2 * hs[stage] - 1), ws[stage - 1] - (2 * ws[stage] - 1))
                ups.append(nn.ConvTranspose2d(cin, cout, 3, stride=2, padding=1, output_padding=pad))
                if i < n - 1:
                    ups.append(nn.ReLU())
                cin = cout
            self.upsample = nn.Sequential(*ups)

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """Pixel logits (N, C, H, W); `torch.sigmoid` of them is the image in [0, 1]."""
        if self.onehot is not None:
            z = torch.cat([z, self.onehot(y)], dim=1)  # (N, D + K)
        h = self.body(z)
        if self.upsample is None:
            return h.view(-1, *self.config.image_shape)  # (N, C*H*W) -> (N, C, H, W)
        return self.upsample(h.view(-1, *self.start_shape))  # (N, C, H, W)


class VAE(nn.Module):
    def __init__(self, config: VAEConfig):
        super().__init__()
        self.config = config
        self.encoder = Encoder(config)
        self.decoder = Decoder(config)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None):
        """One stochastic pass: (pixel logits, mu, logvar) for the negative ELBO."""
        mu, logvar = self.encoder(x, y)  # (N, D), (N, D)
        z = reparameterize(mu, logvar)  # (N, D)
        return self.decoder(z, y), mu, logvar  # (N, C, H, W), (N, D), (N, D)

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """Deterministic reconstruction through the posterior mean, pixels in [0, 1]."""
        mu, _ = self.encoder(x, y)
        return torch.sigmoid(self.decoder(mu, y))

    @torch.no_grad()
    def sample(self, n: int, y: torch.Tensor | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
        """n images decoded from z ~ N(0, I), pixels in [0, 1]."""
        p = next(self.parameters())
        z = torch.randn(n, self.config.latent_dim, generator=generator, device=generator.device if generator else p.device)
        return torch.sigmoid(self.decoder(z.to(p.device), y))


def build_vae(config: VAEConfig) -> VAE:
    return VAE(config)
