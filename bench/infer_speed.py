"""onnxruntime vs PyTorch on the CPU, same weights: decoder speed, whole-process cost, install size.

    python bench/infer_speed.py                          # trains a 1-epoch conv model first (--arch mlp: the default MLP)
    python bench/infer_speed.py --run runs/vae           # an existing run directory
    python bench/infer_speed.py --base-venv /tmp/base    # also size a base-only venv:
        python3 -m venv /tmp/base && /tmp/base/bin/pip install .
    python bench/infer_speed.py --base-venv /tmp/base --cpu-torch-venv /tmp/cputorch   # against a real CPU-only torch:
        python3 -m venv /tmp/cputorch && /tmp/cputorch/bin/pip install CPU_ONLY_TORCH_WHEEL numpy pillow
        (the "+cpu" torch wheel from PyTorch's CPU package index; on this machine /opt/wheels/torch-2.13.0+cpu-*.whl)

Measures (one run, prints figures; not a timed test):
  1. decoder latency at batch 1 (median) and throughput at batch 256, for the exported float32, fp16
     and int8 graphs through onnxruntime and for the PyTorch decoder in eager mode;
  2. whole-process wall time and peak RSS of `vaectl generate -n 64 --out grid.png` versus a script
     that loads the checkpoint with torch and saves the same grid;
  3. site-packages size of the base install versus torch (+ torchvision and their dependencies).
Targets: ORT float32 >= 2x PyTorch at batch 1 and >= 1.2x at batch 256; whole process <= 0.3x
PyTorch's wall time and peak memory; base install <= 1/5 of a CPU-only torch install.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time
from importlib import metadata
from pathlib import Path

import numpy as np

TORCH_SCRIPT = """
import sys, torch
from vaectl.models.checkpoint import Checkpoint
from vaectl.files import save_grid, to_uint8_images
model = Checkpoint.load(sys.argv[1]).model()
z = torch.randn(64, model.config.latent_dim, generator=torch.Generator().manual_seed(0))
with torch.no_grad():
    images = torch.sigmoid(model.decoder(z)).numpy()
save_grid(sys.argv[2], to_uint8_images(images), nrow=8)
"""

CUDA_DISTS = ("nvidia-", "cuda-", "triton")


def machine() -> str:
    from vaectl.doctor.probe import cpu_name

    cpu = cpu_name()
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    return f"{cpu}; {os.cpu_count()} logical CPUs; load average {load}; {platform.system()} {platform.release()}"


def time_call(fn, seconds: float, min_runs: int) -> list[float]:
    for _ in range(3):
        fn()
    times, start = [], time.perf_counter()
    while len(times) < min_runs or time.perf_counter() - start < seconds:
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times


def decoder_speed(graphs: dict[str, Path], run_dir: Path, latent_dim: int, seconds: float) -> dict[str, tuple]:
    """{name: (batch-1 median ms, batch-1 fastest ms, batch-256 images per second)}.

    PyTorch goes first and each onnxruntime session is dropped before the next is made, so no idle
    thread pool of one contender competes with another for the cores.
    """
    import gc

    import torch

    from vaectl.infer import Decoder
    from vaectl.models.checkpoint import Checkpoint

    rng = np.random.default_rng(0)
    z1, z256 = rng.standard_normal((1, latent_dim), np.float32), rng.standard_normal((256, latent_dim), np.float32)
    results = {}
    model = Checkpoint.load(run_dir).model()
    t1, t256 = torch.from_numpy(z1), torch.from_numpy(z256)

    def eager(z, decoder=model.decoder):
        with torch.inference_mode():
            return torch.sigmoid(decoder(z))

    lat = time_call(lambda: eager(t1), seconds, 200)
    thr = time_call(lambda: eager(t256), seconds, 10)
    results["pytorch eager fp32"] = (statistics.median(lat) * 1e3, min(lat) * 1e3, 256 / statistics.median(thr))
    del model
    for name, path in graphs.items():
        sess = Decoder(path).session
        lat = time_call(lambda s=sess: s.run(["image"], {"z": z1}), seconds, 200)
        thr = time_call(lambda s=sess: s.run(["image"], {"z": z256}), seconds, 10)
        results[f"onnxruntime {name}"] = (statistics.median(lat) * 1e3, min(lat) * 1e3, 256 / statistics.median(thr))
        del sess
        gc.collect()
    return results


# Started from a lean interpreter: a child forked from this (torch-loaded) process would report this
# process's RSS as its own peak, since Linux counts the pre-exec copy in ru_maxrss.
MEASURE = """
import json, os, subprocess, sys, time
cmd = json.loads(sys.argv[1])
t0 = time.perf_counter()
proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
_, status, usage = os.wait4(proc.pid, 0)
wall = time.perf_counter() - t0
if os.waitstatus_to_exitcode(status) != 0:
    sys.exit(cmd[0] + " failed: " + proc.stderr.read().decode()[-500:])
print(json.dumps([wall, usage.ru_maxrss / 1024]))
"""


def run_measured(cmd: list[str], cwd: Path) -> tuple[float, float]:
    """(wall seconds, peak RSS in MiB) of one child process."""
    import json

    r = subprocess.run([sys.executable, "-S", "-c", MEASURE, json.dumps(cmd)], cwd=cwd, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(r.stderr[-800:])
    wall, rss = json.loads(r.stdout)
    return wall, rss


def whole_process(decoder: Path, run_dir: Path, vaectl_bins: dict[str, str], repeats: int, work: Path) -> dict:
    cmds = {
        f"vaectl generate ({label})": [
            exe,
            "generate",
            "--decoder",
            str(decoder),
            "-n",
            "64",
            "--seed",
            "0",
            "--out",
            "grid.png",
        ]
        for label, exe in vaectl_bins.items()
    }
    cmds["torch script"] = [sys.executable, "-c", TORCH_SCRIPT, str(run_dir), "grid_torch.png"]
    samples = {k: [] for k in cmds}
    for _ in range(repeats):  # interleaved, so background load hits every contender alike
        for k, cmd in cmds.items():
            samples[k].append(run_measured(cmd, work))
    return {k: (statistics.median(w for w, _ in v), statistics.median(m for _, m in v)) for k, v in samples.items()}


def dist_size(name: str) -> int:
    try:
        files = metadata.distribution(name).files or []
    except metadata.PackageNotFoundError:
        return 0
    return sum(f.size or 0 for f in files)


def torch_closure() -> list[str]:
    """torch, torchvision and their installed requirements, recursively (extras skipped)."""
    seen, todo = [], ["torch", "torchvision"]
    while todo:
        name = todo.pop()
        key = name.lower().replace("_", "-")
        if key in seen:
            continue
        try:
            reqs = metadata.requires(name) or []
        except metadata.PackageNotFoundError:
            continue
        seen.append(key)
        for req in reqs:
            if "extra ==" in req:
                continue
            dep = req.split(";")[0].split("[")[0]
            for sep in "<>=!~ (":
                dep = dep.split(sep)[0]
            todo.append(dep.strip())
    return seen


def du(path: Path) -> int:
    total = 0
    for root, _, files in os.walk(path):
        for f in files:
            p = os.path.join(root, f)
            if not os.path.islink(p):
                total += os.path.getsize(p)
    return total


def venv_size(venv: Path, skip: tuple[str, ...] = ()) -> int:
    """Bytes in a venv's site-packages, without pip/setuptools (and any `skip` top-level names)."""
    site = next((venv / "lib").glob("python3*/site-packages"))
    drop = ("pip", "setuptools", "pkg_resources", "_distutils_hack") + skip
    return du(site) - sum(
        du(p) if p.is_dir() else p.stat().st_size for p in site.iterdir() if p.name.split("-")[0].lower() in drop
    )


def sizes(base_venv: Path | None, cpu_torch_venv: Path | None = None) -> list[tuple[str, float]]:
    mib = 1024**2
    rows = []
    if base_venv is not None:
        rows.append(
            (f"base install: site-packages of {base_venv} (without pip/setuptools)", venv_size(base_venv) / mib)
        )
    if cpu_torch_venv is not None:  # a real CPU-only torch wheel, the fair comparison
        rows.append(
            (
                f"CPU-only torch wheel + numpy + Pillow (what the torch script needs): {cpu_torch_venv}",
                venv_size(cpu_torch_venv) / mib,
            )
        )
        return rows
    closure = torch_closure()
    cpu_side = [d for d in closure if not d.startswith(CUDA_DISTS)]
    cuda_side = [d for d in closure if d.startswith(CUDA_DISTS)]
    torch_lib = Path(sysconfig.get_paths()["purelib"]) / "torch" / "lib"
    cuda_in_torch = sum(p.stat().st_size for p in torch_lib.glob("*cuda*")) + sum(
        p.stat().st_size for p in torch_lib.glob("*nvshmem*")
    )
    cpu_total = sum(dist_size(d) for d in cpu_side)
    rows.append(
        (
            f"torch+torchvision+deps, this venv's CUDA build, CUDA wheels excluded ({len(cpu_side)} dists)",
            cpu_total / mib,
        )
    )
    rows.append(
        (
            "  same, minus the CUDA libraries inside torch/lib (~ a CPU-only torch install)",
            (cpu_total - cuda_in_torch) / mib,
        )
    )
    rows.append(
        (f"  (CUDA wheels it also pulled in: {len(cuda_side)} dists)", sum(dist_size(d) for d in cuda_side) / mib)
    )
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--run", type=Path, default=None, help="A run directory; default: train a 1-epoch model.")
    ap.add_argument("--arch", choices=["conv", "mlp"], default="conv", help="Architecture of the trained model.")
    ap.add_argument("--base-venv", type=Path, default=None, help="A venv with only `pip install vaectl` in it.")
    ap.add_argument(
        "--cpu-torch-venv",
        type=Path,
        default=None,
        help="A venv with a CPU-only torch wheel (+ numpy, Pillow) to compare install sizes against.",
    )
    ap.add_argument("--seconds", type=float, default=2.0, help="Time per speed measurement.")
    ap.add_argument("--repeats", type=int, default=5, help="Whole-process runs per contender (median).")
    args = ap.parse_args()

    import onnxruntime
    import torch

    from vaectl import __version__
    from vaectl.errors import VerificationError
    from vaectl.export import export_model
    from vaectl.training import TrainConfig, train

    with tempfile.TemporaryDirectory(prefix="vaectl-bench-") as tmp:
        tmp = Path(tmp)
        run_dir = args.run
        if run_dir is None:
            run_dir = tmp / "run"
            model = dict(arch="conv") if args.arch == "conv" else dict(arch="mlp", latent_dim=2, hidden=(512, 256))
            print(f"training a 1-epoch {args.arch} model on mnist-sample ...", file=sys.stderr)
            train(
                TrainConfig(out=str(run_dir), epochs=1, grid_every=0, seed=0, device="cpu"), model, log=lambda m: None
            )
        out = tmp / "onnx"
        notes = []
        try:
            res = export_model(run_dir, out, fp16=True, int8=True, log=lambda m: None)
        except VerificationError as e:  # int8 can miss its tolerance on a barely trained model
            notes.append(f"int8 variant not measured: {e}")
            res = export_model(run_dir, out, fp16=True, log=lambda m: None)
        graphs = {"fp32": res.decoder, **res.variants}
        from vaectl.infer import Decoder

        latent_dim = Decoder(res.decoder).latent_dim
        graph_sizes = ", ".join(f"{k} {p.stat().st_size / 1024:.0f} KiB" for k, p in graphs.items())
        speed = decoder_speed(graphs, run_dir, latent_dim, args.seconds)
        bins = {"this venv": str(Path(sys.executable).parent / "vaectl")}
        if args.base_venv is not None:
            bins["base venv"] = str(args.base_venv / "bin" / "vaectl")
        proc = whole_process(res.decoder, run_dir, bins, args.repeats, tmp)
        size_rows = sizes(args.base_venv, args.cpu_torch_venv)

    print(
        f"\nvaectl {__version__}; onnxruntime {onnxruntime.__version__}; torch {torch.__version__} "
        f"({torch.get_num_threads()} threads); Python {platform.python_version()}"
    )
    print(f"machine: {machine()}")
    print(
        f"model: {args.run or f'1-epoch {args.arch} on mnist-sample'}; latent {latent_dim}; decoder files: {graph_sizes}"
    )
    print("\n| decoder | batch 1 latency, median (ms) | batch 1, fastest (ms) | batch 256 throughput (images/s) |")
    print("|---|---:|---:|---:|")
    for name, (lat, fastest, thr) in speed.items():
        print(f"| {name} | {lat:.3f} | {fastest:.3f} | {thr:,.0f} |")
    ref_lat, _, ref_thr = speed["pytorch eager fp32"]
    ort_lat, _, ort_thr = speed["onnxruntime fp32"]
    print(
        f"\nonnxruntime fp32 vs PyTorch: {ref_lat / ort_lat:.2f}x at batch 1 (target >= 2x), "
        f"{ort_thr / ref_thr:.2f}x at batch 256 (target >= 1.2x)"
    )
    print(f"\n| whole process: 64 samples -> grid.png | wall time (s, median of {args.repeats}) | peak RSS (MiB) |")
    print("|---|---:|---:|")
    for name, (wall, rss) in proc.items():
        print(f"| {name} | {wall:.2f} | {rss:.0f} |")
    t_wall, t_rss = proc["torch script"]
    for name, (wall, rss) in proc.items():
        if name != "torch script":
            print(
                f"{name}: {wall / t_wall:.2f}x the torch script's wall time, {rss / t_rss:.2f}x its peak memory "
                "(targets <= 0.3x)"
            )
    print("\n| install | site-packages (MiB) |")
    print("|---|---:|")
    for name, mib in size_rows:
        print(f"| {name} | {mib:,.0f} |")
    if args.base_venv is not None:
        base, cpu_torch = size_rows[0][1], size_rows[1 if args.cpu_torch_venv else 2][1]
        what = "CPU-only torch install" if args.cpu_torch_venv else "CPU-only torch estimate"
        print(f"base install / {what}: {base / cpu_torch:.3f} (target <= 0.2)")
    for note in notes:
        print(f"note: {note}")


if __name__ == "__main__":
    main()
