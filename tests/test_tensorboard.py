"""`vaectl train --tensorboard`: event files in the run directory, read back with TensorBoard's own reader."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from conftest import run_vaectl_in_process as cli_in_process  # noqa: E402
from PIL import Image  # noqa: E402

from vaectl import layout  # noqa: E402
from vaectl.training import tensorboard  # noqa: E402

FLAGS = ["--arch", "mlp", "--latent-dim", "4", "--hidden", "32", "--batch-size", "16", "--device", "cpu"]


def metrics(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / layout.METRICS).read_text().splitlines()]


def events(run: Path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run), size_guidance={"scalars": 0, "images": 0, "histograms": 0, "tensors": 0})
    acc.Reload()
    return acc


@pytest.fixture(scope="module")
def tb_run(tmp_path_factory) -> Path:
    pytest.importorskip("tensorboard")
    from conftest import make_tiny_idx_dir

    tmp = tmp_path_factory.mktemp("tb")
    data = make_tiny_idx_dir(tmp / "idx")
    run = tmp / "run"
    code, stderr = cli_in_process("train", "--data", data, "--out", run, "--epochs", 2, "--tensorboard", *FLAGS)
    assert code == 0, stderr
    return run


def test_every_metric_is_a_scalar_per_epoch(tb_run):
    acc, records = events(tb_run), metrics(tb_run)
    numeric = [k for k, v in records[0].items() if isinstance(v, (int, float)) and k != "epoch"]
    assert {"val_weighted_kl", "informative_dims", "active_units", "lr", "beta", "images_per_sec"} <= set(numeric)
    for field in numeric:
        points = acc.Scalars(tensorboard.TAGS[field])
        assert [p.step for p in points] == [1, 2], field  # the step axis counts epochs
        for point, record in zip(points, records):
            assert point.value == pytest.approx(record[field], rel=1e-6, abs=1e-9), field  # stored as float32


def test_kl_per_dimension_grids_and_a_description(tb_run):
    acc, records = events(tb_run), metrics(tb_run)
    tags = acc.Tags()
    per_dim = sorted(t for t in tags["scalars"] if t.startswith("kl_per_dim/"))
    assert per_dim == ["kl_per_dim/z0", "kl_per_dim/z1", "kl_per_dim/z2", "kl_per_dim/z3"]
    assert [p.value for p in acc.Scalars("kl_per_dim/z2")] == pytest.approx([r["kl_per_dim"][2] for r in records])
    assert [h.step for h in acc.Histograms("latent/kl_per_dim")] == [1, 2]
    for kind in ("samples", "recon"):
        images = acc.Images(f"grids/{kind}")
        assert [i.step for i in images] == [1, 2]
        png = Image.open(tb_run / layout.IMAGES / layout.grid_name(kind, 2))
        assert (images[-1].width, images[-1].height) == png.size  # the grid the PNG holds
    assert "about" in " ".join(tags["tensors"])  # the text that says what each tag is


def test_resume_appends_and_a_redone_epoch_is_not_logged_twice(tb_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(tb_run, run)
    epoch_2 = (run / layout.LAST_CHECKPOINT).read_bytes()
    assert cli_in_process("train", "--resume", run, "--epochs", 3)[0] == 0
    # a crash after epoch 3's events but before its checkpoint: the resumed run redoes epoch 3
    (run / layout.LAST_CHECKPOINT).write_bytes(epoch_2)
    code, stderr = cli_in_process("train", "--resume", run, "--epochs", 3)
    assert code == 0, stderr
    assert len(list(run.glob(layout.TENSORBOARD_EVENTS))) == 3  # each run appended a file of its own
    acc = events(run)
    for tag in ("loss/val_loss", "kl_per_dim/z0", "schedule/lr"):
        assert [p.step for p in acc.Scalars(tag)] == [1, 2, 3], tag
    assert [i.step for i in acc.Images("grids/samples")] == [1, 2, 3]
    assert acc.Scalars("loss/val_loss")[-1].value == pytest.approx(metrics(run)[-1]["val_loss"], rel=1e-6)


def test_overwrite_clears_the_event_files_too(tb_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(tb_run, run)
    data = tmp_path / "idx"
    from conftest import make_tiny_idx_dir

    make_tiny_idx_dir(data)
    code, stderr = cli_in_process("train", "--data", data, "--out", run, "--epochs", 1, "--overwrite", *FLAGS)
    assert code == 0, stderr
    assert "removed a training run" in stderr
    assert not list(run.glob(layout.TENSORBOARD_EVENTS))  # this run did not ask for TensorBoard


def test_without_tensorboard_one_line_and_exit_2_before_any_work(tmp_path, tiny_idx_dir, monkeypatch):
    from vaectl.training import loop

    for module in ("tensorboard", "torch.utils.tensorboard"):
        monkeypatch.setitem(sys.modules, module, None)  # import fails, as when it is not installed

    def no_data_please(*args, **kwargs):
        raise AssertionError("loaded the data before saying that tensorboard is missing")

    monkeypatch.setattr(loop, "load_data_on_device", no_data_please)
    code, stderr = cli_in_process("train", "--data", tiny_idx_dir, "--out", tmp_path / "run", "--tensorboard", *FLAGS)
    assert code == 2, stderr
    assert stderr.splitlines() == [
        "error: --tensorboard needs the tensorboard package: pip install tensorboard "
        "(or pip install 'vaectl[tensorboard]')"
    ]
    assert not (tmp_path / "run").exists()
