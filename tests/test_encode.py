"""`vaectl encode`: posterior means (and log-variances, labels) of images or a dataset as .npy or .csv."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import cli, expect_usage_error
from PIL import Image

from vaectl.data import load_data
from vaectl.infer import Encoder
from vaectl.infer.commands import encode


@pytest.fixture(scope="module")
def digit_files(tmp_path_factory) -> list[Path]:
    """Five MNIST test digits as PNG files, and their labels in the file names."""
    data = load_data()
    out = tmp_path_factory.mktemp("encode_digits")
    paths = []
    for i in range(5):
        path = out / f"digit{i}_{data.test_labels[i]}.png"
        Image.fromarray(data.test[i, 0]).save(path)
        paths.append(path)
    return paths


def read_csv(path) -> tuple[list[str], np.ndarray]:
    header = Path(path).read_text().splitlines()[0].split(",")
    return header, np.loadtxt(path, delimiter=",", skiprows=1, ndmin=2)


def test_npy_holds_the_posterior_means_of_encoder_encode(mlp_graphs, digit_files, tmp_path):
    out = tmp_path / "z.npy"
    r = cli("encode", "--encoder", mlp_graphs / "encoder.onnx", *digit_files, "--out", out)
    assert r.exit_code == 0, r.stderr
    latents = np.load(out)  # a plain .npy: no pickle, no npz
    assert latents.dtype.names == ("mu",) and latents.shape == (5,)
    mu, _ = Encoder(mlp_graphs / "encoder.onnx").encode(digit_files)
    assert latents["mu"].dtype == np.float32 and latents["mu"].shape == (5, 4)
    np.testing.assert_array_equal(latents["mu"], mu)


def test_csv_and_npy_hold_the_same_numbers_with_logvar(mlp_graphs, digit_files, tmp_path):
    enc = mlp_graphs / "encoder.onnx"
    for name in ("z.npy", "z.csv"):
        assert cli("encode", "--encoder", enc, *digit_files, "--logvar", "--out", tmp_path / name).exit_code == 0
    npy = np.load(tmp_path / "z.npy")
    header, rows = read_csv(tmp_path / "z.csv")
    assert header == [f"mu_{i}" for i in range(4)] + [f"logvar_{i}" for i in range(4)]
    mu, logvar = Encoder(enc).encode(digit_files)
    np.testing.assert_array_equal(npy["logvar"], logvar)
    # 9 significant digits: the csv's float32 values are exact
    np.testing.assert_array_equal(rows[:, :4].astype(np.float32), npy["mu"])
    np.testing.assert_array_equal(rows[:, 4:].astype(np.float32), npy["logvar"])


def test_data_folder_in_batches_with_its_labels(mlp_graphs, tiny_idx_dir, tmp_path):
    out = tmp_path / "z.csv"
    progress = []
    rows = encode(
        mlp_graphs / "encoder.onnx",
        out=out,
        data_dir=tiny_idx_dir,
        logvar=True,
        chunk_size=10,
        progress=lambda done, total: progress.append((done, total)),
    )
    ds = load_data(tiny_idx_dir)
    assert rows == len(ds.test) == 32
    assert progress == [(10, 32), (10, 32), (10, 32), (2, 32)]  # streamed: one batch at a time
    header, values = read_csv(out)
    assert header[-1] == "label"
    np.testing.assert_array_equal(values[:, -1].astype(np.int64), ds.test_labels)
    mu, logvar = Encoder(mlp_graphs / "encoder.onnx").encode(ds.test)
    np.testing.assert_allclose(values[:, :4], mu, atol=1e-6)
    np.testing.assert_allclose(values[:, 4:8], logvar, atol=1e-6)
    # the train split on request
    encode(mlp_graphs / "encoder.onnx", out=tmp_path / "train.npy", data_dir=tiny_idx_dir, split="train")
    train = np.load(tmp_path / "train.npy")
    np.testing.assert_array_equal(train["label"], ds.train_labels)


def test_no_images_means_the_embedded_sample_test_split(mlp_graphs, tmp_path):
    out = tmp_path / "z.npy"
    assert cli("encode", "--encoder", mlp_graphs / "encoder.onnx", "--out", out).exit_code == 0
    ds = load_data()
    latents = np.load(out)
    assert latents.dtype.names == ("mu", "label") and len(latents) == len(ds.test)
    np.testing.assert_array_equal(latents["label"], ds.test_labels)
    mu, _ = Encoder(mlp_graphs / "encoder.onnx").encode(ds.test)
    np.testing.assert_allclose(latents["mu"], mu, atol=1e-6)


def test_conditional_encoder_gets_the_data_labels_or_label(conditional_graphs, digit_files, tmp_path):
    enc_path = conditional_graphs / "encoder.onnx"
    enc = Encoder(enc_path)
    expect_usage_error(cli("encode", "--encoder", enc_path, *digit_files, "--out", tmp_path / "z.npy"), "--label")
    assert not (tmp_path / "z.npy").exists()
    assert cli("encode", "--encoder", enc_path, *digit_files, "--label", 3, "--out", tmp_path / "z.npy").exit_code == 0
    latents = np.load(tmp_path / "z.npy")
    np.testing.assert_array_equal(latents["label"], np.full(5, 3))
    np.testing.assert_array_equal(latents["mu"], enc.encode(digit_files, label=3)[0])
    assert not np.allclose(latents["mu"], enc.encode(digit_files, label=5)[0])  # the label reaches the encoder
    assert cli("encode", "--encoder", enc_path, "--out", tmp_path / "all.npy").exit_code == 0
    ds = load_data()
    latents = np.load(tmp_path / "all.npy")
    np.testing.assert_array_equal(latents["label"], ds.test_labels)
    np.testing.assert_allclose(latents["mu"], enc.encode(ds.test, label=ds.test_labels)[0], atol=1e-6)


def test_bad_input_is_one_line_exit_2_and_leaves_old_output(mlp_graphs, conditional_graphs, digit_files, tmp_path):
    enc, dec = mlp_graphs / "encoder.onnx", mlp_graphs / "decoder.onnx"
    out = tmp_path / "z.npy"
    out.write_bytes(b"old")
    (tmp_path / "notes.png").write_text("not an image\n")
    cases = [
        (["--encoder", enc, *digit_files, "--out", tmp_path / "z.png"], ".npy or .csv"),
        (["--encoder", enc, *digit_files], "--out"),
        (["--encoder", dec, *digit_files, "--out", out], "is an exported decoder"),
        (["--encoder", enc, *digit_files, tmp_path / "notes.png", "--out", out], "notes.png"),
        (["--encoder", enc, tmp_path / "missing.png", "--out", out], "no such file"),
        (["--encoder", enc, *digit_files, "--data", tmp_path, "--out", out], "not both"),
        (["--encoder", enc, "--data", tmp_path / "nope", "--out", out], "no such data directory"),
        (["--encoder", enc, *digit_files, "--label", 3, "--out", out], "unconditional"),
        (["--encoder", conditional_graphs / "encoder.onnx", "--label", 3, "--out", out], "labels each image"),
        (["--encoder", conditional_graphs / "encoder.onnx", *digit_files, "--label", 12, "--out", out], "out of range"),
        (["--encoder", enc, *digit_files, "--chunk-size", 0, "--out", out], "--chunk-size must be at least 1"),
        (["--encoder", enc, *digit_files, "--out", tmp_path / "nope" / "z.npy"], "does not exist"),
        ([*digit_files, "--out", out], "--encoder"),
        (["--encoder", enc, "--demo", "--out", out], "not both"),
    ]
    for args, fragment in cases:
        expect_usage_error(cli("encode", *args), fragment)
    assert out.read_bytes() == b"old"  # a failure part-way (notes.png is the 6th image) wrote nothing
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.png", "z.npy"]


def test_python_api_takes_a_batch_array(mlp_graphs, tmp_path):
    x = load_data().test[:7]  # uint8 (7, 1, 28, 28)
    enc = Encoder(mlp_graphs / "encoder.onnx")
    assert encode(enc, x, tmp_path / "z.npy", logvar=True, chunk_size=3) == 7
    latents = np.load(tmp_path / "z.npy")
    mu, logvar = enc.encode(x)
    np.testing.assert_allclose(latents["mu"], mu, atol=1e-6)
    np.testing.assert_allclose(latents["logvar"], logvar, atol=1e-6)
