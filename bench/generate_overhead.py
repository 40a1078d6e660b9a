"""`vaectl generate -n 64` against a bare onnxruntime script that does the same job: whole-process wall time.

    python bench/generate_overhead.py EXPORT_DIR [--repeats 15]

EXPORT_DIR is what `vaectl export` wrote (e.g. runs/demo/onnx after the README's first commands). Three
commands run in fresh processes, taking turns, each --repeats times:
  vaectl generate:           `vaectl generate --decoder EXPORT_DIR -n 64 --seed 0 --out a.png` (the fitted
                             prior when the decoder carries one: a mixture draw, then the decoder);
  vaectl generate (normal):  the same with `--prior normal` (z ~ N(0, I));
  bare onnxruntime script:   `python -c` with onnxruntime, numpy and Pillow only: a session on decoder.onnx,
                             64 latents from numpy, one run, an 8 x 8 grid saved as PNG.
Prints the median wall time of each and its ratio to the bare script (target: vaectl generate <= 1.2x).
Asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BARE = """
import sys
import numpy as np, onnxruntime as ort
from PIL import Image
sess = ort.InferenceSession(sys.argv[1], providers=["CPUExecutionProvider"])
z_input = sess.get_inputs()[0]
z = np.random.default_rng(0).standard_normal((64, z_input.shape[1])).astype(np.float32)
x = sess.run(None, {z_input.name: z})[0]  # (64, C, H, W) in [0, 1]
x = np.clip(np.rint(x * 255), 0, 255).astype(np.uint8)[:, 0]  # (64, H, W)
n, h, w = x.shape
grid = x.reshape(8, 8, h, w).transpose(0, 2, 1, 3).reshape(8 * h, 8 * w)
Image.fromarray(grid).save(sys.argv[2])
"""


# Byte-code caching on, as in any install: with PYTHONDONTWRITEBYTECODE set, every run would compile vaectl's
# modules from source (~0.1 s here), a cost the bare script does not have and an installed vaectl does not pay.
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def timed(command: list[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=ENV)
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("export_dir", type=Path, help="what `vaectl export` wrote")
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()
    decoder = args.export_dir / "decoder.onnx"
    if not decoder.is_file():
        sys.exit(f"{decoder}: no such file (give what `vaectl export` wrote)")
    vaectl = [sys.executable, "-m", "vaectl.cli", "generate", "--decoder", str(args.export_dir), "-n", "64"]
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        rows = {
            "vaectl generate": vaectl + ["--seed", "0", "--out", str(out / "a.png")],
            "vaectl generate --prior normal": vaectl
            + ["--seed", "0", "--prior", "normal", "--out", str(out / "b.png")],
            "bare onnxruntime script": [sys.executable, "-c", BARE, str(decoder), str(out / "c.png")],
        }
        times: dict[str, list[float]] = {name: [] for name in rows}
        for command in rows.values():  # one warm-up each: the page cache, not the first read, is measured
            timed(command)
        for _ in range(args.repeats):
            for name, command in rows.items():
                times[name].append(timed(command))
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    print(f"{args.repeats} runs each, taking turns; {os.cpu_count()} CPUs, load average {load} at the end")
    bare = statistics.median(times["bare onnxruntime script"])
    print(f"{'command':<32} {'median (s)':>10} {'vs bare':>8}")
    for name, values in times.items():
        median = statistics.median(values)
        print(f"{name:<32} {median:>10.3f} {median / bare:>7.2f}x")


if __name__ == "__main__":
    main()
