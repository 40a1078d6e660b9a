"""Training throughput: `vaectl train`'s whole loop, and its in-memory batches vs a torchvision DataLoader.

    python bench/train_speed.py [--data DIR] [--epochs 1] [--repeats 2] [--workers 0] [--device cpu]
                                [--baseline CHECKOUT] [--images N] [--only train|batches] [--cpu-time]

All rows train the mlp VAE (vaectl's default mlp config) on 60,000 28x28 images at batch 128.
  vaectl train:  the whole training loop, vaectl.training.train on an IDX folder of those images, in a fresh
                 process (progress reads, checkpoints after each epoch); images/s is what its metrics.jsonl
                 records (the epochs' training steps, validation apart), the median over the epochs.
                 --baseline CHECKOUT adds the same row for another vaectl source tree (e.g. `git archive main`
                 unpacked), run alternately with this one: the before/after of a change to the loop.
                 --cpu-time times those rows in the process's CPU time on one thread instead of wall time: on a
                 shared, loaded machine wall time measures the neighbours more than the loop.
The next two rows share the step code (vaectl.training.loop.batch_loss / optimizer_step) and differ only in
how a batch reaches the model:
  in-memory:     the images sit in one uint8 tensor on the device; a batch is an index gather + one
                 float conversion (vaectl.training.loop.gather_batch), as in `vaectl train`.
  DataLoader:    torchvision's FashionMNIST __getitem__ (PIL image per sample) + ToTensor, collated by a
                 torch.utils.data.DataLoader (shuffle=True, num_workers=--workers).
Data: Fashion-MNIST from Debian's dataset-fashion-mnist (/usr/share/datasets/fashion-mnist) when present,
otherwise random images of the same shape. Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
BATCH = 128


def load_images(data_dir: Path | None) -> tuple[np.ndarray, np.ndarray, str]:
    """uint8 (60000, 28, 28) images, int64 labels, and where they came from."""
    directory = data_dir or FASHION_DIR
    if directory.is_dir():
        from vaectl.data import load_data

        ds = load_data(directory)
        if ds.train.shape[1:] == (1, 28, 28) and len(ds.train) >= 60_000:
            return ds.train[:60_000, 0], ds.train_labels[:60_000], f"Fashion-MNIST train split from {directory}"
        print(f"note: {directory} does not hold 60,000 28x28 images; using synthetic data", file=sys.stderr)
    rng = np.random.default_rng(0)
    return (
        rng.integers(0, 256, (60_000, 28, 28), dtype=np.uint8),
        rng.integers(0, 10, 60_000),
        "synthetic uint8 images (60,000 x 28 x 28)",
    )


def new_model(device, seed: int = 0):
    import torch

    from vaectl.models import VAEConfig
    from vaectl.models.vae import VAE
    from vaectl.training.loop import make_optimizer

    torch.manual_seed(seed)
    model = VAE(VAEConfig(arch="mlp")).to(device).train()
    return model, make_optimizer(model, 1e-3, 0.0, torch.device(device))


def vaectl_loop(images, device, epochs: int, warmup_steps: int):
    """vaectl's fast path: one uint8 tensor on the device, batches gathered by index."""
    import torch

    from vaectl.training.loop import batch_loss, gather_batch, optimizer_step

    model, opt = new_model(device)
    x_u8 = torch.from_numpy(images[:, None]).to(device)  # (N, 1, 28, 28) uint8, decoded once
    n, seen = len(x_u8), 0
    for i in range(warmup_steps):
        loss, _, _ = batch_loss(
            model, gather_batch(x_u8, torch.arange(i * BATCH, (i + 1) * BATCH, device=device)), None, "bernoulli", 1.0
        )
        optimizer_step(opt, loss, 1e-3)
    sync(device)
    t0 = time.perf_counter()
    for epoch in range(epochs):
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(epoch)).to(device)
        for start in range(0, n, BATCH):
            x = gather_batch(x_u8, perm[start : start + BATCH])  # (B, 1, 28, 28) in [0, 1]
            loss, _, _ = batch_loss(model, x, None, "bernoulli", 1.0)
            optimizer_step(opt, loss, 1e-3)
            seen += len(x)
        loss.item()  # the training loop reads the losses in chunks, not at every step
    sync(device)
    return seen, time.perf_counter() - t0


def dataloader_loop(images, labels, device, epochs: int, warmup_steps: int, workers: int):
    """The same model and step, fed by torchvision's per-sample PIL + ToTensor path."""
    import torch
    import torchvision
    from torch.utils.data import DataLoader
    from torchvision.transforms import ToTensor

    from vaectl.training.loop import batch_loss, optimizer_step

    class InMemoryFashionMNIST(torchvision.datasets.FashionMNIST):
        """torchvision's own FashionMNIST.__getitem__ (Image.fromarray + transform), without its file loading."""

        def __init__(self, data, targets, transform):
            self.data, self.targets = data, targets
            self.transform, self.target_transform = transform, None

    dataset = InMemoryFashionMNIST(torch.from_numpy(images), torch.from_numpy(np.asarray(labels)), ToTensor())
    model, opt = new_model(device)

    def epoch_batches(seed):
        loader = DataLoader(
            dataset,
            batch_size=BATCH,
            shuffle=True,
            num_workers=workers,
            generator=torch.Generator().manual_seed(seed),
            pin_memory=device.type == "cuda",
        )
        for x, _ in loader:
            yield x.to(device, non_blocking=True)

    for i, x in enumerate(epoch_batches(-1)):
        if i == warmup_steps:
            break
        loss, _, _ = batch_loss(model, x, None, "bernoulli", 1.0)
        optimizer_step(opt, loss, 1e-3)
    sync(device)
    seen = 0
    t0 = time.perf_counter()
    for epoch in range(epochs):
        for x in epoch_batches(epoch):
            loss, _, _ = batch_loss(model, x, None, "bernoulli", 1.0)
            optimizer_step(opt, loss, 1e-3)
            seen += len(x)
        loss.item()
    sync(device)
    return seen, time.perf_counter() - t0


# Run in a fresh interpreter that imports vaectl from the source tree under test (PYTHONPATH).
WHOLE_LOOP = """
import json, sys, time
out, data, epochs, device, cpu_time = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5] == "1"
if cpu_time:  # the loop times its epochs with time.perf_counter: make that the process's CPU time
    import torch
    torch.set_num_threads(1)
    time.perf_counter = time.process_time
import vaectl
from vaectl.training import TrainConfig, train
train(TrainConfig(out=out, data=data, epochs=epochs, batch_size=128, seed=0, grid_every=0, device=device),
      {"arch": "mlp"}, log=lambda m: None)
rates = [json.loads(line)["images_per_sec"] for line in open(out + "/metrics.jsonl")]
print(json.dumps({"vaectl": vaectl.__file__, "images_per_sec": rates}))
"""


def write_idx_folder(directory: Path, images, labels) -> Path:
    """The images as an IDX folder (test split: the first 10,000 again) for `vaectl train --data`."""
    import numpy as np

    def write(name, array):
        array = np.ascontiguousarray(array, dtype=np.uint8)
        header = bytes([0, 0, 0x08, array.ndim]) + b"".join(d.to_bytes(4, "big") for d in array.shape)
        (directory / name).write_bytes(gzip.compress(header + array.tobytes(), compresslevel=1))

    directory.mkdir(parents=True, exist_ok=True)
    write("train-images-idx3-ubyte.gz", images)
    write("train-labels-idx1-ubyte.gz", labels)
    write("t10k-images-idx3-ubyte.gz", images[:10_000])
    write("t10k-labels-idx1-ubyte.gz", labels[:10_000])
    return directory


def whole_loop(source_tree: Path, data: Path, work: Path, epochs: int, device, cpu_time: bool) -> list[float]:
    """`vaectl train`'s images/s per epoch, training with the vaectl in `source_tree`, in a fresh process."""
    link_dir = Path(tempfile.mkdtemp(dir=work))
    (link_dir / "vaectl").symlink_to(source_tree.resolve(), target_is_directory=True)
    out = Path(tempfile.mkdtemp(dir=work)) / "run"
    env = {**os.environ, "PYTHONPATH": str(link_dir), **({"OMP_NUM_THREADS": "1"} if cpu_time else {})}
    cmd = [sys.executable, "-c", WHOLE_LOOP, str(out), str(data), str(epochs), str(device), str(int(cpu_time))]
    result = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if result.returncode != 0:
        raise SystemExit(f"vaectl train from {source_tree} failed:\n{result.stderr[-2000:]}")
    report = json.loads(result.stdout.strip().splitlines()[-1])
    if Path(report["vaectl"]).resolve().parent != source_tree.resolve():
        raise SystemExit(f"the child imported {report['vaectl']}, not {source_tree}")
    return report["images_per_sec"]


def sync(device):
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=None, help=f"IDX folder [{FASHION_DIR}, else synthetic]")
    parser.add_argument("--epochs", type=int, default=1, help="timed epochs per loop and repeat [1]")
    parser.add_argument("--repeats", type=int, default=2, help="alternate the two loops this many times [2]")
    parser.add_argument("--warmup-steps", type=int, default=10)
    parser.add_argument("--workers", type=int, default=0, help="DataLoader num_workers [0]")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, ... [cpu]")
    parser.add_argument(
        "--baseline", type=Path, default=None, help="another vaectl source tree to time `vaectl train` with"
    )
    parser.add_argument("--images", type=int, default=60_000, help="training images per epoch [60000]")
    parser.add_argument("--only", choices=["train", "batches"], default=None, help="only these rows [all]")
    parser.add_argument("--cpu-time", action="store_true", help="time the `vaectl train` rows in CPU time, 1 thread")
    args = parser.parse_args(argv)

    import torch
    import torchvision

    from vaectl.doctor.probe import cpu_name

    device = torch.device(args.device)
    images, labels, source = load_images(args.data)
    images, labels = images[: args.images], labels[: args.images]
    print("vaectl training throughput benchmark (bench/train_speed.py)")
    print(f"  data:      {source}")
    print(f"  model:     mlp VAE, vaectl defaults (hidden 512,256, latent 32, bernoulli), Adam, batch {BATCH}")
    print(
        f"  machine:   {cpu_name()}, {os.cpu_count()} logical CPUs "
        f"({len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else '?'} usable), "
        f"load average {' '.join(f'{v:.2f}' for v in os.getloadavg())} at start"
    )
    print(
        f"  software:  Python {platform.python_version()}, torch {torch.__version__}, "
        f"torchvision {torchvision.__version__}, torch threads {torch.get_num_threads()}, device {device}"
    )
    print(
        f"  timing:    {args.epochs} epoch(s) of {len(images):,} images per loop, {args.repeats} alternating "
        f"repeat(s) after {args.warmup_steps} warm-up steps; DataLoader num_workers={args.workers}"
        + ("; `vaectl train` rows in CPU time on 1 thread" if args.cpu_time else "")
    )
    print(flush=True)

    this_tree = Path(__file__).resolve().parents[1]
    trees = {} if args.only == "batches" else {"vaectl train (this tree)": this_tree}
    if args.baseline is not None and args.only != "batches":
        trees[f"vaectl train ({args.baseline})"] = args.baseline
    steps, loader = "in-memory batches (step code)", f"DataLoader + ToTensor (workers={args.workers})"
    results: dict[str, list[float]] = {name: [] for name in trees}
    if args.only != "train":
        results.update({steps: [], loader: []})
    with tempfile.TemporaryDirectory(prefix="vaectl-train-speed-") as work:
        data = write_idx_folder(Path(work) / "data", images, labels) if trees else None
        for repeat in range(args.repeats):
            # alternating, in turn first, so that a change in the machine's load hits both trees alike
            for name, tree in list(trees.items())[:: 1 if repeat % 2 == 0 else -1]:
                results[name] += whole_loop(tree, data, Path(work), args.epochs, device, args.cpu_time)
                print(f"  repeat {repeat + 1}: {name}: {results[name][-args.epochs :]}", file=sys.stderr, flush=True)
            if args.only != "train":
                seen, secs = vaectl_loop(images, device, args.epochs, args.warmup_steps)
                results[steps].append(seen / secs)
                seen, secs = dataloader_loop(images, labels, device, args.epochs, args.warmup_steps, args.workers)
                results[loader].append(seen / secs)

    names = list(results)
    first = statistics.median(results[names[0]])
    base, versus = (
        (statistics.median(results[loader]), "vs DataLoader") if loader in results else (first, "vs first row")
    )
    width = max(map(len, names))
    print(f"{'loop':<{width}}  {'median img/s':>12}  {'runs (img/s)':<40}  {versus:>13}")
    print(f"{'-' * width}  {'-' * 12}  {'-' * 40}  {'-' * 13}")
    for name in names:
        med = statistics.median(results[name])
        runs = ", ".join(f"{v:,.0f}" for v in results[name])
        print(f"{name:<{width}}  {med:>12,.0f}  {runs:<40}  {med / base:>12.2f}x")
    print()
    if loader in results:
        ratio = statistics.median(results[steps]) / base
        print(f"in-memory batches / DataLoader = {ratio:.2f}x (target >= 2x)")
    print(f"load average now {' '.join(f'{v:.2f}' for v in os.getloadavg())}")


if __name__ == "__main__":
    main()
