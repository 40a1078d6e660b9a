"""What `--compile` costs and buys on this machine, and how to feed it an epoch's last, smaller batch.

    python bench/compile_speed.py [--images 20000] [--epochs 3] [--repeats 1] [--modes eager,recompile,drop,pad,dynamic]
                                  [--cpu-time]

Each mode trains the default MLP VAE (vaectl's step code: training.loop.batch_loss / optimizer_step /
gather_batch) for --epochs epochs on --images 28x28 images at batch 128, whose last batch is smaller, in a
fresh process with an empty inductor cache (so every compilation is a cold one, as on a user's first run):
  eager      no torch.compile: the reference
  recompile  torch.compile; the last batch's new size makes dynamo compile again (a graph with a dynamic batch)
  drop       torch.compile; the last, smaller batch is skipped (its images wait for another epoch's shuffle)
  pad        torch.compile; the last batch is padded with blank images to the full size, outputs cut back
             (what `vaectl train --compile` does)
  dynamic    torch.compile; the batch dimension marked dynamic before the first call (one compilation)
Prints per mode: the graphs dynamo compiled, the first epoch's wall seconds (compilation included), the later
epochs' images/s (median) and that against eager. --cpu-time: torch on one thread, the later epochs timed in
the process's CPU time (a shared, loaded machine disturbs that far less than wall time).
Data: Fashion-MNIST when present, else random images. Asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BATCH = 128
MODES = ("eager", "recompile", "drop", "pad", "dynamic")
FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")


def images(n: int):
    import numpy as np

    if FASHION_DIR.is_dir():
        from vaectl.data import load_data

        ds = load_data(FASHION_DIR)
        if len(ds.train) >= n and ds.train.shape[1:] == (1, 28, 28):
            return ds.train[:n], "Fashion-MNIST"
    return np.random.default_rng(0).integers(0, 256, (n, 1, 28, 28), dtype=np.uint8), "random images"


def child(mode: str, n: int, epochs: int, cpu_time: bool) -> dict:
    """One mode in this (fresh) process: {"graphs", "epoch_seconds", "images_per_epoch", "data"}."""
    import torch

    from vaectl.models import VAEConfig
    from vaectl.models.vae import VAE
    from vaectl.training.loop import batch_loss, gather_batch, make_optimizer, optimizer_step

    if cpu_time:
        torch.set_num_threads(1)
    x_np, source = images(n)
    x_u8 = torch.from_numpy(x_np)
    torch.manual_seed(0)
    model = VAE(VAEConfig(arch="mlp")).train()
    opt = make_optimizer(model, 1e-3, 0.0, torch.device("cpu"))
    net = model if mode == "eager" else torch.compile(model)

    def forward(x, y=None):
        b = len(x)
        if mode == "pad" and b < BATCH:
            x = torch.cat([x, x.new_zeros(BATCH - b, *x.shape[1:])])
        if mode == "dynamic":
            torch._dynamo.mark_dynamic(x, 0)
        logits, mu, logvar = net(x, y)
        return logits[:b], mu[:b], logvar[:b]

    steps = n // BATCH if mode == "drop" else -(-n // BATCH)
    seconds, seen = [], []
    for epoch in range(epochs):
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(epoch))
        clock = time.process_time if cpu_time and epoch > 0 else time.perf_counter  # epoch 1: wall (compilation)
        t0, count = clock(), 0
        for step in range(steps):
            x = gather_batch(x_u8, perm[step * BATCH : (step + 1) * BATCH])  # (B, 1, 28, 28) in [0, 1]
            loss, _, _ = batch_loss(forward, x, None, "bernoulli", 1.0)
            optimizer_step(opt, loss, 1e-3)
            count += len(x)
        loss.item()
        seconds.append(clock() - t0)
        seen.append(count)
    graphs = torch._dynamo.utils.counters["stats"]["unique_graphs"] if mode != "eager" else 0
    return {"graphs": graphs, "epoch_seconds": seconds, "images_per_epoch": seen, "data": source}


def run_mode(mode: str, n: int, epochs: int, cpu_time: bool) -> dict:
    with tempfile.TemporaryDirectory(prefix="vaectl-inductor-") as cache:
        env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": cache}
        flags = ["--images", str(n), "--epochs", str(epochs), *(["--cpu-time"] if cpu_time else [])]
        out = subprocess.run(
            [sys.executable, __file__, "--child", mode, *flags],
            capture_output=True,
            text=True,
            env=env,
            check=False,
        )
    if out.returncode != 0:
        raise SystemExit(f"{mode} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=20_000, help="training images per epoch [20000]")
    parser.add_argument("--epochs", type=int, default=3, help="epochs per mode (the first holds compilation) [3]")
    parser.add_argument("--repeats", type=int, default=1, help="run the modes this many times, alternating [1]")
    parser.add_argument("--modes", default=",".join(MODES), help=f"comma-separated, of {', '.join(MODES)}")
    parser.add_argument("--cpu-time", action="store_true", help="one thread; later epochs timed in CPU time")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child, args.images, args.epochs, args.cpu_time)))
        return

    import torch

    from vaectl.doctor.probe import cpu_name

    modes = args.modes.split(",")
    print("vaectl --compile benchmark (bench/compile_speed.py)")
    print(
        f"  machine:   {cpu_name()}, {os.cpu_count()} logical CPUs, load average "
        f"{' '.join(f'{v:.2f}' for v in os.getloadavg())} at start"
    )
    print(
        f"  software:  Python {platform.python_version()}, torch {torch.__version__}, {torch.get_num_threads()} threads"
    )
    print(
        f"  work:      default MLP, batch {BATCH}, {args.images:,} images an epoch (last batch "
        f"{args.images % BATCH or BATCH}), {args.epochs} epochs per mode, {args.repeats} repeat(s), cold inductor cache"
        + ("; later epochs in CPU time on 1 thread" if args.cpu_time else ""),
        flush=True,
    )
    results: dict[str, list[dict]] = {m: [] for m in modes}
    for _ in range(args.repeats):
        for mode in modes:
            results[mode].append(run_mode(mode, args.images, args.epochs, args.cpu_time))
            print(f"  ... {mode} done", file=sys.stderr, flush=True)
    print(f"  data:      {results[modes[0]][0]['data']}\n")

    def later_rate(r):
        return statistics.median(n / s for n, s in zip(r["images_per_epoch"][1:], r["epoch_seconds"][1:]))

    eager = statistics.median(later_rate(r) for r in results["eager"]) if "eager" in results else None
    print(f"{'mode':<10}  {'graphs':>6}  {'epoch 1 (s)':>11}  {'later img/s':>11}  {'vs eager':>8}  runs (later img/s)")
    for mode in modes:
        rs = results[mode]
        rate = statistics.median(later_rate(r) for r in rs)
        first = statistics.median(r["epoch_seconds"][0] for r in rs)
        versus = f"{rate / eager:.2f}x" if eager else "-"
        runs = ", ".join(f"{later_rate(r):,.0f}" for r in rs)
        print(f"{mode:<10}  {rs[0]['graphs']:>6}  {first:>11.1f}  {rate:>11,.0f}  {versus:>8}  {runs}")
    print(f"\nload average now {' '.join(f'{v:.2f}' for v in os.getloadavg())}")


if __name__ == "__main__":
    main()
