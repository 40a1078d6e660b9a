"""A well-known peer on the same colour images: PyTorch-VAE's VanillaVAE with its CelebA 64-px recipe.

    python bench/peer_vanilla_vae.py colour/emoji-64 --seconds 300 --out /tmp/peer

The model below is a minimal copy of `models/vanilla_vae.py` of https://github.com/AntixK/PyTorch-VAE
(commit a6896b9, Copyright Anand Krishnamoorthy Subramanian 2020, Apache License 2.0): the same layers, loss and
sampling; BaseVAE and the unused helpers left out. Its recipe, from the repository's `configs/vae.yaml` and
`experiment.py`/`dataset.py`: hidden dims 32, 64, 128, 256, 512; latent 128; Adam lr 0.005, weight decay 0;
ExponentialLR gamma 0.95 stepped once per epoch; loss = mean squared error (F.mse_loss, mean over pixels)
+ kld_weight 0.00025 * KL (mean over the batch); batch size 64; random horizontal flips; pixels in [0, 1]
(ToTensor) against a Tanh output; seed 1265. The architecture is for 64x64 images only.

It trains on vaectl's training split of FOLDER (vaectl.data.load_data: the same 10% held out, seed 0) until
--seconds of wall time have passed (checked after every batch), then scores the held-out images the way
bench/colour.py scores vaectl: decode(mu(x)) in eval mode (BatchNorm running statistics), clipped to [0, 1];
PSNR = mean over images of 10 log10(1 / MSE) on [0, 1] pixels; mean-colour error = mean over images of the mean
over channels of |per-channel mean colour difference|, in 8-bit levels. Writes OUT/<set>-peer/recon.png
(rows: original, reconstruction; the first 16 held-out images), samples.png (64 draws of z ~ N(0, I), seed 0),
result.json; appends to OUT/results.jsonl. Prints figures; not a test.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from colour import grid, scores, split  # noqa: E402  (bench/colour.py: the same split and scores)

HIDDEN_DIMS = [32, 64, 128, 256, 512]
LATENT_DIM = 128
LR, WEIGHT_DECAY, GAMMA, KLD_WEIGHT, BATCH_SIZE, SEED = 0.005, 0.0, 0.95, 0.00025, 64, 1265


# ----------------------------------------------------------------------------- PyTorch-VAE's VanillaVAE
class VanillaVAE(nn.Module):
    """models/vanilla_vae.py of AntixK/PyTorch-VAE (Apache-2.0), layers as published."""

    def __init__(self, in_channels: int = 3, latent_dim: int = LATENT_DIM, hidden_dims=None):
        super().__init__()
        self.latent_dim = latent_dim
        hidden_dims = list(hidden_dims or HIDDEN_DIMS)
        modules = []
        for h_dim in hidden_dims:
            modules.append(
                nn.Sequential(
                    nn.Conv2d(in_channels, h_dim, kernel_size=3, stride=2, padding=1),
                    nn.BatchNorm2d(h_dim),
                    nn.LeakyReLU(),
                )
            )
            in_channels = h_dim
        self.encoder = nn.Sequential(*modules)
        self.fc_mu = nn.Linear(hidden_dims[-1] * 4, latent_dim)
        self.fc_var = nn.Linear(hidden_dims[-1] * 4, latent_dim)
        self.decoder_input = nn.Linear(latent_dim, hidden_dims[-1] * 4)
        hidden_dims.reverse()
        modules = []
        for i in range(len(hidden_dims) - 1):
            modules.append(
                nn.Sequential(
                    nn.ConvTranspose2d(
                        hidden_dims[i], hidden_dims[i + 1], kernel_size=3, stride=2, padding=1, output_padding=1
                    ),
                    nn.BatchNorm2d(hidden_dims[i + 1]),
                    nn.LeakyReLU(),
                )
            )
        self.decoder = nn.Sequential(*modules)
        self.final_layer = nn.Sequential(
            nn.ConvTranspose2d(hidden_dims[-1], hidden_dims[-1], kernel_size=3, stride=2, padding=1, output_padding=1),
            nn.BatchNorm2d(hidden_dims[-1]),
            nn.LeakyReLU(),
            nn.Conv2d(hidden_dims[-1], out_channels=3, kernel_size=3, padding=1),
            nn.Tanh(),
        )

    def encode(self, x):
        result = torch.flatten(self.encoder(x), start_dim=1)  # (N, 512 * 2 * 2) for 64x64 input
        return self.fc_mu(result), self.fc_var(result)

    def decode(self, z):
        result = self.decoder_input(z).view(-1, 512, 2, 2)
        return self.final_layer(self.decoder(result))  # (N, 3, 64, 64) in [-1, 1]

    def forward(self, x):
        mu, log_var = self.encode(x)
        z = torch.randn_like(mu) * torch.exp(0.5 * log_var) + mu
        return self.decode(z), x, mu, log_var

    def loss_function(self, recons, x, mu, log_var, kld_weight: float):
        recons_loss = F.mse_loss(recons, x)
        kld_loss = torch.mean(-0.5 * torch.sum(1 + log_var - mu**2 - log_var.exp(), dim=1), dim=0)
        return recons_loss + kld_weight * kld_loss


# ----------------------------------------------------------------------------- its recipe, for a wall time
def train_for(model: VanillaVAE, x_train: torch.Tensor, seconds: float) -> dict:
    opt = torch.optim.Adam(model.parameters(), lr=LR, weight_decay=WEIGHT_DECAY)
    sched = torch.optim.lr_scheduler.ExponentialLR(opt, gamma=GAMMA)
    gen = torch.Generator().manual_seed(SEED)
    model.train()
    t0, epochs, steps = time.perf_counter(), 0, 0
    while time.perf_counter() - t0 < seconds:
        perm = torch.randperm(len(x_train), generator=gen)
        for i in range(0, len(perm), BATCH_SIZE):
            x = x_train[perm[i : i + BATCH_SIZE]]
            flip = torch.rand(len(x), generator=gen) < 0.5  # RandomHorizontalFlip
            x = torch.where(flip[:, None, None, None], x.flip(3), x)
            loss = model.loss_function(*model(x), kld_weight=KLD_WEIGHT)
            opt.zero_grad()
            loss.backward()
            opt.step()
            steps += 1
            if time.perf_counter() - t0 >= seconds:
                break
        else:
            epochs += 1
            sched.step()
    return {"train_seconds": time.perf_counter() - t0, "epochs": epochs, "steps": steps, "last_loss": loss.item()}


@torch.no_grad()
def reconstruct(model: VanillaVAE, x: torch.Tensor) -> np.ndarray:
    model.eval()
    out = [model.decode(model.encode(x[i : i + 256])[0]) for i in range(0, len(x), 256)]
    return torch.cat(out).clamp(0, 1).numpy()


@torch.no_grad()
def sample(model: VanillaVAE, n: int) -> np.ndarray:
    model.eval()
    z = torch.randn(n, model.latent_dim, generator=torch.Generator().manual_seed(0))
    return model.decode(z).clamp(0, 1).numpy()


def bench_folder(folder: Path, out: Path, seconds: float) -> dict:
    train, test = split(folder)
    if train.shape[1:] != (3, 64, 64):
        sys.exit(f"peer_vanilla_vae: {folder} holds {train.shape[1:]} images; VanillaVAE takes (3, 64, 64)")
    torch.manual_seed(SEED)
    model = VanillaVAE()
    fit = train_for(model, torch.from_numpy(train), seconds)
    recon = reconstruct(model, torch.from_numpy(test))
    work = out / f"{folder.name}-peer"
    work.mkdir(parents=True, exist_ok=True)
    grid([test[:16], recon[:16]], work / "recon.png")
    samples = sample(model, 64)
    grid([samples[i : i + 8] for i in range(0, 64, 8)], work / "samples.png")
    result = {"set": folder.name, "label": "peer VanillaVAE", "n_train": len(train), "n_test": len(test)}
    result.update(latent_dim=LATENT_DIM, budget_seconds=seconds, **fit, peer=scores(recon, test))
    (work / "result.json").write_text(json.dumps(result, indent=2) + "\n")
    with open(out / "results.jsonl", "a") as f:
        f.write(json.dumps(result) + "\n")
    return result


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("folders", nargs="+", type=Path, help="image folders of 64x64 colour images")
    ap.add_argument("--seconds", type=float, required=True, help="wall time to train for, per folder")
    ap.add_argument("--out", type=Path, default=Path("colour-bench"), help="grids and results")
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}")
    results = [bench_folder(f, args.out, args.seconds) for f in args.folders]
    print(f"{'set':<12} {'model':<18} {'PSNR dB':>8} {'colour err':>10} {'train s':>8} {'epochs':>7} {'steps':>6}")
    for r in results:
        s = r["peer"]
        print(
            f"{r['set']:<12} {'VanillaVAE':<18} {s['psnr']:8.2f} {s['colour_err']:10.2f} "
            f"{r['train_seconds']:8.0f} {r['epochs']:7d} {r['steps']:6d}"
        )
    print("PSNR: mean over held-out images of 10 log10(1/MSE) on [0, 1] pixels; colour err: mean |per-channel mean")
    print("colour difference| in 8-bit levels")


if __name__ == "__main__":
    main()
