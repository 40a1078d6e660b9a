"""DDP on CPU: torchrun launches 2 gloo processes on loopback; both ranks must end with identical weights,
only rank 0 may write into --out, and a NaN on one rank must stop both (not leave the other hanging)."""

from __future__ import annotations

import importlib.util
import json
import os
import socket
import subprocess
import sys

import pytest

torch = pytest.importorskip("torch")
if not torch.distributed.is_available() or not torch.distributed.is_gloo_available():
    pytest.skip("torch.distributed with gloo is not available", allow_module_level=True)

from conftest import make_colour_folder, make_tiny_idx_dir  # noqa: E402

# Run by torchrun in each process: records this rank's file writes (audit hooks see every open/rename/mkdir),
# then runs `vaectl train` and dumps the rank's final weights for the test to compare.
RANK_SCRIPT = """\
import importlib, json, os, sys
import torch

rank = int(os.environ["RANK"])
report_dir, out = sys.argv[1], os.path.abspath(sys.argv[sys.argv.index("--out") + 1])
writes = []

def record_writes(event, args):
    if event == "open" and args[0] is not None and isinstance(args[0], (str, bytes, os.PathLike)):
        path, mode, flags = args
        writing = (mode is not None and any(c in mode for c in "wax+")) or (flags or 0) & (os.O_WRONLY | os.O_RDWR)
        if writing and os.path.abspath(os.fsdecode(path)).startswith(out):
            writes.append(os.fsdecode(path))
    elif event in ("os.rename", "os.replace") and os.path.abspath(os.fsdecode(args[1])).startswith(out):
        writes.append(os.fsdecode(args[1]))
    elif event in ("os.mkdir", "os.remove") and os.path.abspath(os.fsdecode(args[0])).startswith(out):
        writes.append(f"{event} {os.fsdecode(args[0])}")

sys.addaudithook(record_writes)

models = []  # the DDP wrapper of this rank, to read its weights after training

class RecordingDDP(torch.nn.parallel.DistributedDataParallel):
    def __init__(self, module, *args, **kwargs):
        super().__init__(module, *args, **kwargs)
        models.append(module)

torch.nn.parallel.DistributedDataParallel = RecordingDDP

nan_rank, nan_step = os.environ.get("TEST_NAN_RANK"), int(os.environ.get("TEST_NAN_STEP", "0"))
if nan_rank is not None and int(nan_rank) == rank:  # this rank alone sees a NaN loss at step TEST_NAN_STEP
    train_module = importlib.import_module("vaectl.training.loop")
    real_batch_loss, calls = train_module.batch_loss, []

    def batch_loss(*args, **kwargs):
        loss, recon, kl = real_batch_loss(*args, **kwargs)
        calls.append(1)
        return (loss * float("nan") if len(calls) == nan_step else loss), recon, kl

    train_module.batch_loss = batch_loss

from vaectl.cli import main
try:
    main(sys.argv[2:], standalone_mode=False)
    code = 0
except SystemExit as e:
    code = e.code
with open(os.path.join(report_dir, f"writes{rank}.json"), "w") as f:
    json.dump(writes, f)
if models:
    torch.save(models[0].state_dict(), os.path.join(report_dir, f"weights{rank}.pt"))
sys.exit(code)
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun(tmp_path, train_args, env_extra=None, timeout=300) -> subprocess.CompletedProcess:
    script = tmp_path / "rank_script.py"
    script.write_text(RANK_SCRIPT)
    reports = tmp_path / "reports"
    reports.mkdir(exist_ok=True)
    env = {**os.environ, "GLOO_SOCKET_IFNAME": "lo", "OMP_NUM_THREADS": "1", **(env_extra or {})}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--nnodes",
        "1",
        "--master_addr",
        "127.0.0.1",
        "--master_port",
        str(free_port()),
        str(script),
        str(reports),
        "train",
        *map(str, train_args),
    ]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout, cwd=tmp_path)


def common_args(tmp_path):
    data = make_tiny_idx_dir(tmp_path / "idx", n_train=64, n_test=16)
    return ["--data", data, "--batch-size", 16, "--device", "cpu", "--arch", "mlp", "--latent-dim", 4, "--hidden", 32]


def test_two_cpu_processes_end_with_identical_weights_and_only_rank_0_writes(tmp_path):
    out = tmp_path / "run"
    tensorboard = importlib.util.find_spec("tensorboard") is not None  # the [dev] extra has it
    r = torchrun(tmp_path, [*common_args(tmp_path), "--out", out, "--epochs", 2, *(["--tensorboard"] * tensorboard)])
    assert r.returncode == 0, r.stdout + r.stderr
    assert "2 processes" in r.stderr
    reports = tmp_path / "reports"
    w0 = torch.load(reports / "weights0.pt", weights_only=True)
    w1 = torch.load(reports / "weights1.pt", weights_only=True)
    saved = torch.load(out / "last.pt", weights_only=True)["model"]
    assert w0.keys() == w1.keys() == saved.keys()
    for k in w0:
        assert torch.equal(w0[k], w1[k]), k
        assert torch.equal(w0[k], saved[k]), k
    # training moved the weights away from their initialisation
    assert saved["encoder.mu.weight"].abs().sum() > 0
    writes0 = json.loads((reports / "writes0.json").read_text())
    writes1 = json.loads((reports / "writes1.json").read_text())
    assert any(w.endswith("last.pt") for w in writes0)  # the hook does see writes
    assert writes1 == []  # rank 1 writes nothing: no checkpoint, no metrics, no TensorBoard events
    if tensorboard:
        assert len(list(out.glob("events.out.tfevents.*"))) == 1
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2]
    assert records[1]["step"] == 2 * 64 // 16  # each step consumed one global batch of 16 (8 per rank)
    assert sorted(p.name for p in (out / "images").iterdir()) == [
        "recon_epoch001.png",
        "recon_epoch002.png",
        "samples_epoch001.png",
        "samples_epoch002.png",
    ]


def test_the_sigma_fitted_on_rank_0_reaches_every_rank(tmp_path):
    """Only rank 0 validates; the learned-variance model's sigma it fits there must reach rank 1 too, or the
    ranks would train on with different weights."""
    folder = make_colour_folder(tmp_path / "imgs", n=40, size=(8, 8), classes=())
    out = tmp_path / "run"
    flags = ["--arch", "resnet", "--conv-channels", "2", "--latent-dim", 2, "--likelihood", "gaussian-learned"]
    r = torchrun(
        tmp_path, ["--data", folder, "--batch-size", 8, "--device", "cpu", *flags, "--out", out, "--epochs", 2]
    )
    assert r.returncode == 0, r.stdout + r.stderr
    w0 = torch.load(tmp_path / "reports" / "weights0.pt", weights_only=True)
    w1 = torch.load(tmp_path / "reports" / "weights1.pt", weights_only=True)
    for k in w0:
        assert torch.equal(w0[k], w1[k]), k
    saved = torch.load(out / "last.pt", weights_only=True)["model"]["decoder.log_sigma"]
    assert torch.equal(w1["decoder.log_sigma"], saved)


def test_nan_on_one_rank_stops_both(tmp_path):
    out = tmp_path / "run"
    r = torchrun(
        tmp_path,
        [*common_args(tmp_path), "--out", out, "--epochs", 3],
        env_extra={"TEST_NAN_RANK": "1", "TEST_NAN_STEP": "6"},
        timeout=240,
    )
    assert r.returncode != 0
    assert "loss became nan at epoch 2, step 2" in r.stderr, r.stderr  # rank 1, whose loss it was
    # rank 0's loss was finite: it stops because the ranks share the check, rather than waiting in the
    # gradient all-reduce until torchrun kills it
    assert "at epoch 2, step 2 (on some process)" in r.stderr, r.stderr
    ckpt = torch.load(out / "last.pt", weights_only=True)
    assert (ckpt["epoch"], ckpt["step_in_epoch"]) == (1, 0)
    assert all(torch.isfinite(t).all() for t in ckpt["model"].values())


def test_a_run_directory_that_holds_a_run_stops_both_ranks_untouched(tmp_path):
    """Each rank checks before rank 0 writes anything, and a refusal on one stops all (none waits in a collective)."""
    out = tmp_path / "run"
    out.mkdir()
    (out / "metrics.jsonl").write_text('{"epoch": 1}\n')
    r = torchrun(tmp_path, [*common_args(tmp_path), "--out", out, "--epochs", 2], timeout=240)
    assert r.returncode != 0
    refusals = [
        line for line in r.stderr.splitlines() if line.startswith("error:") and "already holds a training run" in line
    ]
    assert len(refusals) == 2, r.stderr  # one per rank, each exiting 2
    assert sorted(p.name for p in out.iterdir()) == ["metrics.jsonl"]
    assert (out / "metrics.jsonl").read_text() == '{"epoch": 1}\n'
