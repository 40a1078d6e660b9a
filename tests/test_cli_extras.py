"""`vaectl data-images` (dataset images as PNGs) and `vaectl traverse --encoder --image` (start from an image)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import cli, expect_usage_error, grid_cells, grid_shape, make_tiny_idx_dir, read_png
from PIL import Image

from vaectl.data import load_mnist_sample
from vaectl.infer import Decoder, Encoder


@pytest.fixture(scope="module")
def sample():
    return load_mnist_sample()


# ----------------------------------------------------------------------------- data-images


def test_data_images_label_out_dir_writes_the_first_test_images_of_that_class(sample, tmp_path):
    out = tmp_path / "eights"
    r = cli("data-images", "--label", 8, "-n", 2, "--out-dir", out)
    assert r.exit_code == 0, r.stderr
    files = sorted(out.glob("*.png"))
    assert len(files) == 2 and sorted(out.iterdir()) == files
    first, second = np.flatnonzero(sample.test_labels == 8)[:2]
    assert [f.name for f in files] == [f"test_{first:05d}_8.png", f"test_{second:05d}_8.png"]
    assert np.array_equal(read_png(files[0]), sample.test[first, 0])
    assert np.array_equal(read_png(files[1]), sample.test[second, 0])
    assert r.stdout.split() == [str(f) for f in files]  # the paths, one per line, to feed other commands


def test_data_images_grid_and_train_split(sample, tmp_path):
    grid = tmp_path / "grid.png"
    r = cli("data-images", "-n", 10, "--out", grid)
    assert r.exit_code == 0, r.stderr
    png = read_png(grid)
    assert png.shape == grid_shape(2, 8)  # 8 per row
    assert np.array_equal(grid_cells(png, 2, 8)[:10], sample.test[:10, 0])
    assert not grid_cells(png, 2, 8)[10:].any()  # the unused cells of the last row stay black

    threes = tmp_path / "threes.png"
    r = cli("data-images", "--split", "train", "--label", 3, "-n", 4, "--out", threes)
    assert r.exit_code == 0, r.stderr
    want = sample.train[sample.train_labels == 3][:4, 0]
    assert np.array_equal(grid_cells(read_png(threes), 1, 4), want)
    assert not np.array_equal(want, sample.test[sample.test_labels == 3][:4, 0])  # the split matters


def test_data_images_index_picks_images_by_their_0_based_index(sample, tmp_path):
    """--index 14 is test_00014 (the name data-images gives it, and the explorer's "test image 14"); ranges
    include both ends and repeat in the order given."""
    out = tmp_path / "picked"
    r = cli("data-images", "--index", 14, "--index", "3-5", "--out-dir", out)
    assert r.exit_code == 0, r.stderr
    names = [Path(line).name for line in r.stdout.split()]
    labels = sample.test_labels
    assert names == [f"test_{i:05d}_{labels[i]}.png" for i in (14, 3, 4, 5)]
    assert np.array_equal(read_png(out / names[0]), sample.test[14, 0])
    grid = tmp_path / "g.png"
    assert cli("data-images", "--index", "0-1", "--scale", 1, "--out", grid).exit_code == 0
    assert np.array_equal(grid_cells(read_png(grid), 1, 2), sample.test[:2, 0])
    for args, fragment in (
        (["--index", len(sample.test)], f"has {len(sample.test)} images (0 to {len(sample.test) - 1})"),
        (["--index", "5-3"], "a range (10-19)"),
        (["--index", "x"], "--index takes an image index"),
        (["--index", 1, "--label", 3], "--index or --label"),
    ):
        expect_usage_error(cli("data-images", *args, "--out", grid.with_name("bad.png")), fragment)


def test_data_images_from_a_labelled_image_folder_by_class_name(tmp_path):
    for name, shade in (("cat", 30), ("dog", 220)):
        (tmp_path / "imgs" / name).mkdir(parents=True)
        for i in range(10):
            Image.new("L", (6, 6), shade + i).save(tmp_path / "imgs" / name / f"{i}.png")
    out = tmp_path / "dogs"
    r = cli(
        "data-images", "--data", tmp_path / "imgs", "--split", "train", "--label", "dog", "-n", 50, "--out-dir", out
    )
    assert r.exit_code == 0, r.stderr
    files = sorted(out.glob("*.png"))
    from vaectl.data import load_data

    ds = load_data(tmp_path / "imgs")
    assert len(files) == int((ds.train_labels == ds.class_names.index("dog")).sum()) >= 5  # every dog, no cat
    assert all(f.name.endswith("_dog.png") for f in files)
    assert all(read_png(f).min() >= 220 for f in files)


def test_data_images_bad_input_is_one_line_exit_2(tmp_path):
    tiny = make_tiny_idx_dir(tmp_path / "tiny", n_train=16, n_test=8)  # its 8 test digits hold no 9
    flat = tmp_path / "flat"
    flat.mkdir()
    for i in range(4):
        Image.new("L", (8, 8), 40 * i).save(flat / f"{i}.png")
    out, out_dir = tmp_path / "g.png", tmp_path / "d"
    cases = [
        (["--label", 10, "--out", out], "label 10 is out of range"),
        (["--label", "Sneaker", "--out", out], "unknown class 'Sneaker'"),
        (["--label", -1, "--out-dir", out_dir], "out of range"),
        (["-n", 0, "--out", out], "-n"),
        (["-n", -3, "--out-dir", out_dir], "-n"),
        (["-n", 2], "--out"),
        (["-n", 2, "--out", out, "--out-dir", out_dir], "--out"),
        (["--data", flat, "--label", 1, "--out", out], "no labels"),
        (["--data", tiny, "--label", 9, "--out", out], "no images of class"),
        (["--data", tiny, "--label", 9, "--out-dir", out_dir], "no images of class"),
        (["--data", tmp_path / "missing", "--out", out], "no such data directory"),
        (["--out", tmp_path / "nope" / "g.png"], "does not exist"),
    ]
    for args, fragment in cases:
        expect_usage_error(cli("data-images", *args), fragment)
    assert not out.exists() and not out_dir.exists()


# ----------------------------------------------------------------------------- traverse from an image


@pytest.fixture(scope="module")
def eight(sample, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("eight") / "eight.png"
    Image.fromarray(sample.test[np.flatnonzero(sample.test_labels == 8)[0], 0]).save(path)
    return path


def test_traverse_from_an_image_starts_at_its_posterior_mean(mlp_graphs, eight, tmp_path):
    enc, dec = Encoder(mlp_graphs / "encoder.onnx"), Decoder(mlp_graphs / "decoder.onnx")
    mu = enc.encode(eight)[0][0]
    out = tmp_path / "t.png"
    r = cli(
        "traverse",
        "--onnx",
        mlp_graphs / "decoder.onnx",
        "--encoder",
        mlp_graphs / "encoder.onnx",
        "--image",
        eight,
        "--dim",
        0,
        "--steps",
        5,
        "--no-labels",
        "--scale",
        1,
        "--out",
        out,
    )
    assert r.exit_code == 0, r.stderr
    grid = read_png(out)
    assert grid.shape == grid_shape(1, 5)
    # components 1.. stay at the encoder's mu; component 0 sweeps the prior's mean -3..3 standard deviations
    mean, std = dec.prior().moments()
    z = np.tile(mu, (5, 1))
    z[:, 0] = (mean[0] + std[0] * np.linspace(-3, 3, 5)).astype(np.float32)
    assert np.array_equal(grid_cells(grid, 1, 5), dec.decode(z))
    prior = dec.decode(np.stack([np.r_[v, mean[1:].astype(np.float32)] for v in z[:, 0]]))
    assert not np.array_equal(grid_cells(grid, 1, 5), prior)  # not the default start at the prior's mean

    every = tmp_path / "all.png"
    r = cli(
        "traverse",
        "--onnx",
        mlp_graphs / "decoder.onnx",
        "--encoder",
        mlp_graphs / "encoder.onnx",
        "--image",
        eight,
        "--all",
        "--span",
        2,
        "--steps",
        3,
        "--no-labels",
        "--scale",
        1,
        "--out",
        every,
    )
    assert r.exit_code == 0, r.stderr
    got = grid_cells(read_png(every), 4, 3).reshape(4, 3, 28, 28)
    by_kl = sorted(range(4), key=lambda d: -dec.info.kl_per_dim[d])  # rows: most informative first
    for row, d in enumerate(by_kl):
        z = np.tile(mu, (3, 1))
        z[:, d] = (mean[d] + std[d] * np.array([-2.0, 0.0, 2.0])).astype(np.float32)
        assert np.array_equal(got[row], dec.decode(z)), d


def test_traverse_from_an_image_with_a_conditional_pair(conditional_graphs, eight, tmp_path):
    enc, dec = Encoder(conditional_graphs / "encoder.onnx"), Decoder(conditional_graphs / "decoder.onnx")
    mu = enc.encode(eight, label=8)[0][0]
    out = tmp_path / "t.png"
    r = cli(
        "traverse",
        "--onnx",
        conditional_graphs / "decoder.onnx",
        "--encoder",
        conditional_graphs / "encoder.onnx",
        "--image",
        eight,
        "--label",
        8,
        "--dim",
        2,
        "--steps",
        4,
        "--no-labels",
        "--scale",
        1,
        "--out",
        out,
    )
    assert r.exit_code == 0, r.stderr
    mean, std = dec.prior().moments(8)
    z = np.tile(mu, (4, 1))
    z[:, 2] = (mean[2] + std[2] * np.linspace(-3, 3, 4)).astype(np.float32)
    assert np.array_equal(grid_cells(read_png(out), 1, 4), dec.decode(z, label=8))


def test_traverse_image_bad_combinations_are_one_line_exit_2(mlp_graphs, eight, tmp_path):
    dec, enc = mlp_graphs / "decoder.onnx", mlp_graphs / "encoder.onnx"
    out = tmp_path / "t.png"
    notes = tmp_path / "notes.png"
    notes.write_text("not an image")
    cases = [
        (["--image", eight], "--encoder"),
        (["--encoder", enc], "--image"),
        (["--encoder", enc, "--image", eight, "--seed", 0], "--seed"),
        (["--encoder", dec, "--image", eight], "is an exported decoder"),
        (["--encoder", enc, "--image", notes], "notes.png"),
        (["--encoder", enc, "--image", tmp_path / "missing.png"], "no such file"),
    ]
    for args, fragment in cases:
        expect_usage_error(cli("traverse", "--onnx", dec, "--dim", 0, *args, "--out", out), fragment)
    assert not out.exists()
