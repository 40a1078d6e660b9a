"""How well does vaectl reconstruct a folder of colour images, next to PCA with as many components?

    python bench/colour_sets.py                                   # the emoji and Oxygen icon folders
    python bench/colour.py colour/emoji-32 --out /tmp/colour-bench
    python bench/colour.py FOLDER --train-args "--arch conv" --label conv --k 100

For each image FOLDER, on vaectl's own hold-out (vaectl.data.load_data: 10% of the images, chosen by the run's
--seed, 0 unless --train-args give another):
  vaectl     `python -m vaectl.cli train --data FOLDER --out RUN [--train-args]` in a subprocess (wall time
             measured around it), `export`, then the held-out images through the ONNX graphs (vaectl.infer
             Encoder/Decoder): decode(mu(x)), the decoder's float pixels; `eval --json` on the graphs for
             bits/dim (IWAE bound with --k samples, under N(0, I) and under the exported prior);
  PCA-D      the top D principal components of the training split (pixels in [0, 1]; numpy, from the Gram
             matrix), D = the model's latent dimensions; held-out images projected on them, clipped to [0, 1];
  mean       the training split's mean image for every held-out image;
  nearest    the training image closest to each held-out image (least squared error): what remembering the
             training set scores, high where the held-out images have near-copies among the training ones.
Scores, the same for all three, on [0, 1] pixels:
  PSNR               mean over images of 10 log10(1 / MSE_i), MSE_i over the image's pixels and channels;
  mean-colour error  mean over images of the mean over channels of |mean_c(recon) - mean_c(original)|, the
                     mean over pixels of channel c; printed in 8-bit levels (times 255).
Writes OUT/<set>-<label>/: recon.png (rows: original, vaectl, PCA-D, mean; the first 16 held-out images),
samples.png (`vaectl generate -n 64 --seed 0`), traverse.png (`vaectl traverse`, the 6 components with the
most KL, the others at a --seed 0 draw), result.json; appends to OUT/results.jsonl. Prints a table; not a
test.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

from vaectl.data import HOLDOUT, load_data
from vaectl.infer import Decoder, Encoder

CLI = [sys.executable, "-m", "vaectl.cli"]
TRAVERSE_DIMS = 6  # traverse.png: the components with the most KL, one row each


def split(folder: Path, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """vaectl's train and held-out images of an image folder (the hold-out a run with this --seed makes),
    float32 (N, C, H, W) in [0, 1]."""
    ds = load_data(folder, seed=seed)
    if ds.test_split != HOLDOUT:
        sys.exit(f"colour: {folder} has its own test split; this bench is for image folders")
    return ds.train.astype(np.float32) / 255.0, ds.test.astype(np.float32) / 255.0


def scores(recon: np.ndarray, x: np.ndarray) -> dict[str, float]:
    """PSNR (dB) and mean-colour error (8-bit levels) of reconstructions of x, both (N, C, H, W) in [0, 1]."""
    mse = ((recon.astype(np.float64) - x) ** 2).reshape(len(x), -1).mean(axis=1)  # (N,)
    psnr = 10 * np.log10(1.0 / np.maximum(mse, 1e-12))
    colour = np.abs(recon.mean(axis=(2, 3)) - x.mean(axis=(2, 3))).mean(axis=1)  # (N,)
    return {"psnr": float(psnr.mean()), "colour_err": float(255 * colour.mean())}


def pca_reconstruct(train: np.ndarray, test: np.ndarray, k: int) -> np.ndarray:
    """test projected on the top k principal components of train (k = 0: the mean image)."""
    a = train.reshape(len(train), -1).astype(np.float64)
    mean = a.mean(axis=0)
    t = test.reshape(len(test), -1) - mean
    if k > 0:
        # the top k right singular vectors of the centred data, from the (N, N) Gram matrix: N << D here, and
        # this is several times less work than a full SVD
        c = a - mean  # (N, D)
        w, u = np.linalg.eigh(c @ c.T)  # ascending eigenvalues s^2, eigenvectors (N, N)
        k = min(k, len(w) - 1)  # centred, N images span at most N - 1 directions
        top = slice(len(w) - 1, len(w) - 1 - k, -1)
        basis = (u[:, top].T @ c) / np.sqrt(np.maximum(w[top], 1e-12))[:, None]  # (k, D), orthonormal rows
        t = (t @ basis.T) @ basis
    else:
        t = np.zeros_like(t)
    return np.clip(t + mean, 0.0, 1.0).reshape(test.shape).astype(np.float32)


def nearest_reconstruct(train: np.ndarray, test: np.ndarray) -> np.ndarray:
    """For each test image, the training image with the least squared error to it."""
    a = train.reshape(len(train), -1)
    norms = (a.astype(np.float64) ** 2).sum(axis=1)
    best = np.empty(len(test), dtype=np.int64)
    for s in range(0, len(test), 256):  # (256, N) distances at a time
        t = test[s : s + 256].reshape(-1, a.shape[1])
        best[s : s + len(t)] = np.argmin(norms[None, :] - 2.0 * (t @ a.T), axis=1)  # |t|^2 is the same per row
    return train[best]


def run(cmd: list[str], log: Path) -> float:
    """Run a vaectl command, its output to `log`; the wall time in seconds. Exits with its tail on failure."""
    t0 = time.perf_counter()
    with open(log, "a") as f:
        f.write("$ " + shlex.join(cmd) + "\n")
        f.flush()
        r = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT)
    if r.returncode != 0:
        sys.exit(f"colour: {shlex.join(cmd)} failed ({r.returncode}); see {log}")
    return time.perf_counter() - t0


def train_and_export(
    folder: Path, work: Path, train_args: list[str], export_args: list[str], log: Path, reuse: bool
) -> tuple[float, Path]:
    run_dir, export_dir = work / "run", work / "export"
    export = [*CLI, "export", str(run_dir), "--out", str(export_dir), "--overwrite", *export_args]
    if reuse and (run_dir / "metrics.jsonl").is_file() and any(run_dir.glob("*.pt")):
        # an earlier bench's run: its training time is the sum of its epochs' (start-up not counted)
        epochs = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line]
        exported = (export_dir / "decoder.onnx").is_file() and not export_args
        print(f"{work}: reusing its run{' and export' if exported else ''} ({len(epochs)} epochs)")
        if not exported:  # asked for another export, or the earlier one did not get that far
            run(export, log)
        return float(sum(e["seconds"] for e in epochs)), export_dir
    seconds = run([*CLI, "train", "--data", str(folder), "--out", str(run_dir), "--overwrite", *train_args], log)
    run(export, log)
    return seconds, export_dir


def bits_per_dim(export_dir: Path, folder: Path, k: int) -> dict[str, float | None]:
    cmd = [*CLI, "eval", "--encoder", str(export_dir), "--decoder", str(export_dir), "--data", str(folder)]
    r = subprocess.run([*cmd, "--k", str(k), "--json"], capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"colour: vaectl eval failed: {r.stderr.strip().splitlines()[-1:]}")
    report = json.loads(r.stdout)
    return {
        "bits_per_dim": report["bits_per_dim"],
        "bits_per_dim_prior": report.get("bits_per_dim_prior"),
        "likelihood": report["likelihood"],
    }


def grid(rows: list[np.ndarray], path: Path) -> None:
    """One row per array of (n, C, H, W) images in [0, 1], 2 px white gaps."""
    n, c, h, w = rows[0].shape
    gap = 2
    canvas = np.full((len(rows) * (h + gap) - gap, n * (w + gap) - gap, 3), 255, np.uint8)
    for r, images in enumerate(rows):
        for i, im in enumerate(images):
            px = np.round(np.clip(im, 0, 1) * 255).astype(np.uint8).transpose(1, 2, 0)  # (H, W, C)
            canvas[r * (h + gap) : r * (h + gap) + h, i * (w + gap) : i * (w + gap) + w] = px
    Image.fromarray(canvas).save(path)


def bench_folder(
    folder: Path, out: Path, train_args: list[str], export_args: list[str], label: str, k: int, reuse: bool
) -> dict:
    work = out / f"{folder.name}-{label}"
    work.mkdir(parents=True, exist_ok=True)
    log = work / "vaectl.log"
    if not reuse:
        log.write_text("")
    seconds, export_dir = train_and_export(folder, work, train_args, export_args, log, reuse)
    enc, dec = Encoder(export_dir), Decoder(export_dir)
    # the images the run held out (its --seed, which the graphs record): seed 0's could be training images
    seed = enc.info.hold_out_seed or 0
    train, test = split(folder, seed)
    t0 = time.perf_counter()
    mu, _ = enc.encode(test)  # with the encoder graph's refinement steps, if it has them
    encode_ms = 1000 * (time.perf_counter() - t0) / len(test)
    recon = dec.decode_float(mu)
    d = enc.latent_dim
    pca, mean = pca_reconstruct(train, test, d), pca_reconstruct(train, test, 0)
    grid([test[:16], recon[:16], pca[:16], mean[:16]], work / "recon.png")
    run(
        [*CLI, "generate", "--decoder", str(export_dir), "-n", "64", "--seed", "0", "--out", str(work / "samples.png")],
        log,
    )
    top = np.argsort(dec.info.kl_per_dim)[::-1][:TRAVERSE_DIMS] if dec.info.kl_per_dim is not None else range(6)
    run(
        [*CLI, "traverse", str(export_dir), *(a for i in top for a in ("--dim", str(int(i)))), "--seed", "0"]
        + ["--out", str(work / "traverse.png")],
        log,
    )
    result = {
        "set": folder.name,
        "label": label,
        "train_args": shlex.join(train_args),
        "export_args": shlex.join(export_args),
        "refine_steps": enc.info.config.refine_steps,
        "encode_ms_per_image": encode_ms,
        "n_train": len(train),
        "n_test": len(test),
        "hold_out_seed": seed,
        "latent_dim": d,
        "train_seconds": seconds,
        "train_seconds_from": "epochs' sum (reused run)" if reuse else "subprocess wall time",
        "vaectl": scores(recon, test),
        f"pca{d}": scores(pca, test),
        "mean": scores(mean, test),
        "nearest": scores(nearest_reconstruct(train, test), test),
        **(bits_per_dim(export_dir, folder, k) if k > 0 else {"bits_per_dim": None, "bits_per_dim_prior": None}),
        "eval_k": k,
    }
    (work / "result.json").write_text(json.dumps(result, indent=2) + "\n")
    with open(out / "results.jsonl", "a") as f:
        f.write(json.dumps(result) + "\n")
    return result


def print_table(results: list[dict]) -> None:
    print(f"{'set':<12} {'model':<22} {'PSNR dB':>8} {'colour err':>10} {'train s':>8} {'bits/dim':>16}")
    for r in results:
        d = r["latent_dim"]
        bits = "" if r["bits_per_dim"] is None else f"{r['bits_per_dim']:.3f}"
        if r["bits_per_dim_prior"] is not None:
            bits += f" ({r['bits_per_dim_prior']:.3f})"
        rows = [
            (f"vaectl {r['label']}", r["vaectl"], f"{r['train_seconds']:8.0f}", bits),
            (f"PCA-{d}", r[f"pca{d}"], f"{'':8}", ""),
            ("mean image", r["mean"], f"{'':8}", ""),
            ("nearest training image", r["nearest"], f"{'':8}", ""),
        ]
        for name, s, secs, b in rows:
            print(f"{r['set']:<12} {name:<22} {s['psnr']:8.2f} {s['colour_err']:10.2f} {secs} {b:>16}")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("folders", nargs="+", type=Path, help="image folders (flat or labelled)")
    ap.add_argument("--out", type=Path, default=Path("colour-bench"), help="runs, grids and results")
    ap.add_argument("--train-args", default="", help='extra flags for vaectl train, e.g. "--arch conv"')
    ap.add_argument(
        "--export-args",
        default="",
        help='extra flags for vaectl export, e.g. "--refine-steps 0"; with --reuse, the run is exported again',
    )
    ap.add_argument("--label", default="default", help="name of this configuration in the table and folders")
    ap.add_argument("--k", type=int, default=100, help="importance samples for eval's bits/dim; 0: no eval [100]")
    ap.add_argument(
        "--reuse",
        action="store_true",
        help="score the run an earlier bench left in OUT instead of training again (exported again with "
        "--export-args, or where it has no export)",
    )
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    train_args = shlex.split(args.train_args)
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs; vaectl train {args.train_args}"
    )
    export_args = shlex.split(args.export_args)
    results = [bench_folder(f, args.out, train_args, export_args, args.label, args.k, args.reuse) for f in args.folders]
    print_table(results)
    print("PSNR: mean over held-out images of 10 log10(1/MSE) on [0, 1] pixels; colour err: mean |per-channel mean")
    print("colour difference| in 8-bit levels; bits/dim: vaectl eval's IWAE bound under N(0, I) (exported prior)")


if __name__ == "__main__":
    main()
