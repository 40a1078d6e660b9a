"""Where a run executes: the device, the DistributedDataParallel process group, Ctrl-C handling, and the few
places where the host waits for the device (synchronize, to_host, the DDP all-reduces that return values)."""

from __future__ import annotations

import contextlib
import math
import os
import signal
from dataclasses import dataclass

import torch
import torch.distributed as dist

from ..errors import UserInputError, arg
from ..threads import choose_threads


def pick_device(name: str) -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UserInputError(f"unknown {arg('device')} {name!r}; use auto, cpu, cuda, cuda:N or mps") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserInputError(f"{arg('device', name)}: CUDA is not available on this machine")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise UserInputError(f"{arg('device', name)}: MPS is not available on this machine")
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    return device


@dataclass(frozen=True)
class Processes:
    """This process's place in the run: `world` processes (torchrun sets WORLD_SIZE and RANK), one device each."""

    device: torch.device
    world: int = 1
    rank: int = 0

    @property
    def ddp(self) -> bool:
        return self.world > 1

    @property
    def main(self) -> bool:  # only the main process writes files and logs
        return self.rank == 0


def start_processes(device_name: str) -> Processes:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    device = pick_device(device_name)
    if world == 1:
        return Processes(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    return Processes(device, world, dist.get_rank())


def stop_processes(procs: Processes) -> None:
    if procs.ddp:
        dist.barrier()  # rank 0 may still be saving the last epoch
        dist.destroy_process_group()


def synchronize(device: torch.device) -> None:
    """Wait until the device has finished its queued work (a no-op on the CPU, which has no queue)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def to_host(value, device: torch.device):
    """A copy in host memory of every tensor in `value` (nested dicts, lists, tuples), made with one wait for
    the device instead of one per tensor: non-blocking copies, then synchronize."""

    def copy(v):
        if isinstance(v, torch.Tensor):
            return v.detach().to("cpu", non_blocking=True, copy=True)
        if isinstance(v, dict):
            return {k: copy(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return type(v)(copy(x) for x in v)
        return v

    host = copy(value)
    synchronize(device)
    return host


def all_reduce_sums(sums: list, device: torch.device) -> list:
    """Sum the running [loss, recon, kl, images] sums over all DDP ranks (on `device`: nccl needs CUDA tensors)."""
    t = torch.tensor(sums, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return [*t[:3].tolist(), int(t[3])]


def any_rank(flags: list[bool], device: torch.device) -> list[bool]:
    """Each flag OR-ed over all ranks, so every rank takes the same branch (else the others hang in an all-reduce)."""
    t = torch.tensor([float(f) for f in flags], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return [v > 0 for v in t.tolist()]


def agree(diverged_at: int | None, stop: bool, device: torch.device) -> tuple[int | None, bool]:
    """What all ranks decide together, in one all-reduce: the earliest step at which a rank's loss became
    non-finite (None: none did), and whether any rank was asked to stop (Ctrl-C)."""
    t = torch.tensor(
        [-math.inf if diverged_at is None else -diverged_at, float(stop)], dtype=torch.float64, device=device
    )
    dist.all_reduce(t, op=dist.ReduceOp.MAX)  # the max of -step is the earliest step
    earliest, stop_any = t.tolist()
    return (None if earliest == -math.inf else int(-earliest)), stop_any > 0


class CtrlC:
    """Ctrl-C sets a flag; the loop finishes its step, saves, and exits 130. A second Ctrl-C stops at once."""

    def __init__(self):
        self.requested = False
        self._old = None

    def __enter__(self):
        if hasattr(signal, "SIGINT"):
            try:
                self._old = signal.signal(signal.SIGINT, self._handle)
            except ValueError:  # not the main thread
                self._old = None
        return self

    def _handle(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __exit__(self, *exc):
        if self._old is not None:
            signal.signal(signal.SIGINT, self._old)


class Interrupted(Exception):
    """Raised after a Ctrl-C once last.pt is saved; the CLI exits 130."""


def set_threads(threads: int | None) -> int:
    """Torch's CPU threads for this run: `threads`, else VAECTL_THREADS, else the free cores (vaectl/threads.py).
    Returns the count. The inter-op pool, which runs only forked graph parts and the loop has none, gets one
    thread; torch lets that be set once per process, before any parallel work, so a second run keeps it."""
    n = choose_threads(threads)
    torch.set_num_threads(n)
    with contextlib.suppress(RuntimeError):  # already set, or parallel work has started in this process
        torch.set_num_interop_threads(1)
    return n
