"""How long a folder of images takes to load and how much memory training on it holds (the image store).

    python bench/image_store.py [--n 20000] [--size 64] [--folder DIR] [--baseline CODE_DIR] [--train]
                                [--train-flags "--arch mlp"] [--replicate R]

Makes --n synthetic colour PNGs of --size px (smooth blobs and texture, so they compress like photographs;
in a temporary folder under --work, deleted afterwards) or takes --folder, then measures, each in a fresh
process with an empty store cache:
  ingest:       load_data(folder) on a cold store: decoding every image into the store (wall time, peak RSS
                of the process and of its largest decoding worker)
  warm load:    load_data(folder) again: the folder listed and checked against the store
  second start: a fresh process that imports training (torch), loads the folder and reads its first batch,
                from the moment it is launched
  train:        (--train) `vaectl train --data FOLDER --epochs 1` (its defaults): wall time and peak RSS
With --baseline CODE_DIR (a checkout of vaectl, e.g. one without the store) the load and (with --train) the
train are measured with that code too. Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

MEASURE = r"""
import json, resource, sys, time
t0 = time.time()
{body}
self_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
children_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
print(json.dumps(dict(seconds=time.time() - t0, since_launch=time.time() - float(sys.argv[1]),
                      rss_mb=self_kb / 1024, worker_rss_mb=children_kb / 1024, **extra)))
"""
LOAD = """
from vaectl.data import load_data
ds = load_data(sys.argv[2])
extra = dict(train=len(ds.train), test=len(ds.test), shape=list(ds.image_shape))
"""
FIRST_BATCH = """
import torch
from vaectl.training import loop
from vaectl.training.config import TrainConfig
from vaectl.training.runtime import start_processes
t_imported = time.time()
tcfg = TrainConfig(data=sys.argv[2], dataset=None)
ds, x_train, _, x_val, _ = loop.load_data_on_device(tcfg, start_processes("cpu"))
batch = loop.Batches(x_train, None, 0, 1, 0, 256)
x, _ = batch.batch(batch.order(0), 0)
extra = dict(batch=list(x.shape), after_imports=time.time() - t_imported)
"""


def make_image(args: tuple[int, int, str]) -> None:
    """One natural-ish image: a smooth colour field (an upsampled 4x4 grid), a few soft blobs, grain."""
    i, size, path = args
    from PIL import Image

    rng = np.random.default_rng(i)
    base = Image.fromarray(rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)).resize((size, size), Image.BICUBIC)
    x = np.asarray(base, dtype=np.float32)
    yy, xx = np.mgrid[0:size, 0:size]
    for _ in range(3):
        cy, cx, r = rng.uniform(0, size, 2).tolist() + [rng.uniform(size / 10, size / 3)]
        mask = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r * r))[..., None]
        x = x * (1 - mask) + rng.uniform(0, 255, 3) * mask
    x += rng.normal(0, 6, x.shape)
    Image.fromarray(np.clip(x, 0, 255).astype(np.uint8)).save(path)


def make_folder(folder: Path, n: int, size: int, replicate: int) -> float:
    """n PNGs in 10 class subfolders; with replicate R, n / R distinct images, each hard-linked R times under
    other names (decoding and training cost the same; making them takes R times less)."""
    t = time.perf_counter()
    for k in range(10):
        (folder / f"class{k}").mkdir(parents=True, exist_ok=True)
    unique = -(-n // replicate)
    jobs = [(i, size, str(folder / f"class{i % 10}" / f"{i:07d}.png")) for i in range(unique)]
    with ProcessPoolExecutor() as pool:
        list(pool.map(make_image, jobs, chunksize=256))
    for i in range(unique, n):
        os.link(
            folder / f"class{i % unique % 10}" / f"{i % unique:07d}.png", folder / f"class{i % 10}" / f"{i:07d}.png"
        )
    return time.perf_counter() - t


def run_measure(body: str, folder: Path, code: Path, cache: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": str(code), "VAECTL_CACHE": str(cache)}
    out = subprocess.run(
        [sys.executable, "-c", MEASURE.format(body=body), str(time.time()), str(folder)],
        capture_output=True,
        text=True,
        env=env,
    )
    if out.returncode:
        sys.exit(f"measurement failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def run_train(folder: Path, code: Path, cache: Path, work: Path, flags: list[str]) -> dict:
    """`vaectl train --epochs 1` under /usr/bin/time -v: wall seconds and peak RSS."""
    env = {**os.environ, "PYTHONPATH": str(code), "VAECTL_CACHE": str(cache)}
    run = work / "run"
    cmd = ["/usr/bin/time", "-v", sys.executable, "-m", "vaectl.cli", "train", "--data", str(folder)]
    cmd += ["--epochs", "1", "--out", str(run), "--overwrite", "--grid-every", "0", *flags]
    t = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - t
    if out.returncode:
        sys.exit(f"train failed:\n{out.stderr[-3000:]}")
    rss_kb = next(int(line.split()[-1]) for line in out.stderr.splitlines() if "Maximum resident" in line)
    epoch = next((line for line in out.stderr.splitlines() if line.startswith("epoch 1/1")), "")
    shutil.rmtree(run, ignore_errors=True)
    return dict(seconds=seconds, rss_mb=rss_kb / 1024, epoch=epoch)


def code_dir(checkout: Path, work: Path, name: str) -> Path:
    """A folder whose `vaectl` links to `checkout` (the repository root is the package)."""
    d = work / f"code-{name}"
    d.mkdir(exist_ok=True)
    (d / "vaectl").symlink_to(checkout.resolve())
    return d


def measure(label: str, code: Path, folder: Path, work: Path, train: bool, flags: list[str]) -> None:
    cache = work / f"cache-{label}"
    cold = run_measure(LOAD, folder, code, cache)
    print(
        f"{label}: load (cold): {cold['seconds']:.1f} s, peak RSS {cold['rss_mb']:.0f} MB "
        f"(largest worker {cold['worker_rss_mb']:.0f} MB); {cold['train']:,} train / {cold['test']:,} test {cold['shape']}"
    )
    warm = run_measure(LOAD, folder, code, cache)
    print(f"{label}: load (again): {warm['seconds']:.2f} s, peak RSS {warm['rss_mb']:.0f} MB")
    first = run_measure(FIRST_BATCH, folder, code, cache)
    print(
        f"{label}: launch to first batch: {first['since_launch']:.2f} s, of which data to first batch "
        f"{first['after_imports']:.2f} s (the rest: Python, torch and vaectl imports)"
    )
    if train:
        t = run_train(folder, code, cache, work, flags)
        print(
            f"{label}: vaectl train --epochs 1 {' '.join(flags)}: {t['seconds']:.0f} s, peak RSS {t['rss_mb']:.0f} MB; {t['epoch']}"
        )
    shutil.rmtree(cache, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=20_000, help="synthetic images to make")
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--folder", type=Path, default=None, help="measure this folder instead")
    ap.add_argument("--baseline", type=Path, default=None, help="also measure this vaectl checkout")
    ap.add_argument("--train", action="store_true", help="also measure vaectl train --epochs 1")
    ap.add_argument("--train-flags", default="", help="more flags for vaectl train, e.g. '--arch mlp'")
    ap.add_argument("--replicate", type=int, default=1, help="make n / R distinct images, each linked R times")
    ap.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()))
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="image-store-bench-", dir=args.work))
    try:
        folder = args.folder
        if folder is None:
            folder = work / "images"
            seconds = make_folder(folder, args.n, args.size, args.replicate)
            mb = sum(p.stat().st_size for p in folder.rglob("*.png")) / 1e6
            distinct = f", {-(-args.n // args.replicate):,} distinct" if args.replicate > 1 else ""
            print(f"made {args.n:,} {args.size}-px colour PNGs ({mb:.0f} MB{distinct}) in {seconds:.0f} s")
        load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
        print(f"machine: {os.cpu_count()} CPU cores; python {sys.version.split()[0]}; load average {load}")
        here = code_dir(Path(__file__).resolve().parents[1], work, "store")
        flags = args.train_flags.split()
        measure("image store", here, folder, work, args.train, flags)
        if args.baseline is not None:
            measure("baseline", code_dir(args.baseline, work, "baseline"), folder, work, args.train, flags)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
