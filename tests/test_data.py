"""The torch-free data loaders: IDX files (gz and raw) and image folders."""

from __future__ import annotations

import gzip

import numpy as np
import pytest
from conftest import make_tiny_idx_dir, write_idx
from PIL import Image

from vaectl.data import load_data, load_mnist_sample
from vaectl.data.idx import read_idx
from vaectl.errors import UserInputError


@pytest.mark.parametrize("gz", [True, False])
def test_idx_reader_reads_gz_and_raw(tmp_path, gz):
    images = np.arange(3 * 4 * 5, dtype=np.uint8).reshape(3, 4, 5)
    path = write_idx(tmp_path / ("x.idx3-ubyte" + (".gz" if gz else "")), images)
    got = read_idx(path)
    assert np.array_equal(got, images) and got.dtype == np.uint8
    assert got.flags.writeable  # torch.from_numpy warns on read-only arrays


@pytest.mark.parametrize("gz", [True, False])
def test_idx_folder_loads_both_splits_with_labels(tmp_path, gz):
    d = make_tiny_idx_dir(tmp_path / "idx", n_train=20, n_test=7, gz=gz)
    ds = load_data(d)
    assert ds.train.shape == (20, 1, 28, 28) and ds.test.shape == (7, 1, 28, 28)
    assert ds.train.dtype == np.uint8
    assert ds.train_labels.shape == (20,) and ds.has_labels
    reference = load_mnist_sample()
    assert np.array_equal(ds.train, reference.train[:20]) and np.array_equal(
        ds.train_labels, reference.train_labels[:20]
    )


def test_idx_folder_without_test_split_holds_out_ten_percent(tmp_path):
    d = make_tiny_idx_dir(tmp_path / "idx", n_train=50)
    for f in d.glob("t10k-*"):
        f.unlink()
    ds = load_data(d)
    assert (len(ds.train), len(ds.test)) == (45, 5)
    # the hold-out is a split: no image lost, none duplicated
    both = np.concatenate([ds.train, ds.test]).reshape(50, -1)
    original = read_idx(d / "train-images-idx3-ubyte.gz").reshape(50, -1)
    assert sorted(map(bytes, both)) == sorted(map(bytes, original))


def test_embedded_sample_matches_its_checksums_and_size():
    ds = load_mnist_sample()
    assert ds.train.shape[1:] == (1, 28, 28) and len(ds.train) + len(ds.test) == 5000
    assert set(np.unique(ds.train_labels)) == set(range(10))


def test_truncated_idx_is_refused(tmp_path):
    path = write_idx(tmp_path / "train-images-idx3-ubyte", np.zeros((4, 28, 28), np.uint8))
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(UserInputError, match="truncated"):
        read_idx(path)


def test_truncated_gzip_is_refused(tmp_path):
    path = write_idx(tmp_path / "train-images-idx3-ubyte.gz", np.random.default_rng(0).integers(0, 255, (40, 28, 28)))
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(UserInputError, match="cannot read IDX"):
        read_idx(path)


def test_wrong_magic_is_refused(tmp_path):
    path = tmp_path / "train-images-idx3-ubyte.gz"
    path.write_bytes(gzip.compress(b"\x1f\x8b\x08\x03" + bytes(100)))
    with pytest.raises(UserInputError, match="wrong magic"):
        read_idx(path)


def test_label_count_mismatch_is_refused(tmp_path):
    d = make_tiny_idx_dir(tmp_path / "idx", n_train=10, n_test=4)
    write_idx(d / "train-labels-idx1-ubyte.gz", np.zeros(9, np.uint8))
    with pytest.raises(UserInputError, match="labels of shape"):
        load_data(d)


def _png(path, size, color=(0,), mode="L"):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, color[0] if mode == "L" else color).save(path)


def test_image_folder_labels_from_subfolders(tmp_path):
    for label, value in (("cats", 10), ("dogs", 200)):
        for i in range(5):
            _png(tmp_path / "imgs" / label / f"{i}.png", (12, 12), (value,))
    ds = load_data(tmp_path / "imgs")
    assert ds.class_names == ("cats", "dogs")
    assert ds.train.shape[1:] == (1, 12, 12) and len(ds.train) + len(ds.test) == 10
    images = np.concatenate([ds.train, ds.test])
    labels = np.concatenate([ds.train_labels, ds.test_labels])
    assert np.all(images[labels == 0] == 10) and np.all(images[labels == 1] == 200)


def test_image_folder_mixed_sizes_are_resized_with_a_note(tmp_path):
    for i in range(4):
        _png(tmp_path / "imgs" / f"a{i}.png", (16, 16))
    _png(tmp_path / "imgs" / "big.png", (40, 30))
    ds = load_data(tmp_path / "imgs")
    assert ds.train.shape[1:] == (1, 16, 16)  # the most common size wins
    assert any("resized 1 of 5 images" in n and "16x16" in n for n in ds.notes)
    ds = load_data(tmp_path / "imgs", image_size=8)
    assert ds.train.shape[1:] == (1, 8, 8)


def test_image_folder_colour_and_channel_choice(tmp_path):
    for i in range(4):
        _png(tmp_path / "imgs" / f"{i}.png", (10, 10), (255, 0, 0), mode="RGB")
    assert load_data(tmp_path / "imgs").train.shape[1:] == (3, 10, 10)  # colour images stay colour
    grey = load_data(tmp_path / "imgs", channels=1)
    assert grey.train.shape[1:] == (1, 10, 10) and grey.train.max() < 255


def test_image_folder_refuses_a_corrupt_image_and_notes_skipped_files(tmp_path):
    for i in range(3):
        _png(tmp_path / "imgs" / f"{i}.png", (8, 8))
    (tmp_path / "imgs" / "README.txt").write_text("not an image")
    ds = load_data(tmp_path / "imgs")
    assert any("skipped 1 file that is not an image" in n for n in ds.notes)
    (tmp_path / "imgs" / "broken.png").write_bytes(b"this is not a png")
    with pytest.raises(UserInputError, match="broken.png: not an image"):
        load_data(tmp_path / "imgs")


def test_missing_and_empty_data_directories(tmp_path):
    with pytest.raises(UserInputError, match="no such data directory"):
        load_data(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserInputError, match="empty"):
        load_data(tmp_path / "empty")


def test_transparent_pixels_become_white_not_the_colour_stored_under_them():
    from PIL import Image

    from vaectl.data.images import to_array

    rgba = np.zeros((4, 4, 4), np.uint8)  # black, fully transparent...
    rgba[:2, :, :] = (200, 0, 0, 255)  # ...but the top half opaque red
    rgba[2, 0] = (0, 0, 255, 128)  # and one half-transparent blue pixel
    out = to_array(Image.fromarray(rgba, "RGBA"), 3, 4, 4)  # (3, 4, 4)
    assert out[:, 0, 0].tolist() == [200, 0, 0]
    assert out[:, 3, 3].tolist() == [255, 255, 255]
    assert out[:, 2, 0].tolist() == [127, 127, 255]  # blue over white at alpha 128/255
    grey = to_array(Image.fromarray(rgba, "RGBA"), 1, 4, 4)
    assert grey[0, 3, 3] == 255
