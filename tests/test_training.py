"""Training end to end: outputs, reproducibility, resume, atomic saves, Ctrl-C, NaN, and SIGKILL crash safety."""

from __future__ import annotations

import importlib
import json
import math
import re
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from conftest import make_colour_folder, run_vaectl  # noqa: E402
from conftest import run_vaectl_in_process as cli_in_process
from PIL import Image  # noqa: E402

from vaectl.contract import informative_dims  # noqa: E402
from vaectl.errors import TrainingDivergedError, WriteFailedError  # noqa: E402
from vaectl.files import atomic_write  # noqa: E402
from vaectl.models import VAEConfig  # noqa: E402
from vaectl.models.checkpoint import Checkpoint, read_state, save_state  # noqa: E402
from vaectl.models.vae import LOG_SIGMA_START, VAE  # noqa: E402
from vaectl.training import TrainConfig, train  # noqa: E402
from vaectl.training.steps import time_left, wall_time  # noqa: E402

train_module = importlib.import_module("vaectl.training.loop")
MODEL = dict(arch="mlp", latent_dim=4, hidden=(32,))
MODEL_FLAGS = ["--arch", "mlp", "--latent-dim", "4", "--hidden", "32"]
TIMING_FIELDS = ("seconds", "images_per_sec")  # the only metrics allowed to differ between identical runs
METRIC_FIELDS = {
    "epoch",
    "step",
    "lr",
    "beta",
    "train_loss",
    "train_recon",
    "train_kl",
    "val_loss",
    "val_recon",
    "val_kl",
    "train_weighted_kl",
    "val_weighted_kl",
    "val_bits_per_dim",
    "kl_per_dim",
    "informative_dims",
    "active_units",
    "seconds",
    "images_per_sec",
}


def quick_train(out, data, epochs=2, resume=None, log=lambda m: None, resume_epochs=None, **train_kw):
    tcfg = TrainConfig(
        out=str(out), data=str(data), epochs=epochs, batch_size=16, seed=0, grid_every=0, device="cpu", **train_kw
    )
    return train(tcfg, MODEL, resume=resume, log=log, resume_epochs=resume_epochs)


def read_metrics(run_dir) -> list[dict]:
    return [json.loads(line) for line in (Path(run_dir) / "metrics.jsonl").read_text().splitlines()]


def without_timing(records):
    return [{k: v for k, v in r.items() if k not in TIMING_FIELDS} for r in records]


def weights(path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)["model"]


def assert_same_weights(a, b):
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys()
    for k in wa:
        assert torch.equal(wa[k], wb[k]), k


# ----------------------------------------------------------------------------- outputs


def test_smoke_validation_loss_falls_on_the_embedded_sample(tiny_mlp_run):
    records = read_metrics(tiny_mlp_run)
    assert [r["epoch"] for r in records] == [1, 2]
    assert records[1]["val_loss"] < records[0]["val_loss"]
    # an untrained model scores ~ 784 * log 2 = 543 nats per image under the Bernoulli likelihood
    assert records[0]["val_loss"] < 400


def test_metrics_record_every_field_consistently(tiny_mlp_run):
    cfg = json.loads((tiny_mlp_run / "config.json").read_text())
    for r in read_metrics(tiny_mlp_run):
        assert set(r) >= METRIC_FIELDS
        assert len(r["kl_per_dim"]) == cfg["model"]["latent_dim"] == 4
        assert 0 <= r["active_units"] <= 4
        beta = cfg["model"]["beta"]
        assert r["val_loss"] == pytest.approx(r["val_recon"] + beta * r["val_kl"], rel=1e-6)
        # validation weighs the KL by the run's beta; training by each step's, which the default warm-up (a
        # quarter of the epochs: the first half of epoch 1 here) ramps up from 0 (train: loss - recon, float32
        # rounding of the per-batch losses apart)
        assert r["val_weighted_kl"] == pytest.approx(beta * r["val_kl"], rel=1e-6)
        assert r["train_loss"] == pytest.approx(r["train_recon"] + r["train_weighted_kl"], abs=1e-3)
        if r["epoch"] - 1 >= cfg["train"]["kl_warmup"] == 0.5:
            assert r["train_weighted_kl"] == pytest.approx(beta * r["train_kl"], abs=1e-3)
        else:
            assert 0 < r["train_weighted_kl"] < beta * r["train_kl"]
        assert r["val_kl"] == pytest.approx(sum(r["kl_per_dim"]), abs=1e-3)
        assert r["informative_dims"] == len(informative_dims(r["kl_per_dim"]))
        assert r["seconds"] > 0 and r["images_per_sec"] > 0


def test_run_directory_holds_checkpoints_config_and_grids(tmp_path, tiny_idx_dir):
    out = tmp_path / "run"
    tcfg = TrainConfig(out=str(out), data=str(tiny_idx_dir), epochs=2, batch_size=16, grid_every=1, device="cpu")
    train(tcfg, MODEL, log=lambda m: None)
    for name in ("last.pt", "best.pt", "config.json", "metrics.jsonl"):
        assert (out / name).is_file(), name
    cfg = json.loads((out / "config.json").read_text())
    assert VAEConfig.from_dict(cfg["model"]) == Checkpoint.load(out / "last.pt").config
    assert cfg["train"]["epochs"] == 2
    for epoch in (1, 2):
        samples = Image.open(out / "images" / f"samples_epoch{epoch:03d}.png")
        recon = Image.open(out / "images" / f"recon_epoch{epoch:03d}.png")
        assert samples.size == (8 * 30 + 2, 8 * 30 + 2)  # 8x8 grid of 28 px images, 2 px padding
        assert recon.size == (8 * 30 + 2, 2 * 30 + 2)  # 8 originals above their 8 reconstructions
    assert not list(out.rglob(".*.tmp"))


def test_checkpoints_load_with_weights_only(tiny_mlp_run):
    best_epoch = min(read_metrics(tiny_mlp_run), key=lambda r: r["val_loss"])["epoch"]
    for name, epoch in (("last.pt", 2), ("best.pt", best_epoch)):
        ckpt = torch.load(tiny_mlp_run / name, map_location="cpu", weights_only=True)
        assert ckpt["epoch"] == epoch and {"optimizer", "rng", "scheduler"} <= set(ckpt)
        model = VAE(VAEConfig.from_dict(ckpt["config"]))
        model.load_state_dict(ckpt["model"])  # strict: every weight present, shapes right


def test_best_pt_holds_the_lowest_validation_loss(tmp_path, tiny_idx_dir):
    quick_train(tmp_path / "run", tiny_idx_dir, epochs=3)
    records = read_metrics(tmp_path / "run")
    best = read_state(tmp_path / "run" / "best.pt")
    assert best["best_val"] == min(r["val_loss"] for r in records)
    assert best["epoch"] == min(records, key=lambda r: r["val_loss"])["epoch"]


# ----------------------------------------------------------------------------- schedules


@pytest.mark.parametrize(
    "step, total, schedule, expected",
    [
        (0, 100, "constant", 1.0),
        (99, 100, "constant", 1.0),
        (0, 100, "onecycle", 0.1),  # linear warm-up over the first 10% of the steps ...
        (4, 100, "onecycle", 0.5),
        (9, 100, "onecycle", 1.0),  # ... to the peak
        (10, 100, "onecycle", 1.0),  # then a cosine from the peak ...
        (55, 100, "onecycle", 0.01 + 0.99 * 0.5),  # half way
        (100, 100, "onecycle", 0.01),  # ... down to 1% of it
        (250, 100, "onecycle", 0.01),  # and no further
        (0, 5, "onecycle", 1.0),  # fewer than 10 steps: a one-step warm-up
    ],
)
def test_lr_at(step, total, schedule, expected):
    assert train_module.lr_at(step, total, 2e-3, schedule) == pytest.approx(2e-3 * expected)


@pytest.mark.parametrize(
    "epochs_done, beta, warmup, expected",
    [
        (0.0, 3.0, 0.0, 3.0),  # no warm-up: beta from the first step
        (0.0, 3.0, 2.0, 0.0),  # warm-up: from 0 ...
        (0.5, 3.0, 2.0, 0.75),
        (1.0, 3.0, 2.0, 1.5),
        (2.0, 3.0, 2.0, 3.0),  # ... to beta after the warm-up's epochs
        (7.25, 3.0, 2.0, 3.0),
        (0.5, 0.0, 2.0, 0.0),  # beta 0 stays 0
    ],
)
def test_beta_at(epochs_done, beta, warmup, expected):
    assert train_module.beta_at(epochs_done, beta, warmup) == pytest.approx(expected)


def test_kl_warmup_ramps_the_beta_a_run_trains_and_logs(tmp_path, tiny_idx_dir):
    """--kl-warmup 2 on 4 steps an epoch: beta at each epoch's last step is (epoch - 1 + 3/4) / 2 x the run's beta."""
    quick_train(tmp_path / "run", tiny_idx_dir, epochs=3, kl_warmup=2.0, schedule="constant")
    beta = json.loads((tmp_path / "run" / "config.json").read_text())["model"]["beta"]
    records = read_metrics(tmp_path / "run")
    assert [r["beta"] for r in records] == pytest.approx([0.375 * beta, 0.875 * beta, beta])
    for r, (low, high) in zip(records, [(0.0, 0.375), (0.5, 0.875), (1.0, 1.0)]):
        # the KL entered the training loss with that epoch's betas: weighted / raw KL lies between them
        # (train_weighted_kl is loss - recon: float32 rounding of the per-batch losses apart)
        assert low * beta - 1e-4 <= r["train_weighted_kl"] / r["train_kl"] <= high * beta + 1e-4
        assert r["train_loss"] == pytest.approx(r["train_recon"] + r["train_weighted_kl"], abs=1e-9)
        assert r["val_weighted_kl"] == pytest.approx(beta * r["val_kl"], rel=1e-6)  # the run's beta, not the ramp's


# ----------------------------------------------------------------------------- the epoch line

EPOCH_LINE = re.compile(
    r"^epoch (\d+)/\d+  train \S+  val (\S+) \(recon (\S+) \+ (\S+) × kl (\S+)\)(?:  -elbo (\S+) bits/dim)?  "
    r"informative (\d+)/(\d+)  "
)


@pytest.mark.parametrize("beta", [0, 3])
def test_the_epoch_line_adds_up_and_counts_informative_dimensions(tmp_path, tiny_idx_dir, beta):
    """The tutorial's beta experiment: `val 38.36 (recon 29.00 + 3 × kl 3.12)`, `+ 0 × kl 23.27` at beta 0."""
    run = tmp_path / "run"
    code, stderr = cli_in_process(
        "train", "--preset", "tutorial", "--beta", beta, "--data", tiny_idx_dir, "--out", run, "--epochs", 2,
        "--batch-size", 16, "--grid-every", 0,
    )  # fmt: skip
    assert code == 0, stderr
    epoch_lines = [line for line in stderr.splitlines() if line.startswith("epoch ")]
    lines = [EPOCH_LINE.match(line) for line in epoch_lines]
    assert len(lines) == 2 and all(lines), stderr
    # the estimate of the epochs to go: on every line but the last
    assert re.search(r" img/s, \d+ s left", epoch_lines[0]) and " left" not in epoch_lines[1], stderr
    for m, record in zip(lines, read_metrics(run)):
        val, recon, weight, kl = (float(m.group(i)) for i in (2, 3, 4, 5))
        assert weight == beta
        assert recon + weight * kl == pytest.approx(val, abs=0.01 + 0.005 * weight)  # rounding of the parts
        assert record["val_weighted_kl"] == pytest.approx(beta * record["val_kl"])
        assert int(m.group(7)) == record["informative_dims"] == len(informative_dims(record["kl_per_dim"]))
        assert int(m.group(8)) == 2  # the tutorial's 2-D latent
        # the gaussian's bits/dim: the -ELBO at beta 1 with the constant its loss leaves out, per 8-bit value
        nll = record["val_recon"] + record["val_kl"] + 0.5 * 784 * math.log(math.pi)
        assert float(m.group(6)) == pytest.approx((nll + 784 * math.log(256)) / (784 * math.log(2)), abs=1e-3)
    assert "active units" not in stderr  # Burda's count is in metrics.jsonl, under its own name


@pytest.mark.parametrize(
    "seconds, left, took",
    [
        (0.2, "1 s", "0 s"),
        (42.4, "42 s", "42 s"),
        (89.6, "90 s", "1 min 30 s"),
        (806, "13 min", "13 min 26 s"),
        (7199, "120 min", "1 h 59 min"),
        (7500, "2.1 h", "2 h 05 min"),
    ],
)
def test_time_left_is_coarse_and_wall_time_exact(seconds, left, took):
    assert time_left(seconds) == left
    assert wall_time(seconds) == took


# ----------------------------------------------------------------------------- reproducibility and resume


def test_seed_makes_two_runs_identical(tmp_path, tiny_idx_dir):
    args = [
        "train",
        "--data",
        tiny_idx_dir,
        "--epochs",
        2,
        "--batch-size",
        16,
        "--grid-every",
        0,
        "--device",
        "cpu",
        *MODEL_FLAGS,
    ]
    r = run_vaectl(*args, "--out", tmp_path / "a", "--seed", 7)  # a fresh process ...
    assert r.returncode == 0, r.stderr
    assert cli_in_process(*args, "--out", tmp_path / "b", "--seed", 7)[0] == 0  # ... and this one, after other tests
    assert cli_in_process(*args, "--out", tmp_path / "c", "--seed", 8)[0] == 0
    a, b, other = (without_timing(read_metrics(tmp_path / name)) for name in "abc")
    assert a == b
    assert_same_weights(tmp_path / "a" / "last.pt", tmp_path / "b" / "last.pt")
    assert a != other  # the seed is what made them equal


class _StopAfterEpoch(Exception):
    pass


def test_resume_after_epoch_1_equals_an_uninterrupted_run(tmp_path, tiny_idx_dir):
    """Stop a 2-epoch run (one-cycle schedule) right after epoch 1's checkpoint, resume it, compare."""
    quick_train(tmp_path / "straight", tiny_idx_dir, epochs=2)

    def stop_after_epoch_1(message):
        if message.startswith("epoch 1/2"):
            raise _StopAfterEpoch

    with pytest.raises(_StopAfterEpoch):
        quick_train(tmp_path / "stopped", tiny_idx_dir, epochs=2, log=stop_after_epoch_1)
    assert read_state(tmp_path / "stopped" / "last.pt")["epoch"] == 1
    quick_train(tmp_path / "ignored", tiny_idx_dir, resume=str(tmp_path / "stopped"))
    assert not (tmp_path / "ignored").exists()  # a resumed run writes into its own directory
    assert_same_weights(tmp_path / "straight" / "last.pt", tmp_path / "stopped" / "last.pt")
    assert without_timing(read_metrics(tmp_path / "straight")) == without_timing(read_metrics(tmp_path / "stopped"))


def test_hflip_mirrors_the_images_flips_names_the_same_ones_on_every_process_and_resume():
    x = torch.arange(6 * 4, dtype=torch.uint8).view(6, 1, 1, 4)  # six 1x4 images
    batches = train_module.Batches(x, None, seed=3, world=1, rank=0, size=6, hflip=True)
    order, flips = batches.order(0), batches.flips(0)
    assert torch.equal(flips, train_module.Batches(x, None, 3, 1, 0, 6, True).flips(0))  # seed and epoch alone
    assert not torch.equal(flips, batches.flips(1)) and 0 < int(flips.sum()) < 6
    got, _ = batches.batch(order, 0, flips)
    for row, i in zip(got, order):
        want = x[i].float() / 255
        assert torch.equal(row, want.flip(-1) if flips[i] else want)
    assert train_module.Batches(x, None, 3, 1, 0, 6).flips(0) is None  # off: the images as they are


def test_resume_with_hflip_equals_an_uninterrupted_run(tmp_path, tiny_idx_dir):
    quick_train(tmp_path / "straight", tiny_idx_dir, epochs=2, hflip=True)

    def stop_after_epoch_1(message):
        if message.startswith("epoch 1/2"):
            raise _StopAfterEpoch

    with pytest.raises(_StopAfterEpoch):
        quick_train(tmp_path / "stopped", tiny_idx_dir, epochs=2, hflip=True, log=stop_after_epoch_1)
    quick_train(tmp_path / "ignored", tiny_idx_dir, resume=str(tmp_path / "stopped"))
    assert_same_weights(tmp_path / "straight" / "last.pt", tmp_path / "stopped" / "last.pt")
    quick_train(tmp_path / "plain", tiny_idx_dir, epochs=2)
    with pytest.raises(AssertionError):  # the mirroring changed what was trained
        assert_same_weights(tmp_path / "straight" / "last.pt", tmp_path / "plain" / "last.pt")


def test_cli_resume_extends_a_finished_run(tmp_path, tiny_idx_dir):
    # a schedule that does not depend on the total of epochs (the default warm-up is a quarter of them)
    quick_train(tmp_path / "straight", tiny_idx_dir, epochs=2, schedule="constant", kl_warmup=1)
    quick_train(tmp_path / "short", tiny_idx_dir, epochs=1, schedule="constant", kl_warmup=1)
    r = run_vaectl("train", "--resume", tmp_path / "short", "--epochs", 2)
    assert r.returncode == 0, r.stderr
    assert "epoch 2/2" in r.stderr
    assert_same_weights(tmp_path / "straight" / "last.pt", tmp_path / "short" / "last.pt")
    assert without_timing(read_metrics(tmp_path / "straight")) == without_timing(read_metrics(tmp_path / "short"))
    assert f"resuming {tmp_path / 'short'} after epoch 1 of 2: training epoch 2" in r.stderr
    # without --epochs a finished run has nothing left to do, says so and how to extend it, and touches nothing
    before = {p.name: p.read_bytes() for p in (tmp_path / "short").iterdir() if p.is_file()}
    code, stderr = cli_in_process("train", "--resume", tmp_path / "short")
    assert code == 0
    assert stderr.splitlines() == [
        f"{tmp_path / 'short'} has trained all its 2 epochs: nothing to do. To train it further, give a new "
        f"total of epochs: vaectl train --resume {tmp_path / 'short'} --epochs N (N > 2)"
    ]
    assert {p.name: p.read_bytes() for p in (tmp_path / "short").iterdir() if p.is_file()} == before
    code, stderr = cli_in_process("train", "--resume", tmp_path / "short", "--epochs", 1)
    assert code == 2 and stderr.startswith("error:") and "already trained 2 epochs" in stderr


def test_resume_says_where_it_continues_mid_epoch(tmp_path, tiny_idx_dir):
    run = tmp_path / "run"
    quick_train(run, tiny_idx_dir, epochs=2)
    ckpt = torch.load(run / "last.pt", weights_only=True)
    ckpt.update(epoch=1, step_in_epoch=2)  # as a Ctrl-C in epoch 2 leaves it
    save_state(
        run / "last.pt", {k: v for k, v in ckpt.items() if k not in ("format", "format_version", "payload_sha256")}
    )
    lines = []
    quick_train(tmp_path / "ignored", tiny_idx_dir, resume=str(run), log=lines.append)
    assert f"resuming {run} in epoch 2 of 2, at step 3 (1 epoch done)" in lines


def test_resume_refuses_another_out_and_other_settings_in_one_line(tmp_path, tiny_mlp_run):
    code, stderr = cli_in_process("train", "--resume", tiny_mlp_run, "--out", tmp_path / "elsewhere")
    assert code == 2 and len(stderr.splitlines()) == 1, stderr
    assert stderr.startswith(f"error: --out {tmp_path / 'elsewhere'}: a resumed run stays in its own directory")
    assert not (tmp_path / "elsewhere").exists()
    code, stderr = cli_in_process("train", "--resume", tiny_mlp_run, "--lr", "0.1", "--batch-size", 8)
    assert code == 2 and len(stderr.splitlines()) == 1, stderr
    assert stderr.startswith("error: --batch-size, --lr: a resumed run keeps its own settings")
    # --out naming the run itself is what --resume does anyway: accepted
    code, stderr = cli_in_process("train", "--resume", tiny_mlp_run, "--out", tiny_mlp_run)
    assert code == 0 and "nothing to do" in stderr


def test_cli_preset_sets_model_and_training_flags_and_explicit_flags_win(tmp_path, tiny_idx_dir):
    from vaectl.models.presets import PRESETS

    recipe = PRESETS["quality"]
    # --hidden and --batch-size given: they beat the preset; everything else comes from it
    code, stderr = cli_in_process(
        "train",
        "--preset",
        "quality",
        "--data",
        tiny_idx_dir,
        "--out",
        tmp_path / "run",
        "--epochs",
        1,
        "--grid-every",
        0,
        "--hidden",
        "16",
        "--batch-size",
        8,
    )
    assert code == 0, stderr
    cfg = json.loads((tmp_path / "run" / "config.json").read_text())
    assert cfg["model"]["hidden"] == [16] and cfg["train"]["batch_size"] == 8
    assert cfg["model"]["latent_dim"] == recipe.model["latent_dim"]
    assert cfg["model"]["context_channels"] == 16 and cfg["model"]["context_kernel"] == 7  # the row context
    assert cfg["train"]["lr"] == recipe.train["lr"] and cfg["train"]["kl_warmup"] == recipe.train["kl_warmup"]
    # the saved optimizer state is the fused Adam's (make_optimizer), which a resume reloads
    state = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    assert state["optimizer"]["param_groups"][0]["fused"] is True


def test_resume_drops_a_torn_metrics_line_and_a_redone_epoch(tmp_path, tiny_idx_dir):
    """A crash can land between appending an epoch's record and saving last.pt, or mid-append."""

    def stop_after_epoch_1(message):
        if message.startswith("epoch 1/"):
            raise _StopAfterEpoch

    run = tmp_path / "run"
    with pytest.raises(_StopAfterEpoch):
        quick_train(run, tiny_idx_dir, epochs=2, log=stop_after_epoch_1)
    with open(run / "metrics.jsonl", "a") as f:
        f.write(json.dumps({"epoch": 2, "val_loss": 1.0}) + "\n" + '{"epoch": 3, "val_lo')
    quick_train(run, tiny_idx_dir, resume=str(run))
    assert [r["epoch"] for r in read_metrics(run)] == [1, 2]
    assert read_metrics(run)[1]["val_loss"] != 1.0


# ----------------------------------------------------------------------------- atomic saves


def test_failing_save_leaves_the_old_checkpoint_byte_identical(tmp_path, tiny_mlp_run):
    target = tmp_path / "last.pt"
    target.write_bytes((tiny_mlp_run / "last.pt").read_bytes())
    before = target.read_bytes()
    # a value no checkpoint may hold (a function) fails the save before a byte reaches the file
    with pytest.raises(TypeError, match="cannot hold a function"):
        save_state(target, {"model": weights(target), "oops": lambda: None})
    assert target.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]


def test_atomic_write_that_raises_midway_leaves_no_trace(tmp_path):
    target = tmp_path / "best.pt"
    target.write_bytes(b"old contents")
    written = []

    def half_then_fail(f):
        f.write(b"new half")
        f.flush()
        written.extend(p.name for p in tmp_path.iterdir() if p.name != "best.pt")
        raise OSError(28, "No space left on device")

    with pytest.raises(
        WriteFailedError, match=r"cannot write \(No space left on device\); the previous best.pt is unchanged"
    ):
        atomic_write(target, half_then_fail)
    assert written and written[0].endswith(".tmp")  # the write really went to a temp file beside the target
    assert target.read_bytes() == b"old contents"
    assert [p.name for p in tmp_path.iterdir()] == ["best.pt"]


# ----------------------------------------------------------------------------- NaN


def test_nan_loss_stops_naming_epoch_and_step_and_keeps_last_pt(tmp_path, tiny_idx_dir, monkeypatch):
    steps_per_epoch = 64 // 16
    calls = {"n": 0}
    real_batch_loss = train_module.batch_loss

    def batch_loss_nan_at_epoch_2_step_3(*args, **kwargs):
        loss, recon, kl = real_batch_loss(*args, **kwargs)
        calls["n"] += 1
        if calls["n"] == steps_per_epoch + 3:
            loss = loss * float("nan")
        return loss, recon, kl

    monkeypatch.setattr(train_module, "batch_loss", batch_loss_nan_at_epoch_2_step_3)
    with pytest.raises(TrainingDivergedError, match=r"loss became nan at epoch 2, step 3;.*last good checkpoint"):
        quick_train(tmp_path / "run", tiny_idx_dir, epochs=3)
    ckpt = read_state(tmp_path / "run" / "last.pt")
    assert (ckpt["epoch"], ckpt["step_in_epoch"]) == (1, 0)
    assert all(torch.isfinite(t).all() for t in ckpt["model"].values())
    assert len(read_metrics(tmp_path / "run")) == 1


def test_cli_huge_learning_rate_stops_with_one_line(tmp_path, tiny_idx_dir):
    code, stderr = cli_in_process(
        "train",
        "--data",
        tiny_idx_dir,
        "--out",
        tmp_path / "run",
        "--epochs",
        3,
        "--batch-size",
        16,
        "--lr",
        "1e6",
        "--schedule",
        "constant",
        "--grid-every",
        0,
        *MODEL_FLAGS,
    )
    assert code == 1
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "at epoch" in errors[0] and ", step " in errors[0], stderr
    assert "Traceback" not in stderr
    torch.load(tmp_path / "run" / "last.pt", weights_only=True)


def test_a_learned_sigma_model_is_validated_with_the_sigma_that_fits_the_held_out_images():
    from vaectl.training.loss import reconstruction_loss

    cfg = VAEConfig(
        arch="resnet", channels=3, height=8, width=8, latent_dim=2, conv_channels=(2,), likelihood="gaussian-learned"
    )
    model = VAE(cfg).eval()
    x = torch.randint(0, 256, (12, 3, 8, 8), dtype=torch.uint8)
    torch.manual_seed(0)
    val = train_module.validation_metrics(model, x, None, 2.0, batch_size=5)
    torch.manual_seed(0)  # the same z draws, to score by hand
    xs = x.float() / 255
    logits = torch.cat([model(xs[i : i + 5])[0] for i in range(0, 12, 5)])
    mse = (xs - torch.sigmoid(logits)).pow(2).mean((0, 2, 3))  # (3,)
    assert torch.allclose(val["log_sigma"], 0.5 * mse.log(), atol=1e-5)
    by_hand = reconstruction_loss(logits.double(), xs.double(), "gaussian-learned", val["log_sigma"].double())
    assert val["recon"] == pytest.approx(by_hand.mean().item(), rel=1e-5)
    assert val["loss"] == pytest.approx(val["recon"] + 2.0 * val["kl"], rel=1e-9)
    # the learned sigma itself is not what scores the held-out images
    assert not torch.allclose(model.log_sigma.detach(), val["log_sigma"], atol=1e-3)


def test_each_epoch_ends_with_the_fitted_sigma_in_the_model_and_its_checkpoints(tmp_path, monkeypatch):
    folder = make_colour_folder(tmp_path / "imgs", n=40, size=(8, 8), classes=())
    fitted = []  # each epoch's validation sigma
    validation_metrics = train_module.validation_metrics

    def recording(*args, **kwargs):
        val = validation_metrics(*args, **kwargs)
        fitted.append(val["log_sigma"].clone())
        return val

    monkeypatch.setattr(train_module, "validation_metrics", recording)
    run = tmp_path / "run"
    train(
        out=str(run),
        data=str(folder),
        epochs=3,
        batch_size=8,
        arch="resnet",
        conv_channels=(2,),
        latent_dim=2,
        grid_every=0,
        threads=1,
    )
    last, best = Checkpoint.load(run, last=True), Checkpoint.load(run)
    assert len(fitted) == 3 and not torch.allclose(fitted[0], torch.full((3,), LOG_SIGMA_START), atol=0.1)
    assert torch.equal(last.weights["decoder.log_sigma"], fitted[-1])
    assert torch.equal(best.weights["decoder.log_sigma"], fitted[best.state.epoch - 1])
    assert last.model().trained_config().log_sigma == tuple(fitted[-1].tolist())  # what export writes


def test_validation_runs_in_chunks_that_bound_the_feature_maps_and_not_the_figures():
    cfg = VAEConfig(arch="resnet", channels=3, height=16, width=16, latent_dim=4, conv_channels=(2, 4))
    model = VAE(cfg).eval()
    x = torch.randint(0, 256, (20, 3, 16, 16), dtype=torch.uint8)
    torch.manual_seed(0)
    whole = train_module.validation_metrics(model, x, None, 1.0, batch_size=20)
    torch.manual_seed(0)
    chunked = train_module.validation_metrics(model, x, None, 1.0, batch_size=7)
    for key in ("kl", "posterior_var", "active_units"):  # the parts that do not depend on the z drawn
        assert math.isclose(whole[key], chunked[key], rel_tol=1e-5), key
    big = VAEConfig(arch="resnet", channels=3, height=64, width=64, conv_channels=(16, 32, 64, 128))
    assert train_module.validation_chunk(big) * 16 * 64 * 64 <= train_module.VALIDATION_FLOATS
    assert train_module.validation_chunk(VAEConfig()) == train_module.VALIDATION_CHUNK  # the MLP: as many as before
