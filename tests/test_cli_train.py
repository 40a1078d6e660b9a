"""Every bad input of `vaectl train`: exit code 2, exactly one `error:` line on stderr, no traceback.

Most cases run through click in this process (a torch import per case would cost minutes); the
`fresh process` test repeats a few of them in a real interpreter, as a user runs them.
"""

from __future__ import annotations

import re
import shlex
import shutil

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from conftest import make_tiny_idx_dir, run_vaectl, run_vaectl_in_process, write_idx  # noqa: E402
from PIL import Image  # noqa: E402

FAST = [
    "--epochs",
    "1",
    "--batch-size",
    "16",
    "--grid-every",
    "0",
    "--arch",
    "mlp",
    "--latent-dim",
    "2",
    "--hidden",
    "16",
]


def bad_inputs(tmp_path, tiny_mlp_run):
    """(name, argv, phrase the error line must contain) for each bad input the README lists, and a few more."""
    d = tmp_path
    (d / "empty").mkdir()
    (d / "a_file").write_text("not a directory")
    idx = make_tiny_idx_dir(d / "idx", n_train=16, n_test=8)
    trunc = make_tiny_idx_dir(d / "trunc_idx", n_train=16, n_test=8, gz=False)
    raw = (trunc / "train-images-idx3-ubyte").read_bytes()
    (trunc / "train-images-idx3-ubyte").write_bytes(raw[: len(raw) // 2])
    magic = make_tiny_idx_dir(d / "magic_idx", n_train=16, n_test=8, gz=False)
    (magic / "train-images-idx3-ubyte").write_bytes(b"\x08\x03\x00\x00" + raw[4:])
    imgs = d / "imgs"
    imgs.mkdir()
    for i in range(4):
        Image.new("L", (8, 8), i * 40).save(imgs / f"{i}.png")
    (imgs / "notes.png").write_text("this is text, not a PNG")
    zero = d / "zero_run"
    zero.mkdir()
    (zero / "last.pt").write_bytes(b"")
    half = d / "half_run"
    shutil.copytree(tiny_mlp_run, half)
    ckpt_bytes = (half / "last.pt").read_bytes()
    (half / "last.pt").write_bytes(ckpt_bytes[: len(ckpt_bytes) // 2])
    (d / "no_ckpt_run").mkdir()
    out = ["--out", d / "out"]
    cases = [
        ("missing data dir", ["--data", d / "nope", *out], "no such data directory"),
        ("empty data dir", ["--data", d / "empty", *out], "empty"),
        ("zero-byte checkpoint", ["--resume", zero], "empty (0 bytes)"),
        ("zero-byte checkpoint file", ["--resume", zero / "last.pt"], "empty (0 bytes)"),
        ("truncated checkpoint", ["--resume", half], "checkpoint is truncated"),
        ("not an image", ["--data", imgs, *out], "notes.png: not an image"),
        ("truncated IDX", ["--data", trunc, *out], "truncated"),
        ("wrong IDX magic", ["--data", magic, *out], "wrong magic number"),
        ("zero epochs", ["--data", idx, *out, "--epochs", "0"], "--epochs must be at least 1"),
        ("negative epochs", ["--data", idx, *out, "--epochs", "-3"], "--epochs must be at least 1"),
        ("zero latent dim", ["--data", idx, *out, "--latent-dim", "0"], "latent dimension must be at least 1"),
        ("output is a file", ["--data", idx, "--out", d / "a_file"], "is not a directory"),
        ("resume without checkpoint", ["--resume", d / "no_ckpt_run"], "no checkpoint"),
        ("resume of nothing", ["--resume", d / "nowhere"], "no such file or directory"),
        ("zero batch size", ["--data", idx, *out, "--batch-size", "0"], "--batch-size"),
        ("data and dataset", ["--data", idx, "--dataset", "mnist", *out], "either --data or --dataset"),
        ("bad hidden list", ["--data", idx, *out, "--hidden", "64,x"], "comma-separated integers"),
        (
            "even context kernel",
            ["--data", idx, *out, "--context-channels", "8", "--context-kernel", "4"],
            "odd size >= 3",
        ),
        (
            "negative context channels",
            ["--data", idx, *out, "--context-channels", "-1"],
            "context channels must be >= 0",
        ),
        ("conditional without labels", ["--data", imgs.parent / "imgs_ok", *out, "--conditional"], "needs labels"),
    ]
    ok = imgs.parent / "imgs_ok"
    ok.mkdir()
    for i in range(4):
        Image.new("L", (8, 8), i * 40).save(ok / f"{i}.png")
    if not torch.cuda.is_available():
        cases.append(("cuda without CUDA", ["--data", idx, *out, "--device", "cuda"], "CUDA is not available"))
    return cases


def assert_one_error_line(code, stderr, phrase):
    assert code == 2, stderr
    lines = stderr.splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("error: ") and phrase in lines[0], stderr
    assert "Traceback" not in stderr


def test_each_bad_input_gets_one_line_and_exit_2(tmp_path, tiny_mlp_run):
    cases = bad_inputs(tmp_path, tiny_mlp_run)
    for _name, args, phrase in cases:
        # FAST first: a case's own flags (e.g. --epochs 0) come later and win
        code, stderr = run_vaectl_in_process("train", *FAST, *args)
        assert_one_error_line(code, stderr, phrase)
    assert not (tmp_path / "out").exists()  # no case got as far as training, and none left a directory behind


def test_bad_inputs_in_a_fresh_process(tmp_path, tiny_mlp_run):
    cases = {name: (args, phrase) for name, args, phrase in bad_inputs(tmp_path, tiny_mlp_run)}
    for name in ("truncated checkpoint", "truncated IDX", "output is a file"):
        args, phrase = cases[name]
        r = run_vaectl("train", *FAST, *args)
        assert_one_error_line(r.returncode, r.stderr, phrase)


def test_mixed_image_sizes_train_with_a_note(tmp_path):
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    rng = np.random.default_rng(0)
    for i in range(10):
        side = 12 if i < 8 else 20
        Image.fromarray(rng.integers(0, 255, (side, side), dtype=np.uint8)).save(imgs / f"{i}.png")
    code, stderr = run_vaectl_in_process("train", *FAST, "--data", imgs, "--out", tmp_path / "run")
    assert code == 0, stderr
    notes = [line for line in stderr.splitlines() if line.startswith("note:")]
    assert notes == ["note: resized 2 of 10 images (2 sizes in the folder) to 12x12"]  # same aspect ratio
    assert "error" not in stderr.lower()
    assert torch.load(tmp_path / "run" / "last.pt", weights_only=True)["config"]["height"] == 12


def test_training_from_a_folder_says_when_the_aspect_ratio_changes(tmp_path):
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    rng = np.random.default_rng(0)
    for i in range(10):
        shape = (12, 12) if i < 7 else (10, 20)  # 3 landscape images among squares
        Image.fromarray(rng.integers(0, 255, shape, dtype=np.uint8)).save(imgs / f"{i}.png")
    code, stderr = run_vaectl_in_process("train", *FAST, "--data", imgs, "--out", tmp_path / "run")
    assert code == 0, stderr
    notes = [line for line in stderr.splitlines() if line.startswith("note:")]
    assert notes == [
        "note: resized 3 of 10 images (2 sizes in the folder) to 12x12; "
        "3 of them with their aspect ratio changed (stretched, not cropped)"
    ]


def test_raw_and_gz_idx_folders_train(tmp_path):
    for gz in (True, False):
        d = make_tiny_idx_dir(tmp_path / f"idx{gz}", n_train=16, n_test=8, gz=gz)
        code, stderr = run_vaectl_in_process("train", *FAST, "--data", d, "--out", tmp_path / f"run{gz}")
        assert code == 0, stderr
        assert "16 train / 8 validation images" in stderr


def test_idx_labels_that_do_not_match_are_refused(tmp_path):
    d = make_tiny_idx_dir(tmp_path / "idx", n_train=16, n_test=8)
    write_idx(d / "t10k-labels-idx1-ubyte.gz", np.zeros(5, np.uint8))
    code, stderr = run_vaectl_in_process("train", *FAST, "--data", d, "--out", tmp_path / "run")
    assert_one_error_line(code, stderr, "labels of shape")


def test_a_failed_train_leaves_no_run_directory_behind(tmp_path):
    """Bad data found after the settings were checked: neither the run directory nor its missing parents remain."""
    empty = tmp_path / "empty"
    empty.mkdir()
    code, stderr = run_vaectl_in_process("train", *FAST, "--data", empty, "--out", tmp_path / "runs" / "new")
    assert_one_error_line(code, stderr, "empty")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty"]


def test_the_log_says_which_model_was_picked_only_when_it_was_picked(tmp_path):
    d = make_tiny_idx_dir(tmp_path / "idx", n_train=16, n_test=8)
    without_arch = [a for a in FAST if a not in ("--arch", "mlp")]
    code, stderr = run_vaectl_in_process("train", *without_arch, "--data", d, "--out", tmp_path / "picked")
    assert code == 0, stderr
    assert [s for s in stderr.splitlines() if s.startswith("model: ")] == [
        "model: mlp VAE for 28x28 grey images (small and grey; --arch resnet for the resnet)"
    ]
    code, stderr = run_vaectl_in_process("train", *FAST, "--data", d, "--out", tmp_path / "chosen")  # --arch mlp
    assert code == 0, stderr
    assert not [s for s in stderr.splitlines() if s.startswith("model: ")]


def test_the_last_line_names_the_export_and_that_command_works(tmp_path):
    d = make_tiny_idx_dir(tmp_path / "idx", n_train=16, n_test=8)
    run = tmp_path / "my run"  # a space: the command must come out quoted
    code, stderr = run_vaectl_in_process("train", *FAST, "--data", d, "--out", run)
    assert code == 0, stderr
    last = stderr.strip().splitlines()[-1]
    assert re.match(r"done in \d+ s: best validation loss ", last) and last.endswith(
        f"next: vaectl export {shlex.quote(str(run))}"
    )
    code, stderr = run_vaectl_in_process(*shlex.split(last.split("next: vaectl ", 1)[1]))
    assert code == 0, stderr
    assert (run / "onnx" / "encoder.onnx").is_file() and (run / "onnx" / "decoder.onnx").is_file()
