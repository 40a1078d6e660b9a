"""The quality benchmark: does vaectl train a better VAE than the well-known reference, for the same effort?

    python bench/quality.py                              # Fashion-MNIST (Debian's dataset-fashion-mnist)
    python bench/quality.py --data mnist-sample          # the embedded 5,000 digits
    python bench/quality.py --only reference,default --n 2000 --k 64    # a quicker look

Measured in one run on one machine, bernoulli likelihood on continuous pixels in [0, 1]:
  (a) reference: the pytorch/examples VAE (784-400-20 MLP, ReLU, sigmoid output, BCE(sum) + KL,
      Adam lr 1e-3, batch 128, torchvision DataLoader with ToTensor, 10 epochs), reimplemented here;
  (b) vaectl's default model (`vaectl train` with no model flags) trained for the reference's wall time;
  (c) vaectl's recommended recipe (`--preset quality`) trained for at most --recipe-minutes.
Each is scored with the same code (vaectl.scoring): IWAE NLL bound with k importance samples on
the test images, plus the entropy floor (mean summed binary entropy of the test pixels), which no model
can go below. Targets: (b) at least 3 nats better than (a); (c) at most 230 nats on Fashion-MNIST.
Prints figures; not a timed test.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from vaectl.data import load_data
from vaectl.scoring import bernoulli_entropy_floor, score
from vaectl.training import train
from vaectl.training.eval_checkpoint import evaluate_checkpoint

FASHION_DIR = "/usr/share/datasets/fashion-mnist"


# ----------------------------------------------------------------------------- (a) the reference
class ReferenceVAE(nn.Module):
    """pytorch/examples vae/main.py, as published."""

    def __init__(self):
        super().__init__()
        self.fc1, self.fc21, self.fc22 = nn.Linear(784, 400), nn.Linear(400, 20), nn.Linear(400, 20)
        self.fc3, self.fc4 = nn.Linear(20, 400), nn.Linear(400, 784)

    def encode(self, x):
        h1 = F.relu(self.fc1(x))
        return self.fc21(h1), self.fc22(h1)

    def decode(self, z):
        return torch.sigmoid(self.fc4(F.relu(self.fc3(z))))

    def forward(self, x):
        mu, logvar = self.encode(x.view(-1, 784))
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
        return self.decode(z), mu, logvar


class _ArrayImages(torch.utils.data.Dataset):
    """uint8 (N, 1, 28, 28) served as PIL images through ToTensor, as torchvision's MNIST datasets do."""

    def __init__(self, images):
        from PIL import Image
        from torchvision import transforms

        self.images, self.pil, self.to_tensor = images, Image.fromarray, transforms.ToTensor()

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        return self.to_tensor(self.pil(self.images[i, 0], mode="L")), 0


def train_reference(train_images, epochs: int, seed: int) -> tuple[ReferenceVAE, float]:
    torch.manual_seed(seed)
    model = ReferenceVAE()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loader = torch.utils.data.DataLoader(_ArrayImages(train_images), batch_size=128, shuffle=True)
    t0 = time.perf_counter()
    for _ in range(epochs):
        model.train()
        for x, _ in loader:
            recon, mu, logvar = model(x)
            bce = F.binary_cross_entropy(recon, x.view(-1, 784), reduction="sum")
            kld = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())
            loss = bce + kld
            opt.zero_grad()
            loss.backward()
            opt.step()
    return model.eval(), time.perf_counter() - t0


def score_reference(model: ReferenceVAE, images, k: int, seed: int):
    @torch.no_grad()
    def encode(x, y):
        mu, logvar = model.encode(torch.from_numpy(x).view(len(x), -1))
        return mu.numpy(), logvar.numpy()

    @torch.no_grad()
    def decode(z, y):
        return model.decode(torch.from_numpy(z)).numpy()

    return score(encode, decode, images, None, likelihood="bernoulli", k=k, seed=seed)


# ----------------------------------------------------------------------------- (b), (c): vaectl
def train_vaectl_for(seconds: float, data_arg: str | None, out: Path, preset: str | None, seed: int):
    """Train `vaectl train [--preset P]` for about `seconds` of wall time: time one epoch, then run the whole
    schedule for as many epochs as fit.

    The run's final weights (last.pt) are scored: best.pt is chosen on the validation split, which for these
    datasets is the test split the score is computed on."""
    base = dict(preset=preset, data=data_arg, seed=seed, grid_every=0, log=lambda m: None)
    t0 = time.perf_counter()
    train(out=str(out / "calibrate"), epochs=1, **base)
    per_epoch = time.perf_counter() - t0
    # 5% margin: epoch times vary (a 4-minute run measured 22.5 s per epoch after a 21.4 s calibration epoch)
    epochs = max(1, int(0.95 * seconds // per_epoch))
    t0 = time.perf_counter()
    train(out=str(out / "run"), epochs=epochs, **base)
    return out / "run", epochs, time.perf_counter() - t0


def machine() -> str:
    from vaectl.doctor.probe import cpu_name

    return f"{cpu_name()}, {os.cpu_count()} cores, torch {torch.__version__} ({torch.get_num_threads()} threads), Python {platform.python_version()}"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=None, help=f"IDX folder or 'mnist-sample' [{FASHION_DIR} if present]")
    ap.add_argument("--k", type=int, default=256, help="importance samples per test image")
    ap.add_argument("--n", type=int, default=None, help="score only the first N test images [all]")
    ap.add_argument("--reference-epochs", type=int, default=10)
    ap.add_argument("--recipe-minutes", type=float, default=15.0)
    ap.add_argument("--only", default="reference,default,recipe")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--keep", default=None, help="keep the trained vaectl runs in this directory [a temporary one]")
    args = ap.parse_args()
    data_arg = args.data or (FASHION_DIR if Path(FASHION_DIR).is_dir() else "mnist-sample")
    data_arg = None if data_arg == "mnist-sample" else data_arg
    ds = load_data(data_arg)
    test = ds.test[: args.n]
    only = set(args.only.split(","))
    print(f"machine: {machine()}")
    print(f"data: {ds.name}: {len(ds.train)} train, {len(test)} test images {ds.image_shape}; IWAE k = {args.k}")
    floor = bernoulli_entropy_floor(test.astype(np.float64) / 255)
    rows, ref_seconds = [], None
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(args.keep or tmp)
        if "reference" in only:
            model, ref_seconds = train_reference(ds.train, args.reference_epochs, args.seed)
            r = score_reference(model, test, args.k, args.seed)
            rows.append(
                ("(a) reference: pytorch/examples VAE, DataLoader", f"{args.reference_epochs} epochs", ref_seconds, r)
            )
            print(f"  (a) done: {ref_seconds:.0f} s, IWAE {r.iwae_nll:.2f}", flush=True)
        if "default" in only:
            budget = ref_seconds or 120.0
            run, epochs, secs = train_vaectl_for(budget, data_arg, tmp / "default", None, args.seed)
            r = evaluate_checkpoint(run / "last.pt", data_dir=data_arg, k=args.k, n=args.n, seed=args.seed)
            rows.append(("(b) vaectl default, same wall time", f"{epochs} epochs", secs, r))
            print(f"  (b) done: {secs:.0f} s, IWAE {r.iwae_nll:.2f}", flush=True)
        if "recipe" in only:
            run, epochs, secs = train_vaectl_for(
                args.recipe_minutes * 60, data_arg, tmp / "recipe", "quality", args.seed
            )
            r = evaluate_checkpoint(run / "last.pt", data_dir=data_arg, k=args.k, n=args.n, seed=args.seed)
            rows.append(("(c) vaectl --preset quality", f"{epochs} epochs", secs, r))
            print(f"  (c) done: {secs:.0f} s, IWAE {r.iwae_nll:.2f}", flush=True)
    print()
    print(f"| model | training | wall time | -ELBO | IWAE NLL (k={args.k}) | bits/dim | active units |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: |")
    for name, epochs, secs, r in rows:
        print(
            f"| {name} | {epochs} | {secs:.0f} s | {r.neg_elbo:.2f} | {r.iwae_nll:.2f} | {r.bits_per_dim:.4f} | {r.active_units}/{r.latent_dim} |"
        )
    print(f"| entropy floor of the test pixels | | | | {floor:.2f} | {floor / (784 * math.log(2)):.4f} | |")
    by = {name[:3]: r.iwae_nll for name, _, _, r in rows}
    if "(a)" in by and "(b)" in by:
        print(f"\n(b) vs (a): {by['(a)'] - by['(b)']:+.2f} nats (target: at least +3)")
    if "(c)" in by:
        print(f"(c): {by['(c)']:.2f} nats (target on Fashion-MNIST: at most 230)")


if __name__ == "__main__":
    main()
