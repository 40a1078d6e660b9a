"""A run remembers its data: config.json records one data source (an absolute --data folder, or the dataset),
and `eval RUN`, `explore RUN` and `encode --encoder RUN` use it when given no --data."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from conftest import make_tiny_idx_dir  # noqa: E402
from conftest import run_vaectl_in_process as cli_in_process

from vaectl import layout  # noqa: E402

FLAGS = ["--arch", "mlp", "--latent-dim", "4", "--hidden", "32", "--batch-size", "16", "--grid-every", "0"]
N_TEST = 24  # the tiny folder's test split: the embedded sample would give 1,000 images


@pytest.fixture(scope="module")
def data_run(tmp_path_factory) -> tuple[Path, Path]:
    """(run directory, its data folder): trained with `--data` given as a relative path, exported into RUN/onnx."""
    import os

    tmp = tmp_path_factory.mktemp("data_run")
    make_tiny_idx_dir(tmp / "digits", n_train=48, n_test=N_TEST)
    cwd = os.getcwd()
    os.chdir(tmp)  # `--data digits`, as typed in the directory that holds it
    try:
        code, stderr = cli_in_process("train", "--data", "digits", "--out", "run", "--epochs", 1, *FLAGS)
    finally:
        os.chdir(cwd)
    assert code == 0, stderr
    assert cli_in_process("export", tmp / "run", "--out", tmp / "run" / "onnx")[0] == 0
    return tmp / "run", tmp / "digits"


def test_config_json_records_the_data_folder_once_as_an_absolute_path(data_run):
    run, data = data_run
    train = json.loads((run / layout.CONFIG).read_text())["train"]
    assert train["data"] == str(data.resolve())
    assert train["dataset"] is None  # not "mnist-sample" beside the folder


def test_the_embedded_sample_is_recorded_as_the_dataset(tiny_mlp_run):
    train = json.loads((tiny_mlp_run / layout.CONFIG).read_text())["train"]
    assert (train["data"], train["dataset"]) == (None, "mnist-sample")


def test_eval_of_the_run_scores_its_own_data_from_anywhere(data_run, tmp_path, monkeypatch):
    run, _ = data_run
    from conftest import cli

    monkeypatch.chdir(tmp_path)  # not where --data was typed
    result = cli("eval", run, "--k", 2, "--json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["n"] == N_TEST


def test_explore_of_the_run_maps_its_own_data(data_run):
    from vaectl.explore import load_explore_model

    run, data = data_run
    model = load_explore_model(run)
    assert model.map["available"] and model.map["count"] == N_TEST


def test_encode_of_the_run_encodes_its_own_data(data_run, tmp_path):
    run, _ = data_run
    for encoder in (run, run / "onnx", run / "onnx" / layout.ENCODER):
        out = tmp_path / "latents.npy"
        code, stderr = cli_in_process("encode", "--encoder", encoder, "--out", out)
        assert code == 0, stderr
        assert np.load(out)["mu"].shape == (N_TEST, 4), encoder
        out.unlink()


def test_a_moved_data_folder_is_named_with_what_to_do(data_run, tmp_path):
    run, data = data_run
    moved = tmp_path / "run"
    shutil.copytree(run, moved)
    config = json.loads((moved / layout.CONFIG).read_text())
    config["train"]["data"] = str(tmp_path / "gone")
    (moved / layout.CONFIG).write_text(json.dumps(config))
    code, stderr = cli_in_process("encode", "--encoder", moved, "--out", tmp_path / "z.npy")
    assert code == 2 and stderr.splitlines() == [
        f"error: {moved} was trained on {tmp_path / 'gone'}, which is not there any more: give --data DIR"
    ]
    from vaectl.explore import load_explore_model

    model = load_explore_model(moved)
    assert not model.map["available"] and "not there any more: give data_dir DIR" in model.map["reason"]
    code, stderr = cli_in_process("explore", moved, "--site", tmp_path / "site")  # the page names the flag
    assert code == 0, stderr
    reason = json.loads((tmp_path / "site" / "api" / "map.json").read_text())["reason"]
    assert reason.endswith("which is not there any more: give --data DIR"), reason
    # --data still works
    assert cli_in_process("encode", "--encoder", moved, "--data", data, "--out", tmp_path / "z.npy")[0] == 0


def test_encode_and_explore_of_a_folder_run_read_it_with_the_runs_own_recipe(tmp_path):
    """A run on an image folder, resized (--image-size) and split with its own --seed: encode and explore hold
    out the images the run held out, read at the run's size, as eval and export do."""
    from PIL import Image

    from vaectl.data.sources import load_run_data
    from vaectl.explore import load_explore_model
    from vaectl.infer import Encoder

    folder = tmp_path / "shapes"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(40):
        Image.fromarray(rng.integers(0, 256, (20, 20), dtype=np.uint8)).save(folder / f"{i:02d}.png")
    run = tmp_path / "run"
    code, stderr = cli_in_process(
        "train", "--data", folder, "--image-size", 16, "--seed", 3, "--out", run, "--epochs", 1, *FLAGS
    )
    assert code == 0, stderr
    assert cli_in_process("export", run, "--out", run / "onnx")[0] == 0
    encoder = Encoder(run / "onnx" / layout.ENCODER)
    held_out = load_run_data(json.loads((run / layout.CONFIG).read_text())["train"], encoder.info.config, run).test
    assert not np.array_equal(
        held_out, load_run_data({"data": str(folder), "image_size": 16}, encoder.info.config, run).test
    )

    code, stderr = cli_in_process("encode", run / "onnx", "--out", tmp_path / "z.npy")
    assert code == 0, stderr
    np.testing.assert_array_equal(np.load(tmp_path / "z.npy")["mu"], encoder.encode(held_out)[0])
    assert load_explore_model(run).map["count"] == len(held_out)
