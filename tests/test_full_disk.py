"""A full disk (and other OSErrors of the filesystem) at every writer: one line naming the file and what survived,
exit 2, nothing lost. Simulated by a disk that fails chosen writes (every writer opens its file through
os.fdopen in vaectl/files.py), and for real on a small tmpfs where this machine lets the tests mount one."""

from __future__ import annotations

import errno
import os
import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

pytest.importorskip("torch")
if not Path("/proc/self/fd").is_dir():
    pytest.skip("the simulated disk finds each file's path through /proc/self/fd (Linux)", allow_module_level=True)

from conftest import read_png  # noqa: E402
from conftest import run_vaectl_in_process as cli_in_process

from vaectl.models.checkpoint import read_state  # noqa: E402

TRAIN = ["--batch-size", "16", "--arch", "mlp", "--latent-dim", "4", "--hidden", "32"]
TEMP = re.compile(r"^\.(.+)\.[0-9a-f]{12}\.tmp$")  # files.temp_path_beside: .NAME.XXXXXXXXXXXX.tmp


class FailingFile:
    """A file object whose writes stop with `err` after half of the first chunk, as a disk filling up mid-write."""

    def __init__(self, f, err: int):
        self.f, self.err = f, err

    def write(self, data):
        self.f.write(bytes(memoryview(data)[: len(memoryview(data)) // 2]))
        self.f.flush()
        raise OSError(self.err, os.strerror(self.err))

    def __getattr__(self, name):
        return getattr(self.f, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.f.close()


class SimulatedDisk:
    """Fails the writes under `root` that `fails(name, n)` picks: name is the file being written (for a temp
    file, the file it will replace), n counts the writes to that name, from 1."""

    def __init__(self, monkeypatch, root, fails, err: int = errno.ENOSPC):
        self.root, self.fails, self.err = str(Path(root).resolve()), fails, err
        self.writes, self.failed = Counter(), []
        real_fdopen = os.fdopen

        def fdopen(fd, *args, **kwargs):
            f = real_fdopen(fd, *args, **kwargs)
            path = os.readlink(f"/proc/self/fd/{fd}")
            if not self.armed or not path.startswith(self.root):
                return f
            name = Path(path).name
            name = TEMP.match(name).group(1) if TEMP.match(name) else name
            self.writes[name] += 1
            if self.fails(name, self.writes[name]):
                self.failed.append(path)
                return FailingFile(f, self.err)
            return f

        self.armed = True
        monkeypatch.setattr(os, "fdopen", fdopen)


def one_error_line(stderr: str) -> str:
    assert "Traceback" not in stderr, stderr
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, stderr
    return errors[0]


def no_temp_files(directory: Path) -> bool:
    return not [p for p in directory.rglob(".*.tmp")]


# ----------------------------------------------------------------------------- training


@pytest.mark.parametrize(
    "name, nth, survivor",
    [
        ("last.pt", 3, "last.pt from epoch 1 is intact"),  # writes: the first last.pt, epoch 1, epoch 2 <- fails
        ("metrics.jsonl", 2, "last.pt from epoch 1 is intact"),  # epoch 2's record
        # the epoch's grids come before its checkpoint: a failure there leaves the epoch to be redone
        ("images/samples_epoch002.png", 1, "last.pt from epoch 1 is intact"),
        ("last.pt", 1, "no checkpoint was saved yet"),
    ],
)
def test_training_stops_with_one_line_and_resumes_after_space_is_freed(
    tmp_path, tiny_idx_dir, monkeypatch, name, nth, survivor
):
    run = tmp_path / "run"
    disk = SimulatedDisk(monkeypatch, tmp_path, lambda n, k: n == Path(name).name and k == nth)
    code, stderr = cli_in_process("train", "--data", tiny_idx_dir, "--out", run, "--epochs", 3, *TRAIN)
    line = one_error_line(stderr)
    assert code == 2 and disk.failed
    assert f"{run / name}: cannot write (No space left on device); {survivor}" in line, line
    assert no_temp_files(run)
    disk.armed = False  # space freed
    if "no checkpoint" in survivor:
        assert "start the run again with --overwrite" in line
        code, stderr = cli_in_process(
            "train", "--data", tiny_idx_dir, "--out", run, "--epochs", 3, "--overwrite", *TRAIN
        )
    else:
        assert line.endswith(f"free space, then: vaectl train --resume {run}")
        if name == "metrics.jsonl":  # cut back to its last whole line: epoch 1's record, nothing torn
            assert [rec[:11] for rec in (run / "metrics.jsonl").read_text().splitlines()] == ['{"epoch": 1']
        code, stderr = cli_in_process("train", "--resume", run)
    assert code == 0, stderr
    assert read_state(run / "last.pt")["epoch"] == 3
    assert [line[:11] for line in (run / "metrics.jsonl").read_text().splitlines()] == [
        '{"epoch": 1',
        '{"epoch": 2',
        '{"epoch": 3',
    ]


@pytest.mark.parametrize(
    "err, reason",
    [
        (errno.EROFS, "Read-only file system"),
        (errno.EACCES, "Permission denied"),
        (errno.EDQUOT, "Disk quota exceeded"),
        (errno.EIO, "Input/output error"),
    ],
)
def test_other_filesystem_errors_read_the_same(tmp_path, tiny_idx_dir, monkeypatch, err, reason):
    run = tmp_path / "run"
    SimulatedDisk(monkeypatch, tmp_path, lambda n, k: n == "best.pt", err)
    code, stderr = cli_in_process(
        "train", "--data", tiny_idx_dir, "--out", run, "--epochs", 2, "--grid-every", 0, *TRAIN
    )
    assert code == 2
    assert f"best.pt: cannot write ({reason}); last.pt from before the first epoch is intact" in one_error_line(stderr)


# ----------------------------------------------------------------------------- inference and export


def test_generate_out_dir_keeps_every_image_written_before_the_disk_filled(mlp_graphs, tmp_path, monkeypatch):
    out = tmp_path / "samples"
    SimulatedDisk(monkeypatch, tmp_path, lambda n, k: n == "000004.png")
    code, stderr = cli_in_process(
        "generate", "--onnx", mlp_graphs / "decoder.onnx", "-n", 10, "--seed", 0, "--out-dir", out
    )
    assert code == 2
    assert one_error_line(stderr) == (
        f"error: {out / '000004.png'}: cannot write (No space left on device); the 4 "
        "images before it (000000.png to 000003.png) are complete; free space and run again"
    )
    assert sorted(p.name for p in out.iterdir()) == [f"{i:06d}.png" for i in range(4)]
    for path in out.iterdir():
        assert read_png(path).shape == (28, 28)  # whole, decodable images


def single_output_commands(graphs: Path, digit: Path, out: Path) -> dict[str, list]:
    dec, enc = graphs / "decoder.onnx", graphs / "encoder.onnx"
    return {
        "generate": ["generate", "--onnx", dec, "-n", 4, "--seed", 0, "--out", out],
        "reconstruct": ["reconstruct", "--encoder", enc, "--decoder", dec, digit, "--out", out],
        "interpolate": ["interpolate", "--decoder", dec, "--seed-a", 1, "--seed-b", 2, "--out", out],
        "traverse": ["traverse", "--onnx", dec, "--all", "--out", out],
        "data-images": ["data-images", "-n", 4, "--out", out],
    }


@pytest.mark.parametrize("command", ["generate", "reconstruct", "interpolate", "traverse", "data-images"])
def test_a_full_disk_leaves_the_previous_output_unchanged(mlp_graphs, tmp_path, monkeypatch, command):
    digit = tmp_path / "digit.png"
    assert cli_in_process("data-images", "-n", 1, "--out", digit)[0] == 0
    out = tmp_path / "result.png"
    out.write_bytes(b"the previous result")
    SimulatedDisk(monkeypatch, tmp_path, lambda n, k: n == "result.png")
    code, stderr = cli_in_process(*single_output_commands(mlp_graphs, digit, out)[command])
    assert code == 2
    assert one_error_line(stderr) == (
        f"error: {out}: cannot write (No space left on device); the previous result.png is unchanged"
    )
    assert out.read_bytes() == b"the previous result" and no_temp_files(tmp_path)


@pytest.mark.parametrize("fails_on", ["encoder.onnx", "decoder.onnx", "decoder.fp16.onnx"])
def test_export_onto_a_full_disk_publishes_nothing(tiny_mlp_run, mlp_graphs, tmp_path, monkeypatch, fails_on):
    out = tmp_path / "onnx"
    out.mkdir()
    for name in ("encoder.onnx", "decoder.onnx"):  # an earlier export, which must survive whole
        shutil.copy(mlp_graphs / name, out / name)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    SimulatedDisk(monkeypatch, tmp_path, lambda n, k: n == fails_on)
    code, stderr = cli_in_process("export", tiny_mlp_run, "--out", out, "--fp16")
    assert code == 2
    assert (
        f"{out / fails_on}: cannot write (No space left on device); nothing was written to {out} "
        "(existing files are unchanged)" in one_error_line(stderr)
    )
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_export_into_a_new_directory_on_a_full_disk_leaves_no_directory(tiny_mlp_run, tmp_path, monkeypatch):
    SimulatedDisk(monkeypatch, tmp_path, lambda n, k: n == "decoder.onnx")
    code, stderr = cli_in_process("export", tiny_mlp_run, "--out", tmp_path / "new" / "onnx")
    assert code == 2 and "nothing was written" in one_error_line(stderr)
    assert not (tmp_path / "new" / "onnx").exists()


# ----------------------------------------------------------------------------- a real full filesystem


@pytest.fixture
def small_tmpfs(tmp_path):
    """A 30 MB tmpfs (needs root on Linux; skipped where mounting is not permitted)."""
    if not sys.platform.startswith("linux") or os.geteuid() != 0 or not shutil.which("mount"):
        pytest.skip("mounting a tmpfs needs root on Linux")
    mnt = tmp_path / "small"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=30m", "tmpfs", str(mnt)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"mounting a tmpfs is not permitted here: {r.stderr.strip()}")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=False)


def fill(mnt: Path, leave_bytes: int) -> Path:
    """A ballast file that leaves about `leave_bytes` free on the filesystem."""
    st = os.statvfs(mnt)
    ballast = mnt / "ballast"
    with open(ballast, "wb") as f:
        f.write(b"\0" * max(0, st.f_bavail * st.f_frsize - leave_bytes))
    return ballast


def test_training_on_a_real_full_filesystem(small_tmpfs, tiny_idx_dir):
    run = small_tmpfs / "run"
    ballast = fill(small_tmpfs, 2_000_000)  # room for about two checkpoints of this model (~0.8 MB each)
    code, stderr = cli_in_process("train", "--data", tiny_idx_dir, "--out", run, "--epochs", 5, *TRAIN)
    line = one_error_line(stderr)
    assert (
        code == 2 and "No space left on device" in line and "is intact; free space, then: vaectl train --resume" in line
    )
    assert no_temp_files(run)
    intact = read_state(run / "last.pt")  # the digest checks it really is intact
    ballast.unlink()
    code, stderr = cli_in_process("train", "--resume", run)
    assert code == 0, stderr
    assert read_state(run / "last.pt")["epoch"] == 5 > intact["epoch"]


def test_generate_and_export_on_a_real_full_filesystem(small_tmpfs, tiny_mlp_run, mlp_graphs):
    fill(small_tmpfs, 64_000)  # a few 4 KB tmpfs pages, then none
    out = small_tmpfs / "samples"
    code, stderr = cli_in_process(
        "generate", "--onnx", mlp_graphs / "decoder.onnx", "-n", 500, "--seed", 0, "--out-dir", out
    )
    assert code == 2 and re.search(r"the \d+ images before it .* are complete", one_error_line(stderr)), stderr
    for path in out.iterdir():
        assert read_png(path).shape == (28, 28)
    assert no_temp_files(out)
    code, stderr = cli_in_process("export", tiny_mlp_run, "--out", small_tmpfs / "onnx")
    assert code == 2 and "nothing was written" in one_error_line(stderr)
    assert not (small_tmpfs / "onnx").exists()


def test_a_read_only_filesystem_is_refused_before_any_work(small_tmpfs, tiny_mlp_run, mlp_graphs):
    run = small_tmpfs / "run"
    shutil.copytree(tiny_mlp_run, run)
    subprocess.run(["mount", "-o", "remount,ro", str(small_tmpfs)], check=True)
    code, stderr = cli_in_process("train", "--resume", run, "--epochs", 3)
    assert code == 2 and "not writable" in one_error_line(stderr)
    code, stderr = cli_in_process("generate", "--onnx", mlp_graphs / "decoder.onnx", "--out", small_tmpfs / "g.png")
    assert code == 2 and "not writable" in one_error_line(stderr)


# ----------------------------------------------------------------------------- the exit codes hold in every command


def test_ctrl_c_in_generate_exits_130_with_every_written_image_complete(mlp_graphs, tmp_path, monkeypatch):
    import vaectl.infer.output as output

    real_save_png, calls = output.save_png, []

    def save_png_then_ctrl_c(path, image, fsync=True):
        calls.append(path)
        if len(calls) == 4:
            raise KeyboardInterrupt
        real_save_png(path, image, fsync)

    monkeypatch.setattr(output, "save_png", save_png_then_ctrl_c)
    out = tmp_path / "samples"
    code, stderr = cli_in_process(
        "generate", "--onnx", mlp_graphs / "decoder.onnx", "-n", 10, "--seed", 0, "--out-dir", out
    )
    assert code == 130 and stderr.strip() == "interrupted" and "Traceback" not in stderr
    assert sorted(p.name for p in out.iterdir()) == [f"{i:06d}.png" for i in range(3)]
    assert all(read_png(p).shape == (28, 28) for p in out.iterdir())


def test_an_os_error_outside_the_writers_is_still_one_line_and_exit_2(mlp_graphs, monkeypatch):
    import vaectl.infer as infer

    def unreadable(path):
        raise PermissionError(errno.EACCES, "Permission denied", str(path))

    monkeypatch.setattr(infer, "describe_model", unreadable)
    code, stderr = cli_in_process("info", mlp_graphs / "decoder.onnx")
    assert code == 2
    assert one_error_line(stderr) == f"error: {mlp_graphs / 'decoder.onnx'}: Permission denied"


def test_data_images_out_dir_names_the_images_already_complete(tmp_path, monkeypatch):
    SimulatedDisk(monkeypatch, tmp_path, lambda n, k: len(list((tmp_path / "digits").glob("*.png"))) == 2)
    code, stderr = cli_in_process("data-images", "-n", 5, "--out-dir", tmp_path / "digits")
    assert code == 2
    assert one_error_line(stderr).endswith(
        "cannot write (No space left on device); the 2 images before it are complete; free space and run again"
    )
    assert all(read_png(p).shape == (28, 28) for p in (tmp_path / "digits").iterdir())
