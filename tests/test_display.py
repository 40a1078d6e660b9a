"""vaectl.infer.display: grids and GIFs that show themselves in Jupyter are the pictures the CLI writes."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
from conftest import cli
from PIL import Image, ImageSequence

from vaectl.data import load_mnist_sample
from vaectl.errors import UserInputError
from vaectl.files import make_grid
from vaectl.infer import Animation, ImageGrid, show
from vaectl.infer.display import image_stack


def test_a_grid_shown_inline_is_the_png_generate_writes(mlp_graphs, dec, tmp_path):
    out = tmp_path / "g.png"
    r = cli(
        "generate",
        "--onnx",
        mlp_graphs / "decoder.onnx",
        "-n",
        12,
        "--seed",
        0,
        "--nrow",
        6,
        "--scale",
        3,
        "--out",
        out,
    )
    assert r.exit_code == 0, r.stderr
    grid = show(dec.sample(12, seed=0), nrow=6, scale=3)
    assert grid._repr_png_() == out.read_bytes()
    picture = np.asarray(Image.open(io.BytesIO(grid._repr_png_())))
    unscaled = make_grid(dec.sample(12, seed=0), nrow=6)
    assert picture.shape == (3 * unscaled.shape[0], 3 * unscaled.shape[1])
    np.testing.assert_array_equal(picture, np.kron(unscaled, np.ones((3, 3), np.uint8)))  # nearest neighbour
    grid.save(tmp_path / "again.png")
    assert (tmp_path / "again.png").read_bytes() == out.read_bytes()
    with pytest.raises(UserInputError, match="PNG"):
        grid.save(tmp_path / "g.jpg")


def test_an_animation_shown_inline_is_the_gif_interpolate_writes(mlp_graphs, dec, tmp_path):
    out = tmp_path / "path.gif"
    args = ("--seed-a", 1, "--seed-b", 2, "--steps", 6, "--scale", 2, "--no-labels", "--fps", 5, "--out", out)
    assert cli("interpolate", "--decoder", mlp_graphs / "decoder.onnx", *args).exit_code == 0
    strip = dec.interpolate(dec.latents(1, 1)[0], dec.latents(1, 2)[0], 6)
    animation = Animation(strip, fps=5, scale=2)
    assert animation.gif == out.read_bytes()
    bundle = animation._repr_mimebundle_()
    assert base64.b64decode(bundle["image/gif"]) == out.read_bytes()
    assert "6 frames" in bundle["text/plain"]
    # several strips side by side, running forth and back: 2 * steps - 2 frames, each step of both strips
    both = np.stack([strip, strip[::-1]])
    frames = list(ImageSequence.Iterator(Image.open(io.BytesIO(Animation(both, forth_and_back=True, scale=1).gif))))
    assert len(frames) == 10
    np.testing.assert_array_equal(np.asarray(frames[1].convert("L")), make_grid(both[:, 1], nrow=2))
    animation.save(tmp_path / "again.gif")
    assert (tmp_path / "again.gif").read_bytes() == out.read_bytes()
    for bad in (strip[:1], strip.astype(np.float32) / 255, np.zeros((0, 6, 28, 28), np.uint8)):
        with pytest.raises(UserInputError, match="strips"):
            Animation(bad)
    with pytest.raises(UserInputError, match="fps"):
        Animation(strip, fps=0)


def test_jupyter_displays_them_as_png_and_gif(dec):
    """What IPython's display machinery asks the objects for: the same bytes a notebook cell shows."""
    formatters = pytest.importorskip("IPython.core.formatters")
    grid = show(dec.sample(4, seed=0))
    data, _ = formatters.DisplayFormatter().format(grid)
    assert data["image/png"] == grid._repr_png_() and data["text/plain"].startswith("<ImageGrid: 4 images of 28x28")
    animation = Animation(dec.traverse(None, [0], steps=3))
    data, _ = formatters.DisplayFormatter().format(animation)
    assert base64.b64decode(data["image/gif"]) == animation.gif


def test_every_image_form_of_the_api_shows_the_same_picture(dec):
    z = dec.latents(5, seed=2)
    as_uint8 = dec.decode(z)  # (N, H, W) uint8
    np.testing.assert_array_equal(image_stack(dec.decode_float(z)), as_uint8)  # (N, C, H, W) in [0, 1]
    np.testing.assert_array_equal(image_stack(as_uint8[:, None]), as_uint8)  # (N, 1, H, W), as datasets hold them
    np.testing.assert_array_equal(image_stack(as_uint8[0]), as_uint8[:1])  # one image
    np.testing.assert_array_equal(image_stack(as_uint8.astype(np.float32) / 255), as_uint8)  # floats (N, H, W)
    np.testing.assert_array_equal(image_stack([as_uint8[:2], as_uint8[2:, None]]), as_uint8)  # stacks concatenated
    colour = np.random.default_rng(0).random((2, 3, 8, 8))
    assert image_stack(colour).shape == (2, 8, 8, 3)
    np.testing.assert_array_equal(image_stack(image_stack(colour)), image_stack(colour))
    ds = load_mnist_sample()
    rows = show([ds.test[:4], ds.test[4:8]], nrow=4, scale=1).array()  # originals above "reconstructions"
    np.testing.assert_array_equal(rows, make_grid(ds.test[:8, 0], nrow=4))


@pytest.mark.parametrize(
    "bad, match",
    [
        (np.zeros((2, 28, 28), np.int64), "uint8 0..255 or floats"),
        (np.zeros(5, np.uint8), "stack of images"),
        ([], "no images"),
        ([np.zeros((1, 28, 28), np.uint8), np.zeros((1, 14, 14), np.uint8)], "different shapes"),
        (np.full((1, 1, 4, 4), np.nan, np.float32), "NaN"),
    ],
)
def test_what_cannot_be_shown_says_why(bad, match):
    with pytest.raises(UserInputError, match=match):
        show(bad)


def test_grid_layout_arguments_are_checked():
    images = np.zeros((3, 4, 4), np.uint8)
    for nrow in (0, 1.5, True):
        with pytest.raises(UserInputError, match="nrow"):
            ImageGrid(images, nrow=nrow)
    with pytest.raises(UserInputError, match="scale"):
        ImageGrid(images, scale=0)
    assert show(images, nrow=2, scale=5).array().shape == (5 * (2 * 6 + 2), 5 * (2 * 6 + 2))
