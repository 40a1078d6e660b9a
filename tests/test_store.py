"""The image store (data/store.py): decoded once, reused, rebuilt when the folder changes; pixel-exact; arrays;
bad files reported together; training reads it."""

from __future__ import annotations

import os
import warnings

import numpy as np
import pytest
from conftest import make_colour_folder as make_folder
from conftest import run_vaectl_in_process
from PIL import Image

from vaectl.data import VALIDATION_FRACTION, load_data, load_image_folder
from vaectl.data import store as S
from vaectl.data.images import open_image, to_array
from vaectl.errors import Note, UserInputError


def reference(root, seed=0, shape=None):
    """What decoding every file with PIL gives: (train, test, train labels, test labels) of the hold-out split."""
    files = sorted(p for p in root.rglob("*") if p.suffix in (".png", ".jpg"))
    images = [open_image(p) for p in files]
    c, h, w = shape or (3, images[0].size[1], images[0].size[0])
    x = np.stack([to_array(im, c, h, w) for im in images])
    classes = sorted({p.relative_to(root).parts[0] for p in files})
    y = np.array([classes.index(p.relative_to(root).parts[0]) for p in files])
    perm = np.random.default_rng(seed).permutation(len(x))
    k = max(1, round(len(x) * VALIDATION_FRACTION))
    return x[perm[k:]], x[perm[:k]], y[perm[k:]], y[perm[:k]]


@pytest.fixture
def decodes(monkeypatch):
    """Counts the images decode_chunk decodes in this process."""
    count = [0]
    real = S.decode_chunk

    def counting(paths, shape):
        count[0] += len(paths)
        return real(paths, shape)

    monkeypatch.setattr(S, "decode_chunk", counting)
    return count


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv(S.CACHE_ENV, str(tmp_path / "cache"))
    return tmp_path / "cache"


def notes_of(fn):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = fn()
    return result, [str(w.message) for w in caught if issubclass(w.category, Note)]


def test_store_is_built_once_and_its_splits_map_it(tmp_path, cache, decodes):
    root = make_folder(tmp_path / "imgs")
    ds = load_data(root)
    assert decodes[0] == 24
    again, notes = notes_of(lambda: load_data(root))
    assert decodes[0] == 24 and notes == []  # read from the store, not decoded
    for d in (ds, again):
        assert isinstance(d.train, np.memmap) and isinstance(d.test, np.memmap)  # views of the map, no copy
        assert d.stored.path.parent.parent == cache / "stores" and d.test_split == "hold-out"
    assert np.array_equal(ds.train, again.train) and np.array_equal(ds.test_labels, again.test_labels)


def test_store_matches_decoding_with_pil_and_the_hold_out_split(tmp_path, cache):
    root = make_folder(tmp_path / "imgs", n=30)
    Image.new("L", (12, 12), 77).save(root / "cat" / "grey.png")
    Image.new("P", (20, 16)).save(root / "dog" / "palette.png")  # resized: another size
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (12, 12, 3), np.uint8)).save(root / "dog" / "a.jpg")
    ds = load_data(root, seed=3)
    train, test, y_train, y_test = reference(root, seed=3)
    assert np.array_equal(ds.train, train) and np.array_equal(ds.test, test)
    assert np.array_equal(ds.train_labels, y_train) and np.array_equal(ds.test_labels, y_test)
    assert ds.class_names == ("cat", "dog") and any("resized 1 of 33 images" in n for n in ds.notes)
    grey = load_data(root, image_size=8, channels=1, seed=3)  # another size: its own layout
    assert np.array_equal(grey.train, reference(root, seed=3, shape=(1, 8, 8))[0])


def test_parallel_decoding_gives_the_serial_store(tmp_path, monkeypatch):
    root = make_folder(tmp_path / "imgs", n=40)
    monkeypatch.setattr(S, "CHUNK", 3)
    monkeypatch.setattr(S, "SERIAL_BELOW", 8)
    got = []
    for workers in (1, 2):
        monkeypatch.setenv(S.CACHE_ENV, str(tmp_path / f"cache{workers}"))
        got.append(load_image_folder(root, None, None, 0, workers=workers))
    serial, parallel = got
    assert np.array_equal(serial.train, parallel.train) and np.array_equal(serial.test, parallel.test)
    assert np.array_equal(parallel.train, reference(root)[0])


def test_a_changed_folder_is_rebuilt_with_one_note(tmp_path, cache, decodes):
    root = make_folder(tmp_path / "imgs")
    load_data(root)
    make_folder(tmp_path / "new", n=1, seed=5)
    os.replace(tmp_path / "new" / "cat" / "000.png", root / "cat" / "new.png")  # added
    Image.new("RGB", (12, 12), (1, 2, 3)).save(root / "dog" / "001.png")  # changed
    os.utime(root / "dog" / "001.png", ns=(1, 1))
    (root / "cat" / "002.png").unlink()  # removed
    ds, notes = notes_of(lambda: load_data(root))
    assert len(notes) == 1 and notes[0].endswith(
        "changed since its image store was built (1 added, 1 changed, 1 removed): rebuilding"
    )
    assert decodes[0] == 48 and len(ds.train) + len(ds.test) == 24
    assert np.array_equal(ds.train, reference(root)[0])
    assert np.any(np.all(ds.train.reshape(len(ds.train), 3, -1) == np.array([1, 2, 3])[:, None], axis=(1, 2)))


def test_a_store_cut_short_is_rebuilt(tmp_path, cache, decodes):
    root = make_folder(tmp_path / "imgs")
    path = load_data(root).stored.path
    os.truncate(path, 100)
    assert np.array_equal(load_data(root).train, reference(root)[0]) and decodes[0] == 48


@pytest.mark.parametrize(
    "sizes, side",
    [([(20, 30), (40, 24), (50, 50)], 24), ([(100, 120), (90, 200), (150, 80)], S.SCATTERED_MAX_SIDE)],
)
def test_a_folder_without_a_common_size_gets_a_square_of_its_median_shorter_side(tmp_path, cache, sizes, side):
    root = tmp_path / "imgs"
    root.mkdir()
    for i, size in enumerate(sizes * 2):  # each size twice: none is shared by most of the images
        Image.new("RGB", size, (20 * i, 0, 0)).save(root / f"{i}.png")
    (root / "notes.txt").write_text("not an image")
    ds = load_data(root)
    assert ds.train.shape[1:] == (3, side, side)
    resized = [n for n in ds.notes if n.startswith("note: resized")]
    stretched = 2 * sum(w != h for w, h in sizes)
    assert resized == [
        f"note: resized 6 of 6 images (3 sizes in the folder, none shared by most of them) to {side}x{side}: their"
        f" median shorter side, at most {S.SCATTERED_MAX_SIDE} (--image-size N picks another); {stretched} of them with"
        " their aspect ratio changed (stretched, not cropped)"
    ]
    assert "note: skipped 1 file that is not an image by its extension, e.g. notes.txt" in ds.notes
    assert load_data(root, image_size=16).train.shape[1:] == (3, 16, 16)


def test_a_shape_chosen_by_an_older_rule_is_chosen_again(tmp_path, cache):
    root = tmp_path / "imgs"
    root.mkdir()
    for i, size in enumerate([(20, 30), (40, 24), (50, 50)]):
        Image.new("RGB", size, (20 * i, 0, 0)).save(root / f"{i}.png")
    load_data(root)
    shapes = S.store_dir(root) / "shapes.json"
    known = S._json(shapes)
    known["rule"] = S.SHAPE_RULE - 1
    for request in known["shapes"]:
        known["shapes"][request] = [[3, 30, 20], []]  # what the older rule chose
    S._write_json(shapes, known)
    assert load_data(root).train.shape[1:] == (3, 24, 24)


@pytest.mark.parametrize("shape", [(30, 10, 12), (30, 10, 12, 1), (30, 10, 12, 3)])
def test_npy_images_any_layout(tmp_path, cache, shape):
    x = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    np.save(tmp_path / "x.npy", x)
    ds = load_data(tmp_path / "x.npy")
    chw = x[:, None] if x.ndim == 3 else x.transpose(0, 3, 1, 2)
    perm = np.random.default_rng(0).permutation(30)
    assert ds.name == "x" and ds.test_split == "hold-out" and not ds.has_labels
    assert np.array_equal(ds.test, chw[perm[:3]]) and np.array_equal(ds.train, chw[perm[3:]])


def test_npz_labels_and_test_split(tmp_path, cache):
    rng = np.random.default_rng(0)
    x, y = rng.integers(0, 256, (20, 8, 8, 3), dtype=np.uint8), rng.integers(0, 3, 20)
    np.savez(tmp_path / "held.npz", images=x, labels=y)
    ds = load_data(tmp_path / "held.npz")
    perm = np.random.default_rng(0).permutation(20)
    assert np.array_equal(ds.train_labels, y[perm[2:]]) and ds.class_names == ("0", "1", "2")
    assert np.array_equal(ds.train, x[perm[2:]].transpose(0, 3, 1, 2))
    np.savez(tmp_path / "split.npz", x=x[:15], y=y[:15], x_test=x[15:], y_test=y[15:], class_names=["a", "b", "c"])
    ds = load_data(tmp_path / "split.npz")
    assert ds.test_split == "test" and ds.class_names == ("a", "b", "c")
    assert np.array_equal(ds.test, x[15:].transpose(0, 3, 1, 2)) and np.array_equal(ds.test_labels, y[15:])
    assert np.array_equal(ds.train, x[:15].transpose(0, 3, 1, 2)) and np.array_equal(ds.train_labels, y[:15])


@pytest.mark.parametrize(
    "arrays, message",
    [
        (dict(x=np.zeros((4, 8, 8), np.float32)), "images must be uint8"),
        (
            dict(x=np.zeros((4, 8, 8, 2), np.uint8)),
            r"must have shape \(N, H, W\) or \(N, H, W, C\) .* got \(4, 8, 8, 2\)",
        ),
        (dict(x=np.zeros((4, 8), np.uint8)), "must have shape"),
        (dict(pixels=np.zeros((4, 8, 8), np.uint8)), "no images in the .npz .keys: pixels.; name them images or x"),
        (dict(x=np.zeros((4, 8, 8), np.uint8), y=np.zeros(3, int)), "labels of shape .3,. for 4 images"),
        (dict(x=np.zeros((4, 8, 8), np.uint8), y=-np.ones(4, int)), "labels must be non-negative integers"),
    ],
)
def test_bad_arrays_are_refused_in_one_line(tmp_path, cache, arrays, message):
    np.savez(tmp_path / "a.npz", **arrays)
    with pytest.raises(UserInputError, match=message):
        load_data(tmp_path / "a.npz")


def test_a_pickled_npy_is_refused(tmp_path, cache):
    np.save(tmp_path / "o.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(UserInputError, match="cannot read the array file"):
        load_data(tmp_path / "o.npy")


def bad_folder(root):
    make_folder(root, n=20)
    (root / "cat" / "text.png").write_text("not a png at all")
    good = (root / "dog" / "001.png").read_bytes()
    (root / "dog" / "cut.png").write_bytes(good[: len(good) // 2])
    return root


def test_bad_files_are_reported_together_and_can_be_skipped(tmp_path, cache, decodes):
    root = bad_folder(tmp_path / "imgs")
    with pytest.raises(UserInputError) as e:
        load_data(root)
    assert str(e.value) == (
        f"2 of 22 files in {root} cannot be decoded (cat/text.png: not an image, dog/cut.png: truncated): "
        "fix or remove them, or pass skip_bad_images=True"
    )
    with pytest.raises(UserInputError, match="2 of 22 files"):
        load_data(root)  # from the store's record: not decoded again
    ds = load_data(root, skip_bad_images=True)
    assert decodes[0] == 22 and len(ds.train) + len(ds.test) == 20
    assert any(n.startswith("note: skipped 2 files of 22") for n in ds.notes)
    later = load_data(root)  # the store made with the choice stands for it (export, eval, explore have no flag)
    assert np.array_equal(later.train, ds.train) and any(n.startswith("note: skipped 2 files") for n in later.notes)
    (root / "cat" / "text.png").unlink()
    (root / "dog" / "cut.png").unlink()
    assert np.array_equal(ds.train, reference(root)[0])  # the same split as a folder without them


def test_cli_exits_2_on_bad_files_and_trains_with_skip_bad_images(tmp_path, cache):
    pytest.importorskip("torch")
    root = bad_folder(tmp_path / "imgs")
    flags = ["--epochs", "1", "--arch", "mlp", "--latent-dim", "2", "--hidden", "8", "--batch-size", "8"]
    flags += ["--grid-every", "0", "--data", root]
    code, err = run_vaectl_in_process("train", *flags, "--out", tmp_path / "run")
    assert code == 2 and err.strip().splitlines() == [
        f"error: 2 of 22 files in {root} cannot be decoded (cat/text.png: not an image, dog/cut.png: truncated): "
        "fix or remove them, or pass --skip-bad-images"
    ]
    code, err = run_vaectl_in_process("train", *flags, "--out", tmp_path / "run", "--skip-bad-images")
    assert code == 0, err
    assert "note: skipped 2 files of 22" in err and "18 train / 2 validation images (3, 12, 12)" in err
    assert (tmp_path / "run" / "last.pt").is_file()


def test_training_batches_read_from_the_store_equal_the_images(tmp_path, cache):
    torch = pytest.importorskip("torch")
    from vaectl.training.host_images import HostImages, images_for

    ds = load_data(make_folder(tmp_path / "imgs", n=40))
    x_train, x_val = images_for(ds, torch.device("cpu"))
    assert isinstance(x_train, HostImages) and len(x_train) == 36 and len(x_val) == 4
    idx = torch.tensor([5, 0, 35, 5, 17])
    assert torch.equal(x_train[idx], torch.from_numpy(np.array(ds.train[idx.numpy()])))
    assert torch.equal(x_val[1:3], torch.from_numpy(np.array(ds.test[1:3])))


def expected_copies(train: np.ndarray, test: np.ndarray) -> tuple[int, int]:
    """(held-out images with a copy among the training images, images that repeat an earlier one), by brute
    force over the pixels."""
    seen = {row.tobytes() for row in train}
    in_test = sum(row.tobytes() in seen for row in test)
    rows = [row.tobytes() for row in np.concatenate([test, train])]
    return in_test, len(rows) - len(set(rows))


def copies_line(notes: list[str]) -> list[str]:
    return [n for n in notes if "exact copies" in n]


def test_held_out_images_copied_in_training_are_noted_once_per_load(tmp_path, cache, decodes):
    root = make_folder(tmp_path / "imgs", n=40, classes=())
    for i in range(0, 40, 3):  # 14 pictures saved a second time under another name, one of them three times
        (root / f"copy-{i:03d}.png").write_bytes((root / f"{i:03d}.png").read_bytes())
    (root / "copy-again-000.png").write_bytes((root / "000.png").read_bytes())
    seed = next(s for s in range(20) if expected_copies(*reference(root, s)[1::-1])[0])  # a split that has some
    train, test = reference(root, seed)[:2]
    in_test, repeats = expected_copies(train, test)
    ds = load_data(root, seed=seed)
    assert repeats == 15 and copies_line(ds.notes) == [
        f"note: {in_test} of the {len(test)} held-out images in {root} are exact copies of training images "
        f"(15 images in all repeat another's pixels), so scores on them are not those of unseen images; "
        "keep one of each to hold out only new pictures"
    ]
    warm = load_data(root, seed=seed)  # from the store's index: nothing decoded, the same note
    assert decodes[0] == 55 and copies_line(warm.notes) == copies_line(ds.notes)


def test_copies_on_one_side_of_the_split_are_recorded_but_not_noted(tmp_path, cache):
    root = make_folder(tmp_path / "imgs", n=20, classes=())
    (root / "copy.png").write_bytes((root / "000.png").read_bytes())
    # a seed that keeps both on the training side: nothing held out has been seen
    seed = next(s for s in range(50) if not expected_copies(*reference(root, s)[1::-1])[0])
    assert copies_line(load_data(root, seed=seed).notes) == []
    layout = next(S.store_dir(root).glob(f"*-seed{seed}.json"))
    names = sorted(p.name for p in root.iterdir())
    assert [[names[i] for i in g] for g in S._json(layout)["copies"]] == [["000.png", "copy.png"]]


def test_undecodable_files_are_not_copies_of_each_other(tmp_path, cache):
    root = bad_folder(tmp_path / "imgs")
    (root / "dog" / "cut2.png").write_bytes(b"\x89PNG truncated too")
    with pytest.raises(UserInputError):
        load_data(root)  # the store that holds their blank rows is built here
    layout = next(p for p in S.store_dir(root).glob("*-seed0.json"))
    assert S._json(layout)["copies"] == []  # three blank rows, no copies
    assert copies_line(load_data(root, skip_bad_images=True).notes) == []


def test_copies_in_an_array_are_noted(tmp_path, cache):
    x = np.random.default_rng(0).integers(0, 256, (30, 8, 8), dtype=np.uint8)
    x[20:] = x[:10]  # ten images twice
    np.save(tmp_path / "x.npy", x)

    def split(seed):
        perm = np.random.default_rng(seed).permutation(30)
        return x[perm[3:]], x[perm[:3]]

    seed = next(s for s in range(20) if expected_copies(*split(s))[0])
    in_test, repeats = expected_copies(*split(seed))
    assert repeats == 10 and copies_line(load_data(tmp_path / "x.npy", seed=seed).notes) == [
        f"note: {in_test} of the 3 held-out images in {tmp_path / 'x.npy'} are exact copies of training images "
        "(10 images in all repeat another's pixels), so scores on them are not those of unseen images; "
        "keep one of each to hold out only new pictures"
    ]
