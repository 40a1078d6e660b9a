"""Sample quality: how close are `vaectl generate`'s images to real ones? Measured by a judge, not eyeballed.

For each dataset and recipe: train with `vaectl train` (its defaults plus the recipe's flags), export with
`vaectl export` (which fits the prior), then draw --samples images from the exported decoder through
vaectl.infer (the torch-free path `vaectl generate` runs, at its default flags: seed 0, temperature 1) under
each prior the graph carries: N(0, I) and the fitted mixture (generate's default). A small CNN trained on the
dataset's training split (bench/conditional.py's judge A, trained once and cached in --judge-cache) embeds
images as its 128 hidden features; against the features of the test images it reports
  FD         the Frechet distance between Gaussians fitted to the two feature sets (lower is better)
  precision  the share of generated images inside the k-NN balls of the real ones (k = 3; Kynkaanniemi
             et al. 2019): are the samples realistic?
  recall     the share of real images inside the k-NN balls of the generated ones: is their variety covered?
for the samples under each prior, for the reconstructions of the test images (the decoder's floor: what the
samples would score if the prior were perfect), and for as many real training images (what a perfect model
would score with this many images). Also: the IWAE bound of the exported pair under each prior (vaectl eval's
scorer) and the wall time of train and export (the prior's fitting included).

    python bench/sample_quality.py                                      # Fashion-MNIST, the default recipe
    python bench/sample_quality.py --datasets mnist-sample
    python bench/sample_quality.py --recipe "old=--beta 1 --hidden 512,256" --recipe "new="   # in one run
    python bench/sample_quality.py --run-dir runs/x --run-dir runs/y --datasets fashion-mnist   # existing runs
Prints figures; not a timed test.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from conditional import JUDGES, judges_for  # the judge: one small CNN, trained once per dataset

FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
DEFAULT_CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "vaectl" / "bench"
JUDGE = "A"
NEAREST = 3  # k of the k-NN balls of precision and recall


# ----------------------------------------------------------------------------- the measures
@torch.no_grad()
def features(judge, images_u8: np.ndarray) -> np.ndarray:
    """The judge's 128 hidden features, float64 (N, 128), of uint8 images (N, C, H, W)."""
    x = torch.from_numpy(images_u8).float() / 255
    return torch.cat([judge.features(x[i : i + 1000]) for i in range(0, len(x), 1000)]).double().numpy()


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """|mu_a - mu_b|^2 + tr(S_a + S_b - 2 (S_a S_b)^(1/2)) of Gaussians fitted to two feature sets (N, F)."""
    mu_a, mu_b = a.mean(0), b.mean(0)
    s_a, s_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    w, v = np.linalg.eigh(s_a)
    root_a = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    # tr((S_a S_b)^(1/2)) = sum of the square roots of the eigenvalues of S_a^(1/2) S_b S_a^(1/2) (symmetric, PSD)
    cross = np.sqrt(np.clip(np.linalg.eigvalsh(root_a @ s_b @ root_a), 0, None)).sum()
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(s_a) + np.trace(s_b) - 2 * cross)


def _kth_neighbour_radius(x: torch.Tensor, k: int) -> torch.Tensor:
    """Distance from each row of x to its k-th nearest other row."""
    radii = []
    for i in range(0, len(x), 1000):
        d = torch.cdist(x[i : i + 1000], x)  # (b, N); the row itself is at distance 0: take the (k + 1)-th smallest
        radii.append(d.kthvalue(k + 1, dim=1).values)
    return torch.cat(radii)


def _covered(points: torch.Tensor, centers: torch.Tensor, radii: torch.Tensor) -> float:
    """The share of points inside at least one ball (center, radius)."""
    inside = [(torch.cdist(points[i : i + 1000], centers) <= radii[None]).any(1) for i in range(0, len(points), 1000)]
    return float(torch.cat(inside).double().mean())


def precision_recall(real: np.ndarray, fake: np.ndarray, k: int = NEAREST) -> tuple[float, float]:
    """Improved precision and recall (Kynkaanniemi et al. 2019) with k-NN balls in feature space."""
    r, f = torch.from_numpy(real), torch.from_numpy(fake)
    precision = _covered(f, r, _kth_neighbour_radius(r, k))
    recall = _covered(r, f, _kth_neighbour_radius(f, k))
    return precision, recall


# ----------------------------------------------------------------------------- one run
def vaectl(*args) -> float:
    """Run the vaectl CLI; its wall time in seconds."""
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "vaectl.cli", *map(str, args)], check=True)
    return time.perf_counter() - t0


def judge_run(run_dir: Path, onnx_dir: Path, ds, data_dir, judge, args) -> dict:
    """FD / precision / recall of every prior's samples, the reconstructions and real images; IWAE per prior."""
    from vaectl.infer import Decoder, Encoder, VAEPair
    from vaectl.infer.evaluate import evaluate_onnx

    decoder = Decoder(onnx_dir / "decoder.onnx")
    n = args.samples or len(ds.test)
    real = features(judge, ds.test[:n])
    rows = []

    def measure(what: str, images: np.ndarray) -> None:
        images = images[:, None] if images.ndim == 3 else images  # (N, H, W) -> (N, 1, H, W)
        feats = features(judge, images)
        precision, recall = precision_recall(real, feats)
        rows.append((what, len(images), frechet_distance(real, feats), precision, recall))

    for i, prior in enumerate(decoder.priors):
        measure(f"samples, {prior.name}{' (default)' if i == 0 else ''}", decoder.sample(n, seed=0, prior=prior.name))
    labels = ds.test_labels[:n] if decoder.conditional else None
    pair = VAEPair(Encoder(onnx_dir / "encoder.onnx"), decoder)
    recon = np.concatenate(
        [
            pair.reconstruct(ds.test[i : min(n, i + 1000)], None if labels is None else labels[i : min(n, i + 1000)])
            for i in range(0, n, 1000)
        ]
    )
    measure("reconstructions of test images", recon)
    pick = np.random.default_rng(0).permutation(len(ds.train))[:n]
    measure("real training images", ds.train[pick])
    nll = {}
    if args.eval_n:  # one pass scores both priors from the same draws
        r = evaluate_onnx(
            onnx_dir / "encoder.onnx", onnx_dir / "decoder.onnx", data_dir=data_dir, k=args.eval_k, n=args.eval_n
        )
        nll["normal"] = r.iwae_nll
        if r.prior is not None and r.iwae_nll_prior is not None:
            nll[r.prior] = r.iwae_nll_prior
    scored = min(args.eval_n, len(ds.test))
    return {"rows": rows, "nll": nll, "scored": scored, "prior": decoder.priors[0].description}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--datasets", default="auto", help="comma-separated: fashion-mnist,mnist-sample [auto: both]")
    ap.add_argument(
        "--recipe",
        action="append",
        default=None,
        help="NAME=FLAGS: `vaectl train` flags of one recipe (repeatable) [default=: the defaults]",
    )
    ap.add_argument("--epochs", type=int, default=None, help="--epochs of every recipe [vaectl's default]")
    ap.add_argument(
        "--run-dir",
        type=Path,
        action="append",
        default=None,
        help="judge this existing run instead of training (repeatable; exported into --keep or a temporary directory)",
    )
    ap.add_argument("--samples", type=int, default=None, help="images per set [all test images: 10,000 / 1,000]")
    ap.add_argument("--eval-n", type=int, default=10_000, help="test images for the IWAE bound (0: skip)")
    ap.add_argument("--eval-k", type=int, default=256, help="importance samples per image for the IWAE bound")
    ap.add_argument("--judge-cache", type=Path, default=DEFAULT_CACHE, help=f"trained judges [{DEFAULT_CACHE}]")
    ap.add_argument("--judge-epochs", type=int, default=None, help=f"judge training epochs [{JUDGES[JUDGE][0]}]")
    ap.add_argument("--keep", type=Path, default=None, help="keep the runs in this directory [a temporary one]")
    args = ap.parse_args()
    from vaectl.data import load_data

    if args.judge_epochs is not None:
        JUDGES[JUDGE] = (args.judge_epochs, JUDGES[JUDGE][1])
    names = (
        (["fashion-mnist"] if FASHION_DIR.is_dir() else []) + ["mnist-sample"]
        if args.datasets == "auto"
        else args.datasets.split(",")
    )
    recipes = [r.partition("=")[::2] for r in (args.recipe or ["default="])]
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__} "
        f"({torch.get_num_threads()} threads)"
    )
    with tempfile.TemporaryDirectory() as tmp:
        root = args.keep or Path(tmp)
        for name in names:
            if name == "fashion-mnist" and not FASHION_DIR.is_dir():
                sys.exit(f"{FASHION_DIR} missing: apt-get install dataset-fashion-mnist")
            if name not in ("fashion-mnist", "mnist-sample"):
                sys.exit(f"unknown dataset {name}")
            data_dir = FASHION_DIR if name == "fashion-mnist" else None
            ds = load_data(data_dir)
            ((judge, acc),) = judges_for(ds, name, args.judge_cache, which=(JUDGE,)).values()
            print(f"\n{name}: judge test accuracy {acc:.2%}; {args.samples or len(ds.test):,} images per set")
            results = []
            runs = (
                [(recipe, flags, None) for recipe, flags in recipes]
                if args.run_dir is None
                else [(d.name, f"the run in {d}", d) for d in args.run_dir]
            )
            for recipe, flags, run_dir in runs:
                train_s = None
                if run_dir is None:
                    run_dir = root / f"{name}-{recipe}"
                    data_args = ["--data", data_dir] if data_dir else []
                    epochs = ["--epochs", args.epochs] if args.epochs else []
                    train_s = vaectl(
                        "train", *data_args, *epochs, "--out", run_dir, "--overwrite", "--grid-every", 0, *flags.split()
                    )
                onnx_dir = root / f"{name}-{recipe}-onnx"
                # the final weights: best.pt is chosen on the validation split, which here is the test split
                export_s = vaectl("export", run_dir, "--out", onnx_dir, "--last")
                results.append(
                    (recipe, flags, train_s, export_s, judge_run(run_dir, onnx_dir, ds, data_dir, judge, args))
                )
            report(name, results, args)


def report(name: str, results, args) -> None:
    for recipe, flags, train_s, export_s, r in results:
        timing = f"train {train_s:.0f} s + " if train_s is not None else ""
        print(f"\n{name}, recipe {recipe!r} ({flags or 'the defaults'}): {timing}export {export_s:.0f} s")
        print(f"default prior: {r['prior']}")
        print("| images | N | FD | precision | recall |")
        print("| --- | ---: | ---: | ---: | ---: |")
        for what, count, fd, precision, recall in r["rows"]:
            print(f"| {what} | {count:,} | {fd:.2f} | {precision:.3f} | {recall:.3f} |")
        for prior, nll in r["nll"].items():
            print(f"IWAE NLL (k={args.eval_k}, first {r['scored']:,} test images) under {prior}: {nll:.2f} nats")


if __name__ == "__main__":
    main()
