"""Training under signals: Ctrl-C saves and exits 130, and SIGKILL at random moments (mid-save included) always
leaves a last.pt that resumes to the uninterrupted run's weights."""

from __future__ import annotations

import queue
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from conftest import make_tiny_idx_dir, sigint_as_in_a_terminal  # noqa: E402
from conftest import run_vaectl_in_process as cli_in_process
from test_training import MODEL_FLAGS, assert_same_weights, read_metrics, without_timing  # noqa: E402

from vaectl.models.checkpoint import read_state  # noqa: E402


class TrainingProcess:
    """A `vaectl train` subprocess whose stderr is read on a thread, so the test can wait for a line."""

    def __init__(self, args, script: Path | None = None):
        cmd = [sys.executable, str(script)] if script else [sys.executable, "-m", "vaectl.cli"]
        self.proc = subprocess.Popen(
            [*cmd, *map(str, args)],
            stderr=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            text=True,
            preexec_fn=sigint_as_in_a_terminal,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.stderr: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stderr:
            self.stderr.append(line)
            self.lines.put(line)
        self.lines.put("")  # EOF

    def wait_for_line(self, prefix: str, timeout: float = 120) -> str:
        deadline = time.monotonic() + timeout
        while True:
            line = self.lines.get(timeout=max(0.01, deadline - time.monotonic()))
            if line.startswith(prefix):
                return line
            if line == "":
                raise AssertionError(f"process ended before printing {prefix!r}: {''.join(self.stderr)}")

    def finish(self, timeout: float = 120) -> tuple[int, str]:
        rc = self.proc.wait(timeout=timeout)
        time.sleep(0.05)  # let the reader thread drain
        return rc, "".join(self.stderr)


def test_ctrl_c_saves_exits_130_and_resume_matches_an_uninterrupted_run(tmp_path, tiny_idx_dir):
    # a schedule that does not depend on the total of epochs (the default warm-up is a quarter of them)
    common = ["--data", tiny_idx_dir, "--batch-size", 8, "--schedule", "constant", "--kl-warmup", 1, "--grid-every", 0]
    common += MODEL_FLAGS
    p = TrainingProcess(["train", *common, "--out", tmp_path / "run", "--epochs", 100_000])
    p.wait_for_line("epoch 2/")  # mid-training, past a few saves
    time.sleep(random.uniform(0, 0.2))
    p.proc.send_signal(signal.SIGINT)
    rc, stderr = p.finish()
    assert rc == 130, stderr
    assert "Traceback" not in stderr
    last_line = stderr.strip().splitlines()[-1]
    assert last_line.startswith("interrupted at epoch") and "--resume" in last_line
    ckpt = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    stopped_epoch = ckpt["epoch"] + (ckpt["step_in_epoch"] > 0)  # the epoch in progress
    # finish that epoch; the constant schedule lets an uninterrupted run of that length be the reference
    assert cli_in_process("train", "--resume", tmp_path / "run", "--epochs", stopped_epoch)[0] == 0
    assert cli_in_process("train", *common, "--out", tmp_path / "straight", "--epochs", stopped_epoch)[0] == 0
    assert_same_weights(tmp_path / "straight" / "last.pt", tmp_path / "run" / "last.pt")
    assert without_timing(read_metrics(tmp_path / "straight")) == without_timing(read_metrics(tmp_path / "run"))


SLOW_SAVES = '''\
"""`vaectl train` whose checkpoint saves pause half-written, so a SIGKILL can land mid-save."""
import io, sys, time
import vaectl.files, vaectl.models.checkpoint
from vaectl.cli import main

real_atomic_write = vaectl.files.atomic_write

def slow_atomic_write(path, write):
    def write_slowly(f):
        buf = io.BytesIO()
        write(buf)
        data = buf.getvalue()
        f.write(data[: len(data) // 2])
        f.flush()
        time.sleep(0.1)
        f.write(data[len(data) // 2 :])
    real_atomic_write(path, write_slowly)

vaectl.models.checkpoint.atomic_write = slow_atomic_write
sys.argv[0] = "vaectl"
main()
'''


def _crash_safety(tmp_path, kills: int):
    data = make_tiny_idx_dir(tmp_path / "idx", n_train=32, n_test=16)
    script = tmp_path / "slow_saves.py"
    script.write_text(SLOW_SAVES)
    run = tmp_path / "run"
    rng = random.Random(1234)
    last_step, left_temp_files = -1, 0
    for i in range(kills):
        args = (
            [
                "train",
                "--data",
                data,
                "--out",
                run,
                "--epochs",
                100_000,
                "--batch-size",
                16,
                "--grid-every",
                0,
                *MODEL_FLAGS,
            ]
            if i == 0
            else ["train", "--resume", run]
        )
        p = TrainingProcess(args, script=script)
        p.wait_for_line("training ")  # printed once last.pt exists
        if i % 2:  # mid-save: as soon as a checkpoint's temp file appears
            deadline = time.monotonic() + 30
            while not list(run.glob(".*.pt.*.tmp")) and time.monotonic() < deadline:
                time.sleep(0.002)
        else:  # anywhere in the loop: steps, validation, saves
            time.sleep(rng.uniform(0, 0.5))
        p.proc.kill()
        p.finish()
        left_temp_files += bool(list(run.glob(".*.pt.*.tmp")))
        ckpt = torch.load(run / "last.pt", map_location="cpu", weights_only=True)
        assert ckpt["global_step"] >= last_step  # never goes back
        last_step = ckpt["global_step"]
        read_state(run / "last.pt")
    assert left_temp_files > 0  # some kills really landed mid-save
    done = torch.load(run / "last.pt", weights_only=True)["epoch"]
    code, stderr = cli_in_process("train", "--resume", run, "--epochs", done + 1)
    assert code == 0, stderr
    assert f"epoch {done + 1}/{done + 1}" in stderr
    assert [rec["epoch"] for rec in read_metrics(run)] == list(range(1, done + 2))  # no torn or repeated records
    assert not list(run.rglob(".*.tmp"))  # the resume swept the temp files the kills left


@pytest.mark.slow  # 20 fresh interpreters, each importing torch
def test_sigkill_at_20_random_moments_leaves_a_resumable_last_pt(tmp_path):
    _crash_safety(tmp_path, kills=20)
