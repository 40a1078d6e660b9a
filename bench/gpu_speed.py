"""GPU training figures: `vaectl train` where the design says it runs.

    python bench/gpu_speed.py                                   # a CUDA machine: every part
    python bench/gpu_speed.py --only speed,export               # some parts
    python bench/gpu_speed.py --device cpu --images 2000 --epochs 2 --only speed,export,ddp --ddp-procs 2
                                                                # dry run of the same code on the CPU

Parts (each trains through vaectl.training.train, the code `vaectl train` runs, and reads its metrics.jsonl):
  speed    epoch time and images/s for the default MLP and the default conv model on --images 28x28 images
           (GPU-resident uint8, batched by index, as on the CPU), fp32 vs --amp (bf16) vs --compile vs both.
           The first epoch holds CUDA start-up and compilation and is reported apart; the figure is the median
           of the later epochs. Target: an MLP epoch on 60,000 images in under 1 s on one H100-class GPU.
  amp      from the speed runs: |validation loss with --amp - fp32| per model (target <= 0.5 nats; meaningful
           on real data only).
  export   the CUDA-trained checkpoints exported in a child process that sees no GPU (CUDA_VISIBLE_DEVICES=""),
           as on a CPU-only machine; the export verifies ONNX against PyTorch there.
  ddp      the MLP and conv fp32 runs again under torchrun over --ddp-procs processes (every visible GPU by
           default; needs 2 or more), nccl on CUDA, gloo on the CPU.
  syncs    how often the host waits for the GPU during 2 epochs of the default MLP (grids on): CUDA's own count
           of implicit synchronizations (torch.cuda.set_sync_debug_mode) plus vaectl's explicit ones, per epoch
           and per step (target: no per-step wait; tests/test_training_syncs.py counts the same on the CPU).
  quality  --preset quality trained for each of --quality-epochs on the GPU, wall time and IWAE NLL (k=256, all
           10,000 test images, the scorer of bench/quality.py) against the CPU recipe's 225.99 nats
           (docs/benchmarks.md, 48 epochs, 837 s on 2 CPU cores). Needs real Fashion-MNIST (--data, or Debian's
           dataset-fashion-mnist); skipped on synthetic data.
Data: Fashion-MNIST from --data or /usr/share/datasets/fashion-mnist when present, else synthetic uint8 images
(throughput does not depend on the pixels). Without CUDA and without --device cpu: prints why and exits 0.
Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
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
CPU_RECIPE_NLL = 225.99  # docs/benchmarks.md, bench/quality.py (c): --preset quality, 48 epochs, 837 s on 2 CPU cores
MODES = {
    "fp32": (False, False),
    "amp": (True, False),
    "compile": (False, True),
    "amp+compile": (True, True),
}  # (amp, compile)
PARTS = ("speed", "amp", "export", "ddp", "syncs", "quality")


def write_idx(path: Path, array: np.ndarray) -> None:
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(d.to_bytes(4, "big") for d in array.shape)
    path.write_bytes(gzip.compress(header + array.tobytes(), compresslevel=1))


def fashion_mnist(data: Path | None):
    """The real dataset (train images, labels, test images, labels) or None."""
    directory = data or FASHION_DIR
    if not directory.is_dir():
        return None
    from vaectl.data import load_data

    ds = load_data(directory)
    if ds.train.shape[1:] != (1, 28, 28) or len(ds.train) < 60_000 or ds.train_labels is None:
        print(f"note: {directory} does not hold Fashion-MNIST-sized data; using synthetic images", file=sys.stderr)
        return None
    return ds.train[:, 0], ds.train_labels, ds.test[:, 0], ds.test_labels


def prepare_data(work: Path, n: int, real) -> tuple[Path, str]:
    """An IDX folder of n training images (and n // 6 test images): the first of the real ones, or synthetic."""
    out = work / "data"
    out.mkdir(parents=True, exist_ok=True)
    n_test = max(1, n // 6)
    if real is not None:
        x, y, xt, yt = real
        arrays, source = (x[:n], y[:n], xt[:n_test], yt[:n_test]), f"Fashion-MNIST, first {n:,} train / {n_test:,} test"
    else:
        rng = np.random.default_rng(0)
        arrays = (
            rng.integers(0, 256, (n, 28, 28), dtype=np.uint8),
            rng.integers(0, 10, n, dtype=np.uint8),
            rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
            rng.integers(0, 10, n_test, dtype=np.uint8),
        )
        source = f"synthetic uint8 28x28 images, {n:,} train / {n_test:,} test"
    names = (
        "train-images-idx3-ubyte.gz",
        "train-labels-idx1-ubyte.gz",
        "t10k-images-idx3-ubyte.gz",
        "t10k-labels-idx1-ubyte.gz",
    )
    for name, array in zip(names, arrays):
        write_idx(out / name, array)
    return out, source


def read_metrics(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def epoch_figures(records: list[dict]) -> dict:
    """First epoch (start-up, compilation) apart; the median of the others is the steady-state figure."""
    later = records[1:] or records
    return {
        "first_s": records[0]["seconds"],
        "epoch_s": statistics.median(r["seconds"] for r in later),
        "img_s": statistics.median(r["images_per_sec"] for r in later),
        "val_loss": records[-1]["val_loss"],
    }


def train_run(out: Path, data: Path, arch: str, mode: str, args) -> dict:
    import torch

    from vaectl.training import TrainConfig, train

    amp, compile_ = MODES[mode]
    # every run compiles afresh, as its own `vaectl train` process would: the compiled graphs of earlier runs
    # would otherwise count towards dynamo's recompile limit, past which it silently runs eagerly
    torch._dynamo.reset()
    train(
        TrainConfig(
            out=str(out),
            data=str(data),
            epochs=args.epochs,
            batch_size=args.batch_size,
            seed=0,
            device=args.device,
            amp=amp,
            compile=compile_,
            grid_every=0,
        ),
        {"arch": arch},
        log=lambda m: None,
    )
    return epoch_figures(read_metrics(out))


def print_table(rows: list[tuple], header: tuple) -> None:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, tuple("-" * w for w in widths), *rows]:
        print("  ".join(str(c).ljust(w) if i == 0 else str(c).rjust(w) for i, (c, w) in enumerate(zip(row, widths))))
    print(flush=True)


def part_speed(work: Path, data: Path, args) -> dict:
    results = {}
    for arch in args.archs:
        for mode in args.modes:
            print(f"training {arch} {mode} ...", file=sys.stderr, flush=True)
            results[arch, mode] = train_run(work / f"{arch}-{mode}", data, arch, mode, args)
    rows = [
        (f"{arch} {mode}", f"{r['first_s']:.2f}", f"{r['epoch_s']:.3f}", f"{r['img_s']:,.0f}", f"{r['val_loss']:.2f}")
        for (arch, mode), r in results.items()
    ]
    print(
        f"speed: {args.epochs} epochs per row at batch {args.batch_size}; epoch s and img/s are the median of epochs 2.."
    )
    print_table(rows, ("model / flags", "epoch 1 s", "epoch s", "img/s", "val loss"))
    if ("mlp", "fp32") in results:
        best = min(r["epoch_s"] for (arch, _), r in results.items() if arch == "mlp")
        scale = 60_000 / args.images
        print(
            f"default MLP: fastest epoch {best:.3f} s on {args.images:,} images (x{scale:.2f} -> {best * scale:.3f} s "
            f"for 60,000; target < 1 s on one H100-class GPU)\n"
        )
    return results


def part_amp(results: dict, args, real: bool) -> None:
    print(
        "amp: validation loss after the last epoch, --amp against fp32 (target |diff| <= 0.5 nats)"
        + ("" if real else "; synthetic data, so only a smoke test of the comparison")
    )
    rows = []
    for arch in args.archs:
        if (arch, "fp32") in results and (arch, "amp") in results:
            fp32, amp = results[arch, "fp32"]["val_loss"], results[arch, "amp"]["val_loss"]
            rows.append(
                (arch, f"{fp32:.2f}", f"{amp:.2f}", f"{amp - fp32:+.2f}", "yes" if abs(amp - fp32) <= 0.5 else "NO")
            )
    print_table(rows, ("model", "fp32", "amp", "diff", "within 0.5"))


def part_export(work: Path, args) -> None:
    print(f"export: checkpoints trained on {args.device}, exported by a process that sees no GPU")
    for arch in args.archs:
        run = work / f"{arch}-fp32"
        if not (run / "best.pt").is_file():
            print(f"  {arch}: no fp32 run to export (add fp32 to --modes and speed to --only)")
            continue
        env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
        t0 = time.perf_counter()
        r = subprocess.run(
            [sys.executable, "-m", "vaectl.cli", "export", str(run), "--out", str(run / "onnx")],
            capture_output=True,
            text=True,
            env=env,
            timeout=600,
        )
        seconds = time.perf_counter() - t0
        print(f"  {arch}: exit {r.returncode} in {seconds:.1f} s (child process, torch import included)")
        for line in (r.stderr + r.stdout).splitlines():
            if "max abs diff" in line or line.startswith("error") or "Error" in line:
                print(f"    {line.strip()}")
    print(flush=True)


def part_ddp(work: Path, data: Path, args, single: dict) -> None:
    if args.ddp_procs < 2:
        print(f"ddp: skipped: {args.ddp_procs} process(es); DDP needs 2 or more (--ddp-procs, or more visible GPUs)\n")
        return
    backend = "nccl" if args.device.startswith("cuda") else "gloo"
    print(f"ddp: torchrun --nproc_per_node {args.ddp_procs} ({backend}), global batch {args.batch_size}, fp32")
    rows = []
    for arch in args.archs:
        out = work / f"ddp-{arch}"
        cmd = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node",
            str(args.ddp_procs),
            "-m",
            "vaectl.cli",
            "train",
            "--data",
            str(data),
            "--arch",
            arch,
            "--epochs",
            str(args.epochs),
            "--batch-size",
            str(args.batch_size),
            "--device",
            args.device.split(":")[0],
            "--grid-every",
            "0",
            "--out",
            str(out),
        ]
        print(f"training {arch} under torchrun ...", file=sys.stderr, flush=True)
        env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=1800, env=env)
        if r.returncode != 0:
            rows.append((arch, "failed", f"exit {r.returncode}", (r.stderr.strip().splitlines() or [""])[-1][:80], ""))
            continue
        f = epoch_figures(read_metrics(out))
        one = single.get((arch, "fp32"))
        rows.append(
            (
                arch,
                f"{f['epoch_s']:.3f}",
                f"{f['img_s']:,.0f}",
                f"{f['val_loss']:.2f}",
                f"{f['img_s'] / one['img_s']:.2f}x" if one else "-",
            )
        )
    print_table(rows, ("model", "epoch s", "img/s", "val loss", "vs 1 process"))


def part_syncs(work: Path, data: Path, args) -> None:
    if not args.device.startswith("cuda"):
        print(
            "syncs: skipped: CUDA counts its synchronizations; on the CPU, tests/test_training_syncs.py counts them\n"
        )
        return
    import warnings

    import torch

    from vaectl.training import TrainConfig, runtime, train

    explicit = []
    real_synchronize = runtime.synchronize

    def counting_synchronize(device):
        explicit.append(device)
        real_synchronize(device)

    out = work / "syncs"
    print("training mlp with CUDA's sync debug mode ...", file=sys.stderr, flush=True)
    runtime.synchronize = counting_synchronize
    torch.cuda.set_sync_debug_mode("warn")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            tcfg = TrainConfig(out=str(out), data=str(data), epochs=2, batch_size=args.batch_size, seed=0)
            train(dataclasses.replace(tcfg, device=args.device, grid_every=1), {"arch": "mlp"}, log=lambda m: None)
    finally:
        torch.cuda.set_sync_debug_mode("default")
        runtime.synchronize = real_synchronize
    implicit = [w for w in caught if "synchroniz" in str(w.message).lower()]
    steps = read_metrics(out)[-1]["step"]
    total = len(implicit) + len(explicit)
    print(
        f"syncs: 2 epochs of the default MLP ({steps} steps, grids on): {len(implicit)} implicit + {len(explicit)} "
        f"explicit host waits = {total / 2:.1f} an epoch, {total / steps:.3f} a step"
    )
    where = collections.Counter(f"{w.filename.split('site-packages/')[-1]}:{w.lineno}" for w in implicit)
    for place, count in where.most_common(8):
        print(f"  {count:>5}  {place}")
    print(flush=True)


def part_quality(work: Path, args) -> None:
    directory = args.data or FASHION_DIR
    from vaectl.models.presets import PRESETS
    from vaectl.training import TrainConfig, train
    from vaectl.training.eval_checkpoint import evaluate_checkpoint

    preset = PRESETS["quality"]
    print(
        f"quality: --preset quality on {args.device}, full Fashion-MNIST ({directory}); IWAE k={args.k} on all "
        f"test images, last.pt; the CPU recipe reached {CPU_RECIPE_NLL} in 48 epochs, 837 s on 2 CPU cores"
    )
    rows = []
    for epochs in args.quality_epochs:
        out = work / f"quality-{epochs}"
        print(f"training --preset quality for {epochs} epochs ...", file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        train(
            TrainConfig(
                out=str(out),
                data=str(directory),
                epochs=epochs,
                device=args.device,
                amp=args.quality_amp,
                grid_every=0,
                seed=0,
                **preset.train,
            ),
            dict(preset.model),
            log=lambda m: None,
        )
        wall = time.perf_counter() - t0
        report = evaluate_checkpoint(out, k=args.k, last=True)
        rows.append(
            (
                f"{epochs} epochs" + (" amp" if args.quality_amp else ""),
                f"{wall:.0f}",
                f"{report.neg_elbo:.2f}",
                f"{report.iwae_nll:.2f}",
                "yes" if report.iwae_nll <= CPU_RECIPE_NLL else "no",
            )
        )
    print_table(rows, ("run", "wall s", "-ELBO", f"IWAE k={args.k}", f"<= {CPU_RECIPE_NLL}"))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda", help="cuda, cuda:N, or cpu for a dry run of the same code [cuda]")
    parser.add_argument("--data", type=Path, default=None, help=f"Fashion-MNIST IDX folder [{FASHION_DIR} if present]")
    parser.add_argument("--images", type=int, default=60_000, help="training images for speed/ddp [60000]")
    parser.add_argument("--epochs", type=int, default=3, help="epochs per speed/ddp run; the first is warm-up [3]")
    parser.add_argument("--batch-size", type=int, default=128, help="global batch size [128, vaectl's default]")
    parser.add_argument("--archs", default="mlp,conv", help="comma-separated [mlp,conv]")
    parser.add_argument("--modes", default=",".join(MODES), help=f"comma-separated, of {', '.join(MODES)} [all]")
    parser.add_argument("--only", default=",".join(PARTS), help=f"comma-separated parts, of {', '.join(PARTS)} [all]")
    parser.add_argument("--ddp-procs", type=int, default=None, help="processes for ddp [every visible GPU]")
    parser.add_argument("--quality-epochs", default="48", help="comma-separated epoch counts for quality [48]")
    parser.add_argument("--quality-amp", action="store_true", help="train the quality runs with --amp")
    parser.add_argument("--k", type=int, default=256, help="IWAE samples for quality [256]")
    parser.add_argument("--keep", type=Path, default=None, help="keep the run directories here [a temp dir]")
    args = parser.parse_args(argv)
    args.archs, args.modes = args.archs.split(","), args.modes.split(",")
    parts = args.only.split(",")
    args.quality_epochs = [int(e) for e in args.quality_epochs.split(",")]
    unknown = [m for m in args.modes if m not in MODES] + [p for p in parts if p not in PARTS]
    if unknown:
        parser.error(f"unknown mode/part {', '.join(unknown)}")

    import torch

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print(
            f"gpu_speed: skipped: no CUDA device here (torch {torch.__version__}). Run it on a CUDA machine, "
            "or `--device cpu --images 2000 --epochs 2` for a dry run of the same code on the CPU."
        )
        return 0
    if args.ddp_procs is None:
        args.ddp_procs = torch.cuda.device_count() if args.device.startswith("cuda") else 1
    real = fashion_mnist(args.data)
    import onnxruntime

    print("vaectl GPU training benchmark (bench/gpu_speed.py)")
    if args.device.startswith("cuda"):
        p = torch.cuda.get_device_properties(torch.device(args.device))
        print(
            f"  device:    {p.name}, {p.total_memory / 2**30:.0f} GiB, compute capability {p.major}.{p.minor}; "
            f"{torch.cuda.device_count()} visible GPU(s)"
        )
    else:
        print(f"  device:    {args.device} (a dry run of the CUDA benchmark's code; figures are not GPU figures)")
    print(
        f"  software:  Python {platform.python_version()}, torch {torch.__version__} (CUDA {torch.version.cuda}), "
        f"onnxruntime {onnxruntime.__version__}; {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}"
    )
    with tempfile.TemporaryDirectory(prefix="vaectl-gpu-bench-") as tmp:
        work = args.keep or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        data, source = prepare_data(work, args.images, real)
        print(f"  data:      {source}\n", flush=True)
        results = part_speed(work, data, args) if "speed" in parts else {}
        if "amp" in parts:
            part_amp(results, args, real is not None)
        if "export" in parts:
            part_export(work, args)
        if "ddp" in parts:
            part_ddp(work, data, args, results)
        if "syncs" in parts:
            part_syncs(work, data, args)
        if "quality" in parts:
            if real is None:
                print(
                    "quality: skipped: needs real Fashion-MNIST (--data DIR, or apt-get install dataset-fashion-mnist)"
                )
            else:
                part_quality(work, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
