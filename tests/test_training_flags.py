"""The GPU flags on the CPU: `--amp` (bf16 autocast) and `--compile` (torch.compile, inductor with the system C
compiler) each train 2 short epochs through the CLI, as a user would, and the runs export and generate."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from conftest import cli, make_tiny_idx_dir, run_vaectl

torch = pytest.importorskip("torch")

TINY = [  # with --data: 400 training images at batch 64, so each epoch ends on a short batch of 16
    "--latent-dim",
    "4",
    "--hidden",
    "64",
    "--batch-size",
    "64",
    "--epochs",
    "2",
    "--grid-every",
    "0",
    "--device",
    "cpu",
    "--seed",
    "0",
]


def metrics(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return make_tiny_idx_dir(tmp_path_factory.mktemp("idx"), n_train=400, n_test=100)


@pytest.fixture(scope="module")
def fp32_run(tmp_path_factory, data) -> Path:
    out = tmp_path_factory.mktemp("fp32")
    result = cli("train", "--data", data, *TINY, "--out", out)
    assert result.exit_code == 0, result.stderr
    return out


def export_and_generate(run: Path, out: Path) -> np.ndarray:
    """Export through the CLI (which verifies ONNX against PyTorch) and decode through onnxruntime."""
    from vaectl.infer import Decoder

    result = cli("export", run, "--out", out)
    assert result.exit_code == 0, result.stderr
    assert "decoder.image       max abs diff vs PyTorch" in result.stderr
    return Decoder(out / "decoder.onnx").sample(8, seed=0)


def assert_fp32_weights_like(run: Path, reference: Path) -> None:
    """The checkpoint holds the eager model's parameter names and float32 tensors, whatever the flags were."""
    got = torch.load(run / "last.pt", weights_only=True)["model"]
    want = torch.load(reference / "last.pt", weights_only=True)["model"]
    assert list(got) == list(want)  # no `_orig_mod.` (compile) or `module.` (DDP) prefixes
    assert all(t.dtype == torch.float32 for t in got.values())


def test_amp_trains_two_epochs_in_bf16_and_exports(data, fp32_run, tmp_path):
    run = tmp_path / "amp"
    result = cli("train", "--data", data, *TINY, "--amp", "--out", run)
    assert result.exit_code == 0, result.stderr
    amp, fp32 = metrics(run), metrics(fp32_run)
    assert [m["epoch"] for m in amp] == [1, 2]
    assert amp[1]["val_loss"] < amp[0]["val_loss"]  # it learns
    # bf16 autocast really ran: the same seed gives different numbers than fp32, yet close to them
    assert amp[1]["train_loss"] != fp32[1]["train_loss"]
    assert abs(amp[1]["val_loss"] - fp32[1]["val_loss"]) < 0.02 * fp32[1]["val_loss"]
    assert_fp32_weights_like(run, fp32_run)
    images = export_and_generate(run, tmp_path / "onnx")
    assert images.shape == (8, 28, 28) and images.std() > 0


def test_amp_conv_model_trains_and_exports(tmp_path):
    """bf16 convolutions and transposed convolutions on the CPU (the conv model is the GPU recommendation)."""
    data = make_tiny_idx_dir(tmp_path / "idx", n_train=128, n_test=32)
    run = tmp_path / "amp-conv"
    result = cli(
        "train",
        "--data",
        data,
        "--arch",
        "conv",
        "--conv-channels",
        "8,16",
        "--latent-dim",
        "4",
        "--amp",
        "--batch-size",
        "64",
        "--epochs",
        "2",
        "--grid-every",
        "0",
        "--device",
        "cpu",
        "--out",
        run,
    )
    assert result.exit_code == 0, result.stderr
    assert all(np.isfinite(m["val_loss"]) for m in metrics(run))
    assert export_and_generate(run, tmp_path / "onnx").shape == (8, 28, 28)


@pytest.mark.slow  # minutes: inductor compiles C++ kernels with the system compiler
def test_compiled_run_trains_and_its_checkpoint_exports(data, fp32_run, tmp_path):
    # a fresh process, as a user runs it: torch.compile's state stays out of the test process. An empty
    # inductor cache of its own shows that inductor compiled (C++ kernels with the system compiler), not just
    # that a flag was accepted. TORCH_LOGS=recompiles makes dynamo log each recompilation: the epoch's last
    # batch (400 images at batch 64: 16) must not cause one
    run, cache = tmp_path / "compiled", tmp_path / "inductor-cache"
    env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": str(cache), "TORCH_LOGS": "recompiles"}
    r = run_vaectl("train", "--data", data, *TINY, "--compile", "--out", run, env=env, timeout=600)
    assert r.returncode == 0, r.stderr
    assert "ecompil" not in r.stderr, r.stderr  # "Recompiling function forward ..."
    assert list(cache.rglob("*.so")) and list(cache.rglob("*.py")), sorted(p.name for p in cache.rglob("*"))
    compiled, fp32 = metrics(run), metrics(fp32_run)
    assert [m["epoch"] for m in compiled] == [1, 2]
    # the compiled graph computes the same model: same seed, same data order, float32 rounding apart
    assert abs(compiled[1]["val_loss"] - fp32[1]["val_loss"]) < 0.01 * fp32[1]["val_loss"]
    assert_fp32_weights_like(run, fp32_run)
    images = export_and_generate(run, tmp_path / "onnx")
    assert images.shape == (8, 28, 28) and images.std() > 0


def test_threads_sets_torchs_threads_and_changes_no_figure(tmp_path, monkeypatch):
    data = make_tiny_idx_dir(tmp_path / "data", n_train=512, n_test=64)
    before = torch.get_num_threads()
    try:
        result = cli("train", *TINY, "--data", data, "--threads", "2", "--out", tmp_path / "two")
        assert result.exit_code == 0, result.stderr
        assert torch.get_num_threads() == 2
        config = json.loads((tmp_path / "two" / "config.json").read_text())
        assert config["train"]["threads"] == 2
        # a resumed run may run on another machine: --threads is the machine's, so resume takes it
        result = cli("train", "--resume", tmp_path / "two", "--epochs", "3", "--threads", "1")
        assert result.exit_code == 0, result.stderr
        assert torch.get_num_threads() == 1
        monkeypatch.setenv("VAECTL_THREADS", "1")
        result = cli("train", *TINY, "--data", data, "--out", tmp_path / "env")
        assert result.exit_code == 0, result.stderr
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
    two, one = metrics(tmp_path / "two")[:2], metrics(tmp_path / "env")
    assert len(two) == len(one) == 2
    for a, b in zip(two, one):
        for key in ("train_loss", "val_loss", "val_kl"):
            assert a[key] == pytest.approx(b[key], rel=1e-5), key


def test_bad_thread_counts_are_one_line_errors(tmp_path, monkeypatch):
    result = cli("train", *TINY, "--threads", "0", "--out", tmp_path / "zero")
    assert result.exit_code == 2 and result.stderr.strip().splitlines() == [
        "error: --threads must be a whole number of at least 1, got 0"
    ]
    monkeypatch.setenv("VAECTL_THREADS", "many")
    result = cli("train", *TINY, "--out", tmp_path / "env")
    assert result.exit_code == 2 and result.stderr.strip().splitlines() == [
        "error: VAECTL_THREADS='many': give a whole number of threads, at least 1"
    ]
    assert not (tmp_path / "zero").exists() and not (tmp_path / "env").exists()


def test_a_new_runs_recipe_is_picked_from_its_images_and_explicit_values_win():
    from vaectl.errors import render
    from vaectl.models.presets import IMAGE_RECIPE, SMALL_IMAGE_TRAIN
    from vaectl.training.config import TrainConfig, data_recipe, resolve, resolve_for_images

    assert resolve(image_shape=(1, 28, 28)) == ({}, TrainConfig())  # the tutorial's images: the MLP default as it is
    model, tcfg = resolve(image_shape=(3, 64, 64))
    assert model["arch"] == "resnet" and model["likelihood"] == "gaussian-learned"
    assert model["conv_channels"] == (16, 32, 64, 128) and tcfg.hflip
    recipe = IMAGE_RECIPE.train
    assert (tcfg.epochs, tcfg.batch_size, tcfg.lr) == (recipe["epochs"], recipe["batch_size"], recipe["lr"])
    assert tcfg.kl_warmup == recipe["epochs"] / 4  # the warm-up follows its epochs
    small = resolve(image_shape=(3, 32, 32))[1]  # up to 32 px: its own epochs and batch size
    assert (small.epochs, small.batch_size) == (SMALL_IMAGE_TRAIN["epochs"], SMALL_IMAGE_TRAIN["batch_size"])
    assert (small.epochs, small.batch_size) != (tcfg.epochs, tcfg.batch_size)
    model, tcfg = resolve(image_shape=(3, 64, 64), epochs=4, beta=0.5, latent_dim=8)  # explicit values win
    assert (model["arch"], model["beta"], model["latent_dim"], tcfg.epochs, tcfg.kl_warmup) == (
        "resnet",
        0.5,
        8,
        4,
        1.0,
    )
    assert resolve(image_shape=(3, 64, 64), arch="mlp") == ({"arch": "mlp"}, TrainConfig())  # --arch mlp: as before
    grey = resolve(image_shape=(1, 28, 28), arch="resnet")
    assert grey[0]["conv_channels"] == (32, 64, 128) and not grey[1].hflip  # asked for: sized for them
    assert resolve("quality", image_shape=(3, 64, 64))[0]["arch"] == "mlp"  # a preset is a whole recipe
    assert "arch" not in resolve(image_shape=(3, 64, 64), conditional=True)[0]  # the conditional recipe stays
    assert render(data_recipe((3, 32, 32))[1]) == (
        "model: resnet VAE for 32x32 RGB images (colour; arch=mlp for the MLP); "
        "mirrored left to right, hflip=False to keep them as they are"
    )
    assert render(data_recipe((3, 32, 32), hflip=False)[1]) == (  # told not to mirror: the line does not say so
        "model: resnet VAE for 32x32 RGB images (colour; arch=mlp for the MLP)"
    )
    assert data_recipe((3, 32, 32), arch="conv") == (None, None)
    assert data_recipe((3, 32, 32), arch="resnet")[1] is None  # the user's choice: nothing picked to explain
    assert data_recipe((1, 28, 28), arch="mlp") == (None, None)
    model, tcfg, note = resolve_for_images((3, 32, 32), epochs=4)
    assert (model, tcfg) == resolve(image_shape=(3, 32, 32), epochs=4) and note.startswith("model: resnet VAE")
