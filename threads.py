"""How many CPU threads vaectl computes on: torch in `train` and `export`, onnxruntime in inference.

One rule everywhere: `--threads N` where a command has it, else the VAECTL_THREADS environment variable, else
the cores that are free now: the cores this process may run on less the load average of the last minute,
rounded, and at least 1. On a machine of one's own that is every core. On a busy or shared one it is fewer,
because torch's and onnxruntime's threads meet at the end of every operation and wait there for the slowest:
with more threads than free cores, one descheduled thread holds up all the others (docs/benchmarks.md,
bench/threads.py). The count changes speed, not results (the same metrics with 1 and 2 threads).

Torch-free, like the rest of the core: the inference path reads it too.
"""

from __future__ import annotations

import os

from .errors import UserInputError, arg

ENV = "VAECTL_THREADS"


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity where the OS tells it, else all of them)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def load_average() -> float | None:
    """The number of runnable processes, averaged over the last minute; None where the OS does not say."""
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):  # Windows has no load average
        return None


def free_cores(cores: int | None = None, load: float | None = None) -> int:
    """The usable cores less the load, rounded, at least 1 (all of them where the load is unknown)."""
    cores = usable_cores() if cores is None else cores
    load = load_average() if load is None else load
    if load is None:
        return cores
    return max(1, min(cores, cores - round(load)))


def check_threads(threads) -> int:
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise UserInputError(f"{arg('threads')} must be a whole number of at least 1, got {threads!r}")
    return threads


def choose_threads(threads: int | None = None) -> int:
    """`threads` when given, else VAECTL_THREADS when set, else free_cores()."""
    if threads is not None:
        return check_threads(threads)
    env = os.environ.get(ENV, "").strip()
    if env:
        if not env.isdigit() or int(env) < 1:
            raise UserInputError(f"{ENV}={env!r}: give a whole number of threads, at least 1")
        return int(env)
    return free_cores()
