"""Grids people can see: --scale (nearest neighbour) on every PNG-writing command, GIF animations from
interpolate and traverse (read back with Pillow)."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import cli, expect_usage_error, read_png
from PIL import Image, ImageSequence

from vaectl.data import load_data, pick_images
from vaectl.files import make_grid, png_bytes
from vaectl.infer import Decoder, VAEPair


@pytest.fixture(scope="module")
def dec(mlp_graphs) -> Decoder:
    return Decoder(mlp_graphs / "decoder.onnx")


@pytest.fixture(scope="module")
def digit_files(tmp_path_factory):
    data = load_data()
    out = tmp_path_factory.mktemp("grid_digits")
    paths = []
    for i in range(3):
        paths.append(out / f"d{i}.png")
        Image.fromarray(data.test[i, 0]).save(paths[-1])
    return paths


def upscaled(image: np.ndarray, n: int) -> np.ndarray:
    return np.kron(image, np.ones((n, n), dtype=np.uint8))


def gif_frames(path) -> tuple[list[np.ndarray], list[int], Image.Image]:
    gif = Image.open(path)
    frames, durations = [], []
    for frame in ImageSequence.Iterator(gif):
        frames.append(np.asarray(frame.convert("L")))
        durations.append(frame.info["duration"])
    return frames, durations, gif


def test_scale_1_is_byte_identical_to_the_unscaled_writer(mlp_graphs, dec, tmp_path):
    """--scale 1 (generate's and data-images' default) writes the decoder's pixels: make_grid + PNG, same bytes."""
    assert (
        cli(
            "generate",
            "--onnx",
            mlp_graphs / "decoder.onnx",
            "-n",
            12,
            "--seed",
            0,
            "--out",
            tmp_path / "g.png",
            "--nrow",
            6,
        ).exit_code
        == 0
    )
    assert (tmp_path / "g.png").read_bytes() == png_bytes(make_grid(dec.sample(12, seed=0), nrow=6))
    assert cli("data-images", "--label", 3, "-n", 4, "--out", tmp_path / "d.png").exit_code == 0
    _, picked, _ = pick_images(load_data(), "test", 3, 4)
    assert (tmp_path / "d.png").read_bytes() == png_bytes(make_grid(picked, nrow=8))
    assert (
        cli(
            "traverse",
            "--onnx",
            mlp_graphs / "decoder.onnx",
            "--dim",
            1,
            "--steps",
            5,
            "--no-labels",
            "--scale",
            1,
            "--out",
            tmp_path / "t.png",
        ).exit_code
        == 0
    )
    assert (tmp_path / "t.png").read_bytes() == png_bytes(make_grid(dec.traverse(None, [1], 3.0, 5), nrow=5))


def test_scaled_pixels_are_the_unscaled_grid_repeated(mlp_graphs, digit_files, tmp_path):
    enc, decp = mlp_graphs / "encoder.onnx", mlp_graphs / "decoder.onnx"
    commands = {
        "generate": ["generate", "--onnx", decp, "-n", 6, "--seed", 1],
        "reconstruct": ["reconstruct", "--encoder", enc, "--decoder", decp, *digit_files, "--no-labels"],
        "interpolate": ["interpolate", "--decoder", decp, "--seed-a", 1, "--seed-b", 2, "--steps", 4, "--no-labels"],
        "traverse": ["traverse", "--onnx", decp, "--all", "--steps", 3, "--seed", 0, "--no-labels"],
        "data-images": ["data-images", "-n", 5],
    }
    for name, args in commands.items():
        for scale in (1, 3):
            r = cli(*args, "--scale", scale, "--out", tmp_path / f"{name}{scale}.png")
            assert r.exit_code == 0, (name, r.stderr)
        plain, big = read_png(tmp_path / f"{name}1.png"), read_png(tmp_path / f"{name}3.png")
        assert big.shape == (3 * plain.shape[0], 3 * plain.shape[1]), name
        np.testing.assert_array_equal(big, upscaled(plain, 3), err_msg=name)
        np.testing.assert_array_equal(big, plain.repeat(3, axis=0).repeat(3, axis=1), err_msg=name)


def test_scale_applies_to_each_file_of_an_out_dir(mlp_graphs, tmp_path):
    decp = mlp_graphs / "decoder.onnx"
    assert cli("generate", "--onnx", decp, "-n", 3, "--seed", 0, "--out-dir", tmp_path / "a").exit_code == 0
    assert (
        cli("generate", "--onnx", decp, "-n", 3, "--seed", 0, "--scale", 2, "--out-dir", tmp_path / "b").exit_code == 0
    )
    for name in ("000000.png", "000001.png", "000002.png"):
        np.testing.assert_array_equal(read_png(tmp_path / "b" / name), upscaled(read_png(tmp_path / "a" / name), 2))
    assert cli("data-images", "-n", 2, "--scale", 2, "--out-dir", tmp_path / "c").exit_code == 0
    assert {read_png(p).shape for p in (tmp_path / "c").iterdir()} == {(56, 56)}


def test_interpolate_gif_has_one_frame_per_step_in_order(mlp_graphs, dec, tmp_path):
    out = tmp_path / "path.gif"
    r = cli(
        "interpolate",
        "--decoder",
        mlp_graphs / "decoder.onnx",
        "--seed-a",
        1,
        "--seed-b",
        2,
        "--steps",
        6,
        "--fps",
        10,
        "--scale",
        1,
        "--no-labels",
        "--out",
        out,
    )
    assert r.exit_code == 0, r.stderr
    frames, durations, gif = gif_frames(out)
    strip = dec.interpolate(dec.latents(1, 1)[0], dec.latents(1, 2)[0], 6)
    assert len(frames) == 6 and gif.info["loop"] == 0
    assert durations == [100] * 6  # 10 fps
    for frame, image in zip(frames, strip):  # each frame: that step's tile, with the grid's 2-pixel border
        np.testing.assert_array_equal(frame, make_grid(image[None], nrow=1))


def test_interpolate_gif_between_images_with_scale(mlp_graphs, digit_files, tmp_path):
    out = tmp_path / "ab.gif"
    assert (
        cli(
            "interpolate",
            "--encoder",
            mlp_graphs / "encoder.onnx",
            "--decoder",
            mlp_graphs / "decoder.onnx",
            *digit_files[:2],
            "--steps",
            4,
            "--scale",
            2,
            "--no-labels",
            "--out",
            out,
        ).exit_code
        == 0
    )
    pair = VAEPair.load(mlp_graphs / "encoder.onnx", mlp_graphs / "decoder.onnx")
    strip = pair.interpolate(digit_files[0], digit_files[1], 4)
    frames, durations, _ = gif_frames(out)
    assert durations == [120] * 4  # the default 8 fps: 125 ms, in GIF's 10 ms ticks
    for frame, image in zip(frames, strip):
        np.testing.assert_array_equal(frame, upscaled(make_grid(image[None], nrow=1), 2))


def test_traverse_gif_runs_forth_and_back_with_every_dim_in_a_grid(mlp_graphs, dec, tmp_path):
    out = tmp_path / "t.gif"
    args = ["traverse", "--onnx", mlp_graphs / "decoder.onnx", "--all", "--steps", 5, "--seed", 0, "--fps", 4]
    r = cli(*args, "--no-labels", "--scale", 1, "--out", out)
    assert r.exit_code == 0, r.stderr
    by_kl = sorted(range(4), key=lambda d: -dec.info.kl_per_dim[d])  # rows: most informative first
    rows = dec.traverse(None, by_kl, 3.0, 5, seed=0).reshape(4, 5, 28, 28)
    frames, durations, _ = gif_frames(out)
    order = [0, 1, 2, 3, 4, 3, 2, 1]  # forth, then back without repeating the endpoints
    assert len(frames) == len(order) and durations == [250] * len(order)
    for frame, k in zip(frames, order):
        np.testing.assert_array_equal(frame, make_grid(rows[:, k], nrow=2))  # 4 dimensions: a 2 x 2 grid


def test_bad_scale_fps_and_gif_targets_are_one_line_exit_2(mlp_graphs, digit_files, tmp_path):
    decp, enc = mlp_graphs / "decoder.onnx", mlp_graphs / "encoder.onnx"
    png, gif = tmp_path / "o.png", tmp_path / "o.gif"
    cases = [
        (["generate", "--onnx", decp, "--scale", 0, "--out", png], "--scale"),
        (["generate", "--onnx", decp, "--scale", -2, "--out-dir", tmp_path / "d"], "--scale"),
        (["data-images", "--scale", 0, "--out", png], "--scale"),
        (["reconstruct", "--encoder", enc, "--decoder", decp, *digit_files, "--scale", 0, "--out", png], "--scale"),
        (["traverse", "--onnx", decp, "--fps", 0, "--out", gif], "--fps"),
        (["interpolate", "--decoder", decp, "--seed-a", 1, "--seed-b", 2, "--fps", 500, "--out", gif], "--fps"),
        (["generate", "--onnx", decp, "--out", gif], "interpolate and traverse"),
        (["reconstruct", "--encoder", enc, "--decoder", decp, *digit_files, "--out", gif], "interpolate and traverse"),
        (["data-images", "--out", gif], "interpolate and traverse"),
        (["traverse", "--onnx", decp, "--out", tmp_path / "o.jpg"], ".png or .gif"),
        (["generate", "--onnx", decp, "-n", 1, "--scale", 10_000, "--out", png], "smaller --scale"),
        (["traverse", "--onnx", decp, "--dim", 0, "--steps", 2000, "--scale", 64, "--out", gif], "fewer --steps"),
    ]
    for args, fragment in cases:
        expect_usage_error(cli(*args), fragment)
    assert sorted(p.name for p in tmp_path.iterdir()) == []


# ----------------------------------------------------------------------------- labelled traversals


@pytest.fixture(scope="module")
def kl_graphs(mlp_graphs, tmp_path_factory):
    """The tiny MLP's decoder with a known KL per dimension recorded: z1 2.5, z3 1.25 nats (informative),
    z2 0.001 and z0 0.0 (not)."""
    onnx = pytest.importorskip("onnx")
    model = onnx.load(str(mlp_graphs / "decoder.onnx"))
    props = {p.key: p.value for p in model.metadata_props}
    props["vaectl.kl_per_dim"] = "[0.0, 2.5, 0.001, 1.25]"
    onnx.helper.set_model_props(model, props)
    out = tmp_path_factory.mktemp("kl_graphs")
    onnx.save(model, str(out / "decoder.onnx"))
    return out


def test_traverse_labels_each_row_with_its_component_and_kl_most_informative_first(kl_graphs, tmp_path):
    from vaectl.infer.output import label_rows, latent_labels

    dec = Decoder(kl_graphs / "decoder.onnx")
    r = cli("traverse", "--decoder", kl_graphs, "--all", "--steps", 4, "--scale", 1, "--out", tmp_path / "t.png")
    assert r.exit_code == 0, r.stderr
    got = read_png(tmp_path / "t.png")
    header, got = got[: got.shape[0] - (4 * 30 + 2)], got[got.shape[0] - (4 * 30 + 2) :]  # the steps' values above
    assert header.shape[0] == 15 and header.max() == 255
    order = [1, 3, 2, 0]  # by KL
    plain = make_grid(dec.traverse(None, order, 3.0, 4), nrow=4)
    assert latent_labels(order, dec.info.kl_per_dim) == [
        ["z1", "KL 2.50"],
        ["z3", "KL 1.25"],
        ["z2", "KL 0.00"],
        ["z0", "KL 0.00"],
    ]
    labelled = label_rows(plain, latent_labels(order, dec.info.kl_per_dim), 28)
    assert np.array_equal(got, labelled)
    column = got[:, : got.shape[1] - plain.shape[1]]
    assert np.array_equal(got[:, column.shape[1] :], plain)  # the images themselves are untouched
    bands = [column[2 + 30 * r : 30 + 30 * r] for r in range(4)]
    assert all(band.max() == 255 for band in bands)  # every row has its label, and the labels differ
    assert not np.array_equal(bands[0], bands[1]) and not np.array_equal(bands[1], bands[2])


def test_traverse_gif_of_many_dimensions_is_a_grid_not_a_strip():
    from vaectl.infer.output import animation_frames, latent_labels

    rows = np.random.default_rng(0).integers(0, 255, (128, 3, 28, 28), dtype=np.uint8)  # 128 dimensions, 3 steps
    plain = animation_frames(rows, True)
    assert len(plain) == 4 and plain[0].shape == (11 * 30 + 2, 12 * 30 + 2)  # 12 columns of 11 rows, not 1 x 128
    labelled = animation_frames(rows, True, labels=latent_labels(range(128), np.linspace(5, 0, 128)))
    h, w = labelled[0].shape
    assert 0.5 < w / h < 2 and w < 1000, labelled[0].shape


def test_info_says_which_dimensions_are_informative_and_by_what_rule(kl_graphs, mlp_graphs):
    import json

    from vaectl.contract import INFORMATIVE_RULE

    text = cli("info", kl_graphs / "decoder.onnx").stdout
    assert (
        "informative 2 of 4 latent dimensions, most informative first: z1 (KL 2.50), z3 (KL 1.25) "
        f"({INFORMATIVE_RULE})" in text
    )
    card = json.loads(cli("info", kl_graphs / "decoder.onnx", "--json").stdout)
    assert card["informative_dims"] == [1, 3] and card["informative_rule"] == INFORMATIVE_RULE
    from pathlib import Path

    old = cli(
        "info", Path(__file__).parent / "fixtures/v010_plain/decoder.onnx"
    ).stdout  # exported before the KL was recorded
    assert "informative unknown: this graph records no KL per dimension" in old


def test_labels_work_for_colour_models():
    from vaectl.infer.output import animation_frames, label_rows, latent_labels

    rows = np.random.default_rng(1).integers(0, 255, (3, 4, 32, 32, 3), dtype=np.uint8)  # 3 dimensions, RGB
    labels = latent_labels([2, 0, 1], [0.5, 0.1, 3.0])
    png = label_rows(make_grid(rows.reshape(12, 32, 32, 3), nrow=4), labels, 32)
    assert png.shape[2] == 3 and np.array_equal(png[:, -(4 * 34 + 2) :], make_grid(rows.reshape(12, 32, 32, 3), 4))
    frames = animation_frames(rows, True, labels=labels)
    assert len(frames) == 6 and frames[0].ndim == 3 and frames[0].shape[2] == 3


def test_pictures_for_a_person_default_to_a_visible_size_and_say_what_they_show(mlp_graphs, digit_files, dec, tmp_path):
    """reconstruct, interpolate and traverse at their default flags: each 28 px image drawn at least 56 px wide
    and the picture at least 256 px; reconstruct's rows and traverse's rows and columns labelled in a margin,
    the images themselves the exact pixels upscaled (--no-labels: the bare grid, same scale)."""
    enc, decp = mlp_graphs / "encoder.onnx", mlp_graphs / "decoder.onnx"
    rec, bare = tmp_path / "rec.png", tmp_path / "bare.png"
    r = cli("reconstruct", "--encoder", enc, "--decoder", decp, *digit_files[:2], "--out", rec)
    assert r.exit_code == 0 and "wrote 2 reconstructions (each below its original)" in r.stderr
    assert cli("reconstruct", "--encoder", enc, "--decoder", decp, *digit_files[:2], "--scale", 1, "--no-labels",
               "--out", bare).exit_code == 0  # fmt: skip
    plain, picture = read_png(bare), read_png(rec)
    scale = 256 // plain.shape[1] + 1  # 62 px wide -> 5
    grid_width = plain.shape[1] * scale
    assert picture.shape[0] == plain.shape[0] * scale and picture.shape[1] > grid_width >= 256
    np.testing.assert_array_equal(picture[:, -grid_width:], upscaled(plain, scale))
    margin = picture[:, :-grid_width]
    top, bottom = margin[2 * scale : 30 * scale].astype(bool), margin[32 * scale :].astype(bool)
    assert top.any() and bottom.any() and not np.array_equal(top[: bottom.shape[0]], bottom)  # two labels
    r = cli("reconstruct", "--encoder", enc, "--decoder", decp, *digit_files[:2], "--no-labels", "--out", bare)
    np.testing.assert_array_equal(read_png(bare), upscaled(plain, scale))

    out = tmp_path / "t.png"
    r = cli("traverse", "--onnx", decp, "--dim", 1, "--steps", 5, "--out", out)
    assert r.exit_code == 0 and "wrote 1 row of 5 steps (z1)" in r.stderr
    grid = make_grid(dec.traverse(None, [1], 3.0, 5), nrow=5)  # 152 px wide: drawn twice as large
    picture = read_png(out)
    header = picture.shape[0] - 2 * grid.shape[0]
    np.testing.assert_array_equal(picture[header:, -2 * grid.shape[1] :], upscaled(grid, 2))
    columns = [picture[:header, -2 * grid.shape[1] + 4 + 60 * c : -2 * grid.shape[1] + 60 * (c + 1)] for c in range(5)]
    assert all(c.any() for c in columns)  # each column's value, -3 .. +3
    assert not np.array_equal(columns[0], columns[4]) and not np.array_equal(columns[1], columns[3])


def test_gif_frames_say_which_step_they_show(mlp_graphs, dec, tmp_path):
    """interpolate's frames: A, 2/4, 3/4, B above the image; traverse --all's: the step in prior standard
    deviations, the same on the way forth and back; both at a visible size by default."""
    decp = mlp_graphs / "decoder.onnx"
    out = tmp_path / "i.gif"
    r = cli("interpolate", "--decoder", decp, "--seed-a", 1, "--seed-b", 2, "--steps", 4, "--out", out)
    assert r.exit_code == 0 and "wrote 4 images (A to B, one a frame)" in r.stderr
    frames, _, _ = gif_frames(out)
    strip = dec.interpolate(dec.latents(1, 1)[0], dec.latents(1, 2)[0], 4)
    scale = 8  # a 32 px frame, drawn 256 px wide
    for frame, image in zip(frames, strip):
        assert frame.shape[1] == 32 * scale
        np.testing.assert_array_equal(frame[-32 * scale :], upscaled(make_grid(image[None], nrow=1), scale))
    titles = [frame[: -32 * scale] for frame in frames]
    assert all(t.any() for t in titles) and len({t.tobytes() for t in titles}) == 4

    out = tmp_path / "t.gif"
    r = cli("traverse", "--onnx", decp, "--all", "--steps", 5, "--seed", 0, "--out", out)
    assert r.exit_code == 0 and "wrote 8 frames, 5 steps forth and back, each 4 components in 2 columns" in r.stderr
    frames, _, _ = gif_frames(out)
    assert frames[0].shape[1] >= 256
    titles = [frame[:16].tobytes() for frame in frames]  # the band above the grid
    assert len(set(titles[:5])) == 5 and titles[5:] == titles[3:0:-1]  # forth, then back: the same titles
