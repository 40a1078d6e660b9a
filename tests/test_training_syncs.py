"""The training loop does not make the host wait for the device at every step: counted over a 2-epoch run.

On a GPU every read of a device value (`.item()`, `bool(t)`, `.tolist()`, a blocking copy to the host, ...)
stalls the host until the device has finished its queued work. The counter below wraps each tensor method
that does so and counts the calls made during training, validation and saving. On the CPU every tensor is
a host tensor, so it follows these rules to count what would stall a GPU:
- a read of a tensor's values counts, unless its memory is a host copy (made by .cpu() or .to("cpu")
  earlier, and still alive: reading it, or a view of it, waits for nothing);
- .cpu() and a blocking .to("cpu") count (a non-blocking copy does not wait; the wait comes with
  vaectl.training.runtime.synchronize, which counts);
- .to(device) with a torch.device is taken for what it is in vaectl's code: a copy onto the training device.
"""

from __future__ import annotations

import collections
import dataclasses
import math
import sys
import time
import weakref

import pytest

torch = pytest.importorskip("torch")

from conftest import make_tiny_idx_dir  # noqa: E402

from vaectl.training import TrainConfig, runtime, train  # noqa: E402

READS = ("item", "tolist", "__bool__", "__float__", "__int__", "__index__", "numpy", "__array__")


class SyncCounter:
    def __init__(self, monkeypatch):
        self.calls: collections.Counter = collections.Counter()
        self._host: collections.Counter = collections.Counter()  # the memory of live host copies (its address)
        for name in READS:
            monkeypatch.setattr(torch.Tensor, name, self._wrap(name, getattr(torch.Tensor, name)))
        monkeypatch.setattr(torch.Tensor, "cpu", self._wrap("cpu", torch.Tensor.cpu, host_result=True))
        monkeypatch.setattr(torch.Tensor, "to", self._wrap_to(torch.Tensor.to))
        real_sync = runtime.synchronize

        def synchronize(device):
            self.calls["synchronize"] += 1
            real_sync(device)

        monkeypatch.setattr(runtime, "synchronize", synchronize)

    @property
    def total(self) -> int:
        return sum(self.calls.values())

    def _is_host(self, t) -> bool:
        return t.numel() > 0 and self._host[t.untyped_storage().data_ptr()] > 0

    def _mark_host(self, t) -> None:
        if isinstance(t, torch.Tensor) and t.numel() > 0:
            address = t.untyped_storage().data_ptr()
            self._host[address] += 1
            weakref.finalize(t, self._host.subtract, [address])

    def _wrap(self, name, method, host_result=False):
        def wrapper(t, *args, **kwargs):
            if not self._is_host(t):
                self.calls[name] += 1
            result = method(t, *args, **kwargs)
            if host_result:
                self._mark_host(result)
            return result

        return wrapper

    def _wrap_to(self, method):
        def to(t, *args, **kwargs):
            target = kwargs.get("device", args[0] if args else None)
            to_host = target == "cpu" or (isinstance(target, str) and torch.device(target).type == "cpu")
            blocking = not kwargs.get("non_blocking", len(args) > 1 and args[1] is True)
            if to_host and blocking and not self._is_host(t):
                self.calls["to('cpu')"] += 1
            result = method(t, *args, **kwargs)
            if to_host:
                self._mark_host(result)
            return result

        return to


# The default schedule's shape in small: 16 steps an epoch (the embedded sample's 4,000 images in batches of 256)
# and 4 validation batches (its 1,000 test images), here on 256 + 64 images in batches of 16 and a tiny MLP.
BATCH = 16
STEPS_PER_EPOCH = math.ceil(256 / BATCH)


def two_epochs(tmp_path, **train_kw):
    """2 epochs of 16 steps and 4 validation batches each, grids on."""
    data = make_tiny_idx_dir(tmp_path / "idx", n_train=256, n_test=64)
    tcfg = TrainConfig(out=str(tmp_path / "run"), data=str(data), epochs=2, batch_size=BATCH, device="cpu", seed=0)
    train(dataclasses.replace(tcfg, **train_kw), dict(arch="mlp", latent_dim=4, hidden=(32,)), log=lambda m: None)


def test_a_two_epoch_run_waits_for_the_device_at_most_12_times_an_epoch(tmp_path, monkeypatch):
    counter = SyncCounter(monkeypatch)
    two_epochs(tmp_path)
    # per epoch: the losses' read at its end, validation, the grids, the checkpoints (+ the first last.pt)
    assert counter.total <= 2 * 12, counter.calls
    assert counter.calls["tolist"] >= 4, counter.calls  # the counter does see the loop's reads


def test_the_counter_sees_a_per_step_read(tmp_path, monkeypatch):
    """A loss read at every step (as `loss.item()` would) shows up: one per step over 2 epochs."""
    from vaectl.training import loop

    real = loop.EpochLosses.record

    def record_and_read(self, step, loss, recon, kl):
        real(self, step, loss, recon, kl)
        loss.item()

    monkeypatch.setattr(loop.EpochLosses, "record", record_and_read)
    counter = SyncCounter(monkeypatch)
    two_epochs(tmp_path)
    assert counter.calls["item"] == 2 * STEPS_PER_EPOCH and counter.total > 2 * 12


def test_a_progress_bar_reads_at_most_every_half_second(tmp_path, monkeypatch):
    from vaectl.training import loop

    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    base = SyncCounter(monkeypatch)
    t0 = time.monotonic()
    two_epochs(tmp_path, grid_every=0)
    seconds = time.monotonic() - t0
    assert base.total <= 2 * 12 + seconds / loop.BAR_SECONDS + 2, (base.calls, seconds)
