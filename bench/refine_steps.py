"""What refinement steps (models/refine.py) are worth on a trained run, and what they cost in encoder.onnx.

    python bench/refine_steps.py RUN FOLDER [--steps 0,5,10,20,40] [--timed 0,20] [--threads 2]

RUN is a run directory of a resnet trained on the image folder FOLDER (its checkpoint's own refine_steps do
not matter: every count in --steps is applied to the same weights). For each count K, in PyTorch: the run's
held-out images (bench/colour.py's split, the run's --seed) encoded, mu refined by K steps, decoded; PSNR and
mean-colour error as bench/colour.py scores them; and the same PSNR on the first 400 training images. For each
count in --timed, with the run exported once with refinement (`--prior normal`, into a temporary folder; its
encoder takes the count as its refine_steps input), with onnxruntime on --threads threads: the encoder's file
size, the time to load it into a session (median of 3), and its time per image on a batch of 64 held-out
images and on one image (medians of 5). Prints a table; asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from vaectl.models.checkpoint import Checkpoint
from vaectl.models.refine import refine

sys.path.insert(0, str(Path(__file__).resolve().parent))
from colour import scores, split  # noqa: E402

TRAIN_SCORED = 400


def quality(model, images: np.ndarray, steps: int) -> dict[str, float]:
    x = torch.from_numpy(images)
    with torch.no_grad():
        mu, _ = model.encoder(x)  # (N, D)
        z = refine(model.decoder, x, mu, steps)
        return scores(torch.sigmoid(model.decoder(z)).numpy(), images)


def median_seconds(f, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        f()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def encoder_cost(run: Path, counts: list[int], images: np.ndarray, threads: int) -> list[dict[str, float]]:
    """The run exported with refinement (its encoder takes the count as an input), timed at each count."""
    with tempfile.TemporaryDirectory(prefix="vaectl-refine-") as tmp:
        cmd = [sys.executable, "-m", "vaectl.cli", "export", str(run), "--out", tmp, "--prior", "normal"]
        subprocess.run([*cmd, "--refine-steps", str(max(1, *counts))], check=True, capture_output=True)
        path = Path(tmp) / "encoder.onnx"
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads

        def load():
            return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

        session, load_s = load(), median_seconds(load, 3)
        batch, one = images[:64], images[:1]
        rows = []
        for k in counts:
            feed = {"refine_steps": np.array([k], np.int64)}
            session.run(["mu"], {"image": batch, **feed})  # warm-up
            per_batch = median_seconds(lambda f=feed: session.run(["mu"], {"image": batch, **f}), 5)
            per_one = median_seconds(lambda f=feed: session.run(["mu"], {"image": one, **f}), 5)
            size = path.stat().st_size / 1e6
            rows.append(
                {
                    "steps": k,
                    "mb": size,
                    "load_s": load_s,
                    "ms_batch": 1000 * per_batch / len(batch),
                    "ms_one": 1000 * per_one,
                }
            )
        return rows


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", type=Path, help="run directory of a resnet trained on FOLDER")
    ap.add_argument("folder", type=Path, help="the image folder it trained on")
    ap.add_argument("--steps", default="0,5,10,20,40", help="refinement steps to score [0,5,10,20,40]")
    ap.add_argument("--timed", default="0,20", help="refinement steps to export and time [0,20]")
    ap.add_argument("--threads", type=int, default=2, help="torch and onnxruntime threads [2]")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    ckpt = Checkpoint.load(args.run)
    model = ckpt.model().eval()
    train, test = split(args.folder, ckpt.hold_out_seed or 0)
    print(f"machine: {platform.processor() or platform.machine()}, {args.threads} threads; {args.run}")
    print(f"{'steps':>5} {'PSNR dB':>8} {'colour err':>10} {'train PSNR':>10}")
    rows = []
    for k in (int(s) for s in args.steps.split(",")):
        held_out, trained = quality(model, test, k), quality(model, train[:TRAIN_SCORED], k)
        rows.append({"steps": k, "held_out": held_out, "train_psnr": trained["psnr"]})
        print(f"{k:>5} {held_out['psnr']:8.2f} {held_out['colour_err']:10.2f} {trained['psnr']:10.2f}")
    print(f"{'steps':>5} {'encoder MB':>10} {'load s':>7} {'ms/image (64)':>14} {'ms (1 image)':>13}")
    for cost in encoder_cost(args.run, [int(s) for s in args.timed.split(",")], test, args.threads):
        rows.append(cost)
        k = cost["steps"]
        print(f"{k:>5} {cost['mb']:10.2f} {cost['load_s']:7.2f} {cost['ms_batch']:14.1f} {cost['ms_one']:13.1f}")
    print(json.dumps({"set": args.folder.name, "n_test": len(test), "rows": rows}))


if __name__ == "__main__":
    main()
