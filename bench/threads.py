"""CPU threads against a busy machine: the README's first `vaectl train` at 1, 2 and the default threads, with
the machine as it is and with one busy-looping process per core competing.

    python bench/threads.py [--epochs 5] [--threads 1,2,default] [--settle 60] [--repeats 1]
    python bench/threads.py --first-commands [--threads N]

Each row is `python -m vaectl.cli train --out TMP --epochs E --grid-every 0 [--threads N]` (the embedded digits,
the default model and schedule) in a fresh process, without VAECTL_THREADS in its environment: wall time of the
whole command (start-up, data, training, validation, checkpoints), and the median and the range of the epochs'
images/s from its metrics.jsonl (training steps only). "default" is vaectl's own choice (vaectl/threads.py: the
usable cores less the load average, at least 1), shown with the count it came to at the start of the row.
The "busy" rows run with one `while True: pass` Python process per usable core, started --settle seconds
before the first busy row so that the load average has seen them, and stopped after the last.
The last column is the final validation loss: the thread count changes the speed, not the result.

--first-commands instead times the README's first commands once, as they stand after the install (train 40
epochs, export with the prior's fit, generate 64 images), each step's wall time and the total; with the default
threads, or with `--threads N` as VAECTL_THREADS=N.
Prints figures; asserts nothing.
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

SPIN = "while True: pass"


def vaectl(*args: str) -> list[str]:
    return [sys.executable, "-m", "vaectl.cli", *args]


def child_env(threads: str | None = None) -> dict:
    """This environment without VAECTL_THREADS, or with it set to `threads` (a count)."""
    env = dict(os.environ)
    env.pop("VAECTL_THREADS", None)
    if threads is not None:
        env["VAECTL_THREADS"] = threads
    return env


def load() -> float:
    return os.getloadavg()[0]


def train_row(threads: str, epochs: int, tmp: Path) -> dict:
    """One `vaectl train` in a fresh process; its wall time and its epochs' images/s."""
    from vaectl.threads import free_cores

    out = tmp / f"run-{threads}-{time.monotonic_ns()}"
    flags = [] if threads == "default" else ["--threads", threads]
    chosen = free_cores() if threads == "default" else int(threads)
    load_at_start = load()
    t0 = time.perf_counter()
    r = subprocess.run(
        vaectl("train", "--out", str(out), "--epochs", str(epochs), "--grid-every", "0", *flags),
        capture_output=True,
        text=True,
        env=child_env(),
    )
    wall = time.perf_counter() - t0
    if r.returncode != 0:
        sys.exit(f"vaectl train failed:\n{r.stderr}")
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    speeds = [rec["images_per_sec"] for rec in records]
    return {
        "threads": f"default ({chosen})" if threads == "default" else threads,
        "load": load_at_start,
        "wall": wall,
        "median": statistics.median(speeds),
        "low": min(speeds),
        "high": max(speeds),
        "val_loss": records[-1]["val_loss"],
    }


def start_spinners(n: int) -> list[subprocess.Popen]:
    return [subprocess.Popen([sys.executable, "-c", SPIN]) for _ in range(n)]


def stop_spinners(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        p.kill()
    for p in procs:
        p.wait()


def threads_table(args, tmp: Path) -> None:
    from vaectl.threads import usable_cores

    cores = usable_cores()
    print("| machine | threads | load avg at start | wall (s) | images/s, median (min-max) | final val loss |")
    print("| --- | --- | ---: | ---: | ---: | ---: |")
    for state in ("as it is", f"+ {cores} busy processes"):
        spinners = start_spinners(cores) if state != "as it is" else []
        try:
            if spinners:
                time.sleep(args.settle)
            for _ in range(args.repeats):
                for threads in args.threads.split(","):
                    row = train_row(threads.strip(), args.epochs, tmp)
                    print(
                        f"| {state} | {row['threads']} | {row['load']:.1f} | {row['wall']:.1f} | "
                        f"{row['median']:,.0f} ({row['low']:,.0f}-{row['high']:,.0f}) | {row['val_loss']:.4f} |",
                        flush=True,
                    )
        finally:
            stop_spinners(spinners)


def first_commands(tmp: Path, threads: str | None) -> None:
    run = tmp / "demo"
    steps = [
        ("train", vaectl("train", "--out", str(run))),
        ("export", vaectl("export", str(run), "--out", str(run / "onnx"))),
        ("generate", vaectl("generate", "--decoder", str(run / "onnx"), "-n", "64", "--seed", "0", "--scale", "3",
                            "--out", str(tmp / "samples.png"))),
    ]  # fmt: skip
    total = 0.0
    print(f"threads: {threads or 'the default'}; load average at start: {load():.1f}")
    for name, cmd in steps:
        t0 = time.perf_counter()
        r = subprocess.run(cmd, capture_output=True, text=True, env=child_env(threads))
        seconds = time.perf_counter() - t0
        if r.returncode != 0:
            sys.exit(f"vaectl {name} failed:\n{r.stderr}")
        total += seconds
        print(f"{name:<9}{seconds:7.1f} s", flush=True)
    print(f"{'total':<9}{total:7.1f} s (load average at the end: {load():.1f})")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--epochs", type=int, default=5, help="epochs per training row [5; the README's command: 40]")
    p.add_argument(
        "--threads",
        default="1,2,default",
        help="comma-separated counts, 'default' for vaectl's choice; with --first-commands one count (VAECTL_THREADS)",
    )
    p.add_argument("--settle", type=float, default=60, help="seconds the busy processes run before the busy rows")
    p.add_argument("--repeats", type=int, default=1, help="rows per thread count and machine state")
    p.add_argument("--first-commands", action="store_true", help="time the README's first commands instead")
    args = p.parse_args()
    import torch

    from vaectl.doctor.probe import cpu_name
    from vaectl.threads import usable_cores

    print(
        f"{cpu_name()}, {os.cpu_count()} logical cores ({usable_cores()} usable), "
        f"Python {platform.python_version()}, torch {torch.__version__}"
    )
    with tempfile.TemporaryDirectory(prefix="vaectl-threads-") as tmp:
        if args.first_commands:
            first_commands(Path(tmp), args.threads if args.threads.isdigit() else None)
        else:
            threads_table(args, Path(tmp))


if __name__ == "__main__":
    main()
