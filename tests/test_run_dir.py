"""A run directory that already holds a run: refused before anything is touched, or cleared by --overwrite."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("torch")

from conftest import cli, expect_usage_error, snapshot  # noqa: E402
from conftest import run_vaectl_in_process as cli_in_process

from vaectl.models.checkpoint import read_state  # noqa: E402
from vaectl.training import TrainConfig, train  # noqa: E402

MODEL_FLAGS = ["--arch", "mlp", "--latent-dim", "4", "--hidden", "32", "--batch-size", "16"]


@pytest.fixture
def finished_run(tmp_path, tiny_idx_dir) -> Path:
    """A 2-epoch run with grids, a graph export in onnx/ (as `vaectl export run --out run/onnx` makes) and a
    file of the user's, in a directory of its own."""
    run = tmp_path / "run"
    train(
        TrainConfig(out=str(run), data=str(tiny_idx_dir), epochs=2, batch_size=16, seed=0, device="cpu"),
        dict(arch="mlp", latent_dim=4, hidden=(32,)),
        log=lambda m: None,
    )
    assert cli_in_process("export", run, "--out", run / "onnx")[0] == 0
    (run / "notes.txt").write_text("my notes on this run\n")
    (run / "onnx" / "README.txt").write_text("exported for the demo\n")
    return run


def test_training_again_into_a_run_is_refused_and_touches_nothing(finished_run, tiny_idx_dir):
    before = snapshot(finished_run)
    r = cli("train", "--data", tiny_idx_dir, "--out", finished_run, "--epochs", 1, *MODEL_FLAGS)
    expect_usage_error(r, "already holds a training run")
    line = r.stderr.strip()
    for fragment in (
        "--resume",
        "--overwrite",
        "last.pt",
        "best.pt",
        "config.json",
        "metrics.jsonl",
        "images/ (4 files)",
        "onnx/",
    ):
        assert fragment in line, (fragment, line)
    assert snapshot(finished_run) == before  # byte for byte, hidden files included: nothing was touched


@pytest.mark.parametrize("leftover", ["config.json", "metrics.jsonl", "images/recon_epoch001.png", "onnx/decoder.onnx"])
def test_any_file_of_a_run_counts(tmp_path, tiny_idx_dir, leftover):
    """A run cut short before its first checkpoint, or one whose checkpoints were moved away, is still a run."""
    out = tmp_path / "out"
    (out / leftover).parent.mkdir(parents=True, exist_ok=True)
    (out / leftover).write_bytes(b"from an earlier run")
    r = cli("train", "--data", tiny_idx_dir, "--out", out, "--epochs", 1, *MODEL_FLAGS)
    expect_usage_error(r, "--overwrite")
    assert (out / leftover).read_bytes() == b"from an earlier run"


def test_a_directory_without_a_run_is_used_as_it_is(tmp_path, tiny_idx_dir):
    out = tmp_path / "out"
    (out / "images").mkdir(parents=True)
    (out / "notes.txt").write_text("mine")
    (out / "images" / "cover.png").write_bytes(b"mine too")
    code, stderr = cli_in_process(
        "train", "--data", tiny_idx_dir, "--out", out, "--epochs", 1, "--grid-every", 0, *MODEL_FLAGS
    )
    assert code == 0, stderr
    assert (out / "last.pt").is_file() and (out / "notes.txt").read_text() == "mine"
    assert (out / "images" / "cover.png").read_bytes() == b"mine too"


def test_overwrite_removes_the_runs_files_and_nothing_else(finished_run, tiny_idx_dir):
    old_grids = sorted(p.name for p in (finished_run / "images").iterdir())
    assert old_grids == ["recon_epoch001.png", "recon_epoch002.png", "samples_epoch001.png", "samples_epoch002.png"]
    code, stderr = cli_in_process(
        "train",
        "--data",
        tiny_idx_dir,
        "--out",
        finished_run,
        "--epochs",
        1,
        "--grid-every",
        0,
        "--overwrite",
        *MODEL_FLAGS,
    )
    assert code == 0, stderr
    assert f"--overwrite: removed a training run from {finished_run}" in stderr
    assert "kept what vaectl did not write: notes.txt, onnx/" in stderr
    assert read_state(finished_run / "last.pt")["epoch"] == 1  # the new run's
    assert not (finished_run / "best.pt").exists() or read_state(finished_run / "best.pt")["epoch"] == 1
    assert [r for r in (finished_run / "metrics.jsonl").read_text().splitlines()][0].startswith('{"epoch": 1,')
    assert len((finished_run / "metrics.jsonl").read_text().splitlines()) == 1
    assert list((finished_run / "images").iterdir()) == []  # the old run's grids are gone (this run writes none)
    # the old export is gone (its graphs came from the deleted checkpoint); the user's files stay
    assert sorted(p.name for p in (finished_run / "onnx").iterdir()) == ["README.txt"]
    assert (finished_run / "notes.txt").read_text() == "my notes on this run\n"


def test_overwrite_removes_an_export_directory_it_empties(finished_run, tiny_idx_dir):
    (finished_run / "onnx" / "README.txt").unlink()
    code, stderr = cli_in_process(
        "train",
        "--data",
        tiny_idx_dir,
        "--out",
        finished_run,
        "--epochs",
        1,
        "--grid-every",
        0,
        "--overwrite",
        *MODEL_FLAGS,
    )
    assert code == 0, stderr
    assert not (finished_run / "onnx").exists()


def test_overwrite_cannot_be_combined_with_resume(finished_run):
    before = snapshot(finished_run)
    expect_usage_error(cli("train", "--resume", finished_run, "--overwrite"), "cannot be combined with --resume")
    assert snapshot(finished_run) == before


def test_resume_is_not_refused_and_sweeps_the_temp_files_a_crash_left(finished_run):
    # what a SIGKILL mid-save leaves (tests/test_training_signals.py kills real runs, in the slow tier), and
    # hidden files of the same shape that vaectl did not write
    crashed = [
        ".last.pt.0123456789ab.tmp",
        ".metrics.jsonl.0123456789ab.tmp",
        "images/.recon_epoch002.png.0a1b2c3d4e5f.tmp",
    ]
    foreign = [".notes.txt.0123456789ab.tmp", "onnx/.decoder.onnx.0123456789ab.tmp"]
    for name in crashed + foreign:
        (finished_run / name).write_bytes(b"half a file")
    code, stderr = cli_in_process("train", "--resume", finished_run, "--epochs", 3)
    assert code == 0, stderr
    assert read_state(finished_run / "last.pt")["epoch"] == 3
    assert [name for name in crashed + foreign if (finished_run / name).exists()] == foreign


def test_library_train_refuses_too_and_overwrite_is_an_argument(finished_run, tiny_idx_dir):
    from vaectl.errors import UserInputError

    tcfg = TrainConfig(out=str(finished_run), data=str(tiny_idx_dir), epochs=1, batch_size=16, grid_every=0)
    with pytest.raises(UserInputError, match="already holds a training run"):
        train(tcfg, dict(arch="mlp", latent_dim=4, hidden=(32,)), log=lambda m: None)
    train(tcfg, dict(arch="mlp", latent_dim=4, hidden=(32,)), log=lambda m: None, overwrite=True)
    assert read_state(finished_run / "last.pt")["epoch"] == 1


def test_conditional_sample_grid_shows_every_class_one_row_each():
    """10 classes: a 10 x 8 grid, row r decoded with class r and the same 8 latents in every row."""
    import numpy as np
    import torch

    from vaectl.models import VAE, VAEConfig
    from vaectl.training.run_dir import grid_images

    torch.manual_seed(0)
    model = VAE(VAEConfig(arch="mlp", latent_dim=2, hidden=(8,), height=6, width=6, num_classes=10)).eval()
    z_fixed = torch.randn(64, 2)
    x_val, y_val = torch.randint(0, 256, (8, 1, 6, 6), dtype=torch.uint8), torch.arange(8)
    grid = grid_images(model, x_val, y_val, z_fixed)["samples"]
    assert grid.shape[:2] == (10 * 8 + 2, 8 * 8 + 2)  # 10 rows of 8 images of 6 px, 2 px padding
    with torch.no_grad():
        for r in (0, 8, 9):
            row = torch.sigmoid(model.decoder(z_fixed[:8], torch.full((8,), r)))  # (8, 1, 6, 6)
            expected = np.clip(np.round(row.numpy() * 255), 0, 255).astype(np.uint8)
            for c in (0, 7):
                cell = grid[2 + r * 8 : 8 + r * 8, 2 + c * 8 : 8 + c * 8]
                assert np.abs(cell.astype(int) - expected[c, 0]).max() <= 1


def test_recon_grid_shows_the_encoders_mu_without_refinement():
    """A refining resnet: the grid's second row is decoder(encoder's mu), not the refined reconstruction."""
    import numpy as np
    import torch

    from vaectl.files import to_uint8_images
    from vaectl.models import VAE, VAEConfig
    from vaectl.training.run_dir import grid_images

    torch.manual_seed(0)
    cfg = VAEConfig(arch="resnet", channels=3, height=16, width=16, latent_dim=3, conv_channels=(2, 4), refine_steps=5)
    model = VAE(cfg).eval()
    x_val = torch.randint(0, 256, (8, 3, 16, 16), dtype=torch.uint8)
    grid = grid_images(model, x_val, None, torch.randn(64, 3))["recon"]  # (2 * 18 + 2, 8 * 18 + 2, 3)
    x = x_val.float() / 255
    with torch.no_grad():
        unrefined = to_uint8_images(torch.sigmoid(model.decoder(model.encoder(x, None)[0], None)).numpy())
    refined = to_uint8_images(model.reconstruct(x).numpy())
    assert not np.array_equal(unrefined, refined)  # the refinement does change these reconstructions
    for c in (0, 7):
        cell = grid[20:36, 2 + c * 18 : 18 + c * 18]  # (16, 16, 3)
        assert np.abs(cell.astype(int) - unrefined[c].astype(int)).max() <= 1
