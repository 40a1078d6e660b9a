"""vaectl.infer and the inference commands: API and CLI end to end on graphs exported from tiny runs."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner, Result
from onnx_builders import nan_decoder
from PIL import Image

from vaectl.cli import main
from vaectl.errors import UserInputError
from vaectl.infer import (
    Decoder,
    Encoder,
    VAEPair,
    describe_model,
    interpolate_latents,
    lerp,
    prepare_images,
    slerp,
    traverse_latents,
)

PAD = 2  # make_grid's padding


def grid_shape(rows: int, cols: int, side: int = 28) -> tuple[int, int]:
    """(height, width) of a make_grid PNG."""
    return rows * (side + PAD) + PAD, cols * (side + PAD) + PAD


def cell(grid: np.ndarray, row: int, col: int, side: int = 28) -> np.ndarray:
    y, x = PAD + row * (side + PAD), PAD + col * (side + PAD)
    return grid[y : y + side, x : x + side]


def cli(*args) -> Result:
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def read_png(path) -> np.ndarray:
    return np.asarray(Image.open(path))


@pytest.fixture(scope="module")
def digits(tmp_path_factory) -> list[Path]:
    """Four MNIST test digits as PNG files."""
    from vaectl.data import load_mnist_sample

    data = load_mnist_sample()
    out = tmp_path_factory.mktemp("digits")
    paths = []
    for i in range(4):
        p = out / f"digit{i}.png"
        Image.fromarray(data.test[i, 0]).save(p)
        paths.append(p)
    return paths


@pytest.fixture(scope="module")
def dec(mlp_graphs) -> Decoder:
    return Decoder(mlp_graphs / "decoder.onnx")


@pytest.fixture(scope="module")
def pair(mlp_graphs) -> VAEPair:
    return VAEPair.load(mlp_graphs / "encoder.onnx", mlp_graphs / "decoder.onnx")


# ----------------------------------------------------------------------------- API


def test_decoder_and_encoder_read_their_metadata(mlp_graphs):
    d, e = Decoder(mlp_graphs / "decoder.onnx", threads=1), Encoder(mlp_graphs / "encoder.onnx", threads=1)
    assert (d.info.role, e.info.role) == ("decoder", "encoder")
    assert d.latent_dim == e.latent_dim == 4
    assert d.image_shape == e.image_shape == (1, 28, 28)
    assert not d.conditional and d.num_classes == 0
    assert d.session.get_session_options().intra_op_num_threads == 1


def test_sample_is_uint8_deterministic_and_independent_of_batching(dec):
    a = dec.sample(10, seed=0)
    assert a.shape == (10, 28, 28) and a.dtype == np.uint8
    assert np.array_equal(a, dec.sample(10, seed=0))
    assert not np.array_equal(a, dec.sample(10, seed=1))
    assert not np.array_equal(a[0], a[1])
    chunked = np.concatenate(list(dec.iter_sample(10, seed=0, batch_size=3)))
    assert np.array_equal(a, chunked)


def test_large_runs_stream_in_batches(dec, tmp_path):
    from vaectl.infer import save_image_batches

    sizes = [len(b) for b in dec.iter_sample(1000, seed=0, batch_size=64)]
    assert max(sizes) == 64 and sum(sizes) == 1000
    written_before_batch = []

    def batches():
        for batch in dec.iter_sample(10, seed=0, batch_size=4):
            written_before_batch.append(len(list(tmp_path.glob("*.png"))))
            yield batch

    assert save_image_batches(tmp_path, batches(), 10) == 10
    assert written_before_batch == [0, 4, 8]  # each batch is on disk before the next is made


def test_decode_matches_pytorch(dec, tiny_mlp_run):
    torch = pytest.importorskip("torch")
    from vaectl.models.checkpoint import load_model

    model, _ = load_model(tiny_mlp_run)
    z = dec.latents(16, seed=3)
    with torch.no_grad():
        want = torch.sigmoid(model.decoder(torch.from_numpy(z))).numpy()
    got = dec.decode_float(z)
    assert got.shape == want.shape == (16, 1, 28, 28)
    assert np.abs(got - want).max() < 1e-4
    assert np.abs(dec.decode(z).astype(int) - np.rint(want[:, 0] * 255)).max() <= 1


def test_temperature_zero_gives_the_mean_image(dec):
    images = dec.sample(3, seed=5, temperature=0.0)
    mean = dec.decode(np.zeros((1, 4), np.float32))
    assert all(np.array_equal(im, mean[0]) for im in images)


def test_fp16_variant_loads_and_agrees_with_fp32(mlp_graphs, dec):
    path = mlp_graphs / "decoder.fp16.onnx"
    if not path.exists():
        pytest.skip("this export has no variants")
    fp16 = Decoder(path)
    assert fp16.info.variant == "fp16"
    z = dec.latents(8, seed=0)
    assert np.abs(fp16.decode_float(z) - dec.decode_float(z)).max() < 0.01


def test_reconstruct_decodes_the_posterior_mean(pair, digits):
    rec = pair.reconstruct(digits)
    mu, logvar = pair.encoder.encode(digits)
    assert mu.shape == logvar.shape == (4, 4)
    assert rec.shape == (4, 28, 28)
    assert np.array_equal(rec, pair.decoder.decode(mu))
    assert len({r.tobytes() for r in rec}) == 4  # different inputs, different reconstructions
    assert np.array_equal(pair.reconstruct(digits[2]), rec[2:3])


def test_any_image_form_is_converted(tmp_path, digits):
    rgb = Image.open(digits[0]).convert("RGB").resize((50, 40))
    rgba = tmp_path / "rgba.png"
    Image.open(digits[1]).convert("RGBA").resize((14, 14)).save(rgba)
    palette = Image.open(digits[2]).convert("P")
    as_float = np.asarray(Image.open(digits[3]), dtype=np.float32) / 255
    x = prepare_images([rgb, rgba, palette, as_float, str(digits[0])], (1, 28, 28))
    assert x.shape == (5, 1, 28, 28) and x.dtype == np.float32
    assert x.min() >= 0.0 and x.max() <= 1.0
    assert np.allclose(x[3, 0], as_float, atol=1 / 255)
    assert np.array_equal(x[4], prepare_images(digits[0], (1, 28, 28))[0])
    color = prepare_images(digits[0], (3, 32, 32))
    assert color.shape == (1, 3, 32, 32) and np.array_equal(color[0, 0], color[0, 2])
    stack = np.stack([np.asarray(Image.open(p)) for p in digits])  # (N, H, W) as sample() returns
    assert np.array_equal(prepare_images(stack, (1, 28, 28)), prepare_images(digits, (1, 28, 28)))


def test_interpolation_endpoints_are_the_reconstructions(pair, digits):
    rec = pair.reconstruct(digits[:2])
    for method in ("slerp", "lerp"):
        strip = pair.interpolate(digits[0], digits[1], steps=7, method=method)
        assert strip.shape == (7, 28, 28)
        assert np.array_equal(strip[0], rec[0]) and np.array_equal(strip[-1], rec[1])
        assert not np.array_equal(strip[3], strip[0])


def test_slerp_keeps_the_norm_where_lerp_shrinks_it():
    a, b = np.array([3.0, 0, 0, 0], np.float32), np.array([0, 3.0, 0, 0], np.float32)
    s, line = slerp(a, b, 5), lerp(a, b, 5)
    assert (
        np.array_equal(s[0], a)
        and np.array_equal(s[-1], b)
        and np.array_equal(line[0], a)
        and np.array_equal(line[-1], b)
    )
    assert np.allclose(np.linalg.norm(s, axis=1), 3.0, atol=1e-5)
    assert np.isclose(np.linalg.norm(line[2]), 3.0 / np.sqrt(2), atol=1e-5)
    assert np.allclose(line[2], [1.5, 1.5, 0, 0])
    assert np.allclose(s[2], [3 / np.sqrt(2), 3 / np.sqrt(2), 0, 0], atol=1e-5)
    # parallel vectors: the arc is undefined, slerp falls back to the line
    assert np.allclose(slerp(a, 2 * a, 4), lerp(a, 2 * a, 4))
    with pytest.raises(UserInputError, match="steps"):
        interpolate_latents(a, b, 1)
    with pytest.raises(UserInputError, match="method"):
        interpolate_latents(a, b, 3, method="cubic")


def test_traverse_varies_only_the_chosen_dimension(dec):
    z0 = np.array([0.5, -1.0, 0.25, 2.0], np.float32)
    z = traverse_latents(z0, [2, 0], span=3.0, steps=5)
    assert z.shape == (10, 4)
    assert np.allclose(z[:5, 2], np.linspace(-3, 3, 5)) and np.allclose(z[5:, 0], np.linspace(-3, 3, 5))
    others_row0 = np.delete(z[:5], 2, axis=1)
    assert np.array_equal(others_row0, np.tile(np.delete(z0, 2), (5, 1)))
    assert np.array_equal(np.delete(z[5:], 0, axis=1), np.tile(np.delete(z0, 0), (5, 1)))
    images = dec.traverse(z0, [2, 0], span=3.0, steps=5)
    assert images.shape == (10, 28, 28)
    assert np.array_equal(images, dec.decode(z))
    assert len({im.tobytes() for im in images[:5]}) > 1
    all_dims = dec.traverse(None, None, span=2.0, steps=3)  # z0 defaults to the prior's mean
    assert np.array_equal(all_dims, dec.decode(traverse_latents(np.zeros(4), None, 2.0, 3)))
    with pytest.raises(UserInputError, match="out of range"):
        dec.traverse(z0, [4])


def test_api_bad_arguments_raise_user_errors(dec, pair):
    for call in (
        lambda: dec.sample(0),
        lambda: dec.sample(-1),
        lambda: dec.sample(2, seed=-1),
        lambda: dec.sample(2, temperature=float("nan")),
        lambda: dec.decode(np.zeros((2, 5))),
        lambda: dec.decode(np.full((1, 4), np.nan)),
        lambda: dec.sample(2, label=1),
        lambda: dec.sample(2, label="all"),
        lambda: pair.encoder.encode(b"not an image"),
        lambda: pair.encoder.encode([]),
    ):
        with pytest.raises(UserInputError):
            call()


def test_nan_decoder_output_is_refused_and_not_written(tmp_path):
    path = nan_decoder(tmp_path / "decoder.onnx")
    with pytest.raises(UserInputError, match="NaN"):
        Decoder(path).sample(2, seed=0)
    out = tmp_path / "grid.png"
    out.write_bytes(b"previous")
    r = cli("generate", "--onnx", path, "-n", 4, "--seed", 0, "--out", out)
    assert r.exit_code == 2 and "NaN" in r.stderr
    assert out.read_bytes() == b"previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["decoder.onnx", "grid.png"]  # no temp file left


def test_describe_model(mlp_graphs):
    d = describe_model(mlp_graphs / "decoder.onnx")
    assert d["role"] == "decoder" and d["latent_dim"] == 4 and d["image_shape"] == [1, 28, 28]
    assert [t["name"] for t in d["inputs"]] == ["z"] and d["inputs"][0]["shape"][1] == 4
    assert [t["name"] for t in d["outputs"]] == ["image"] and d["outputs"][0]["shape"][1:] == [1, 28, 28]
    assert d["metadata"]["vaectl.role"] == "decoder"


# ----------------------------------------------------------------------------- conditional


@pytest.fixture(scope="module")
def cdec(conditional_graphs) -> Decoder:
    return Decoder(conditional_graphs / "decoder.onnx")


def test_conditional_sample_per_label_is_deterministic(cdec):
    assert cdec.conditional and cdec.num_classes == 10 and cdec.class_names[7] == "7"
    sevens = cdec.sample(6, seed=0, label=7)
    assert np.array_equal(sevens, cdec.sample(6, seed=0, label="7"))
    assert np.array_equal(sevens, cdec.sample(6, seed=0, label=np.int64(7)))
    z = cdec.latents(6, seed=0)
    assert np.array_equal(sevens, cdec.decode(z, label=7))
    assert not np.array_equal(sevens, cdec.decode(z, label=1))  # the label changes the image
    cycled = cdec.sample(12, seed=0)  # no label: cycle through the classes
    assert np.array_equal(cycled, cdec.decode(cdec.latents(12, seed=0), label=np.arange(12) % 10))


def test_conditional_all_labels_and_same_z(cdec):
    n = 3
    grid = cdec.sample(n, seed=4, label="all", same_z=True)
    assert grid.shape == (10 * n, 28, 28)
    z = np.random.default_rng(4).standard_normal((n, 4)).astype(np.float32)
    for k in range(10):
        assert np.array_equal(grid[k * n : (k + 1) * n], cdec.decode(z, label=k))
    different_z = cdec.sample(n, seed=4, label="all")
    assert different_z.shape == grid.shape and not np.array_equal(different_z[n:], grid[n:])
    with pytest.raises(UserInputError, match="same-z"):
        cdec.sample(n, label=3, same_z=True)


def test_conditional_label_errors(cdec, dec):
    with pytest.raises(UserInputError, match="out of range"):
        cdec.sample(2, label=10)
    with pytest.raises(UserInputError, match="out of range"):
        cdec.sample(2, label=-1)
    with pytest.raises(UserInputError, match="unknown class 'Sneaker'"):
        cdec.sample(2, label="Sneaker")
    with pytest.raises(UserInputError, match="unconditional"):
        dec.sample(2, label=3)
    with pytest.raises(UserInputError, match="conditional decoder: give a --label"):
        cdec.decode(np.zeros((1, 4)))


def test_conditional_pair_needs_and_uses_the_label(conditional_graphs, digits):
    pair = VAEPair.load(conditional_graphs / "encoder.onnx", conditional_graphs / "decoder.onnx")
    with pytest.raises(UserInputError, match="give a --label"):
        pair.reconstruct(digits[:1])
    rec = pair.reconstruct(digits[:2], label=[7, 2])
    mu, _ = pair.encoder.encode(digits[:2], label=[7, 2])
    assert np.array_equal(rec, pair.decoder.decode(mu, label=np.array([7, 2])))
    strip = pair.interpolate(digits[0], digits[1], steps=4, label=3)
    assert strip.shape == (4, 28, 28)


# ----------------------------------------------------------------------------- CLI


def test_cli_generate_grid_is_byte_identical_for_a_seed(mlp_graphs, tmp_path, dec):
    a, b, c = tmp_path / "a.png", tmp_path / "b.png", tmp_path / "c.png"
    for out, seed in ((a, 0), (b, 0), (c, 1)):
        r = cli("generate", "--onnx", mlp_graphs / "decoder.onnx", "-n", 12, "--seed", seed, "--nrow", 4, "--out", out)
        assert r.exit_code == 0, r.stderr
    assert a.read_bytes() == b.read_bytes() != c.read_bytes()
    grid = read_png(a)
    assert grid.shape == grid_shape(3, 4)
    expected = dec.sample(12, seed=0)
    assert np.array_equal(cell(grid, 2, 1), expected[9])


def test_cli_generate_out_dir_writes_one_png_per_image(mlp_graphs, tmp_path, dec):
    out = tmp_path / "samples"
    r = cli("generate", "--onnx", mlp_graphs / "decoder.onnx", "-n", 300, "--seed", 2, "--out-dir", out, "--threads", 1)
    assert r.exit_code == 0, r.stderr
    names = sorted(os.listdir(out))
    assert len(names) == 300 and names[0] == "000000.png" and names[-1] == "000299.png"
    expected = dec.sample(300, seed=2)
    assert np.array_equal(read_png(out / "000299.png"), expected[299])
    assert np.array_equal(read_png(out / "000000.png"), expected[0])


def test_cli_reconstruct_puts_originals_above_reconstructions(mlp_graphs, digits, tmp_path, pair):
    out = tmp_path / "rec.png"
    r = cli(
        "reconstruct",
        "--encoder",
        mlp_graphs / "encoder.onnx",
        "--decoder",
        mlp_graphs / "decoder.onnx",
        *digits[:3],
        "--out",
        out,
    )
    assert r.exit_code == 0, r.stderr
    grid = read_png(out)
    assert grid.shape == grid_shape(2, 3)
    rec = pair.reconstruct(digits[:3])
    for i in range(3):
        assert np.array_equal(cell(grid, 0, i), read_png(digits[i]))
        assert np.array_equal(cell(grid, 1, i), rec[i])
    wrapped = tmp_path / "wrapped.png"
    r = cli(
        "reconstruct",
        "--encoder",
        mlp_graphs / "encoder.onnx",
        "--decoder",
        mlp_graphs / "decoder.onnx",
        *digits,
        *digits[:1],
        "--nrow",
        3,
        "--out",
        wrapped,
    )
    assert r.exit_code == 0, r.stderr
    grid = read_png(wrapped)  # 5 images, 3 per row: originals, reconstructions, originals, reconstructions
    assert grid.shape == grid_shape(4, 3)
    assert np.array_equal(cell(grid, 2, 1), read_png(digits[0])) and np.array_equal(cell(grid, 3, 1), rec[0])


def test_cli_interpolate_between_images_and_between_seeds(mlp_graphs, digits, tmp_path, pair, dec):
    out = tmp_path / "strip.png"
    r = cli(
        "interpolate",
        "--encoder",
        mlp_graphs / "encoder.onnx",
        "--decoder",
        mlp_graphs / "decoder.onnx",
        digits[0],
        digits[1],
        "--steps",
        6,
        "--out",
        out,
    )
    assert r.exit_code == 0, r.stderr
    strip, rec = read_png(out), pair.reconstruct(digits[:2])
    assert strip.shape == grid_shape(1, 6)
    assert np.array_equal(cell(strip, 0, 0), rec[0]) and np.array_equal(cell(strip, 0, 5), rec[1])
    out2 = tmp_path / "seeds.png"
    r = cli(
        "interpolate",
        "--decoder",
        mlp_graphs / "decoder.onnx",
        "--seed-a",
        1,
        "--seed-b",
        2,
        "--steps",
        4,
        "--method",
        "lerp",
        "--out",
        out2,
    )
    assert r.exit_code == 0, r.stderr
    za, zb = dec.latents(1, 1)[0], dec.latents(1, 2)[0]
    expected = dec.decode(lerp(za, zb, 4))
    assert np.array_equal(cell(read_png(out2), 0, 3), expected[3])


def test_cli_traverse_one_dim_and_all(mlp_graphs, tmp_path, dec):
    one, every = tmp_path / "one.png", tmp_path / "all.png"
    assert (
        cli(
            "traverse",
            "--onnx",
            mlp_graphs / "decoder.onnx",
            "--dim",
            3,
            "--span",
            3,
            "--steps",
            9,
            "--seed",
            0,
            "--out",
            one,
        ).exit_code
        == 0
    )
    assert read_png(one).shape == grid_shape(1, 9)
    expected = dec.traverse(None, [3], 3.0, 9, seed=0)
    assert np.array_equal(cell(read_png(one), 0, 8), expected[8])
    assert cli("traverse", "--onnx", mlp_graphs / "decoder.onnx", "--all", "--steps", 5, "--out", every).exit_code == 0
    assert read_png(every).shape == grid_shape(4, 5)


def test_cli_traverse_shows_the_informative_dims_by_default_and_every_dim_with_all(mlp_graphs, tmp_path):
    """The export records KL per dimension; without --dim or --all, traverse skips those that carry nothing."""
    import onnx
    from conftest import grid_cells

    model = onnx.load(str(mlp_graphs / "decoder.onnx"))
    props = {p.key: p.value for p in model.metadata_props}
    props["vaectl.kl_per_dim"] = "[0.0, 2.5, 0.001, 1.25]"  # dims 1 and 3 informative
    onnx.helper.set_model_props(model, props)
    onnx.save(model, str(tmp_path / "decoder.onnx"))
    dec = Decoder(tmp_path / "decoder.onnx")
    default, every = tmp_path / "default.png", tmp_path / "all.png"
    r = cli("traverse", "--onnx", tmp_path / "decoder.onnx", "--steps", 5, "--out", default)
    assert r.exit_code == 0 and "latent dimensions 1, 3" in r.output
    assert np.array_equal(grid_cells(read_png(default), 2, 5), dec.traverse(None, [1, 3], 3.0, 5))
    assert cli("traverse", "--onnx", tmp_path / "decoder.onnx", "--all", "--steps", 5, "--out", every).exit_code == 0
    assert np.array_equal(grid_cells(read_png(every), 4, 5), dec.traverse(None, None, 3.0, 5))


def test_cli_info(mlp_graphs, conditional_graphs):
    r = cli("info", mlp_graphs / "encoder.onnx")
    assert r.exit_code == 0
    assert "role        encoder" in r.stdout and "input       image: tensor(float) [N, 1, 28, 28]" in r.stdout
    assert "output      mu: tensor(float) [N, 4]" in r.stdout
    r = cli("info", "--json", conditional_graphs / "decoder.onnx")
    d = json.loads(r.stdout)
    assert d["role"] == "decoder" and d["class_names"] == [str(i) for i in range(10)]
    assert {t["name"]: t["type"] for t in d["inputs"]} == {"z": "tensor(float)", "label": "tensor(int64)"}


def test_cli_conditional_generate(conditional_graphs, tmp_path, cdec):
    out = tmp_path / "all.png"
    r = cli(
        "generate",
        "--onnx",
        conditional_graphs / "decoder.onnx",
        "--label",
        "all",
        "--same-z",
        "-n",
        5,
        "--seed",
        0,
        "--out",
        out,
    )
    assert r.exit_code == 0, r.stderr
    grid = read_png(out)
    assert grid.shape == grid_shape(10, 5)  # one row per class
    expected = cdec.sample(5, seed=0, label="all", same_z=True)
    assert np.array_equal(cell(grid, 7, 2), expected[7 * 5 + 2])
    sevens = tmp_path / "sevens.png"
    assert (
        cli(
            "generate",
            "--onnx",
            conditional_graphs / "decoder.onnx",
            "--label",
            7,
            "-n",
            4,
            "--seed",
            0,
            "--out",
            sevens,
        ).exit_code
        == 0
    )
    assert np.array_equal(cell(read_png(sevens), 0, 3), cdec.sample(4, seed=0, label=7)[3])
    trav = tmp_path / "trav.png"
    assert (
        cli(
            "traverse",
            "--onnx",
            conditional_graphs / "decoder.onnx",
            "--label",
            2,
            "--dim",
            0,
            "--steps",
            3,
            "--out",
            trav,
        ).exit_code
        == 0
    )
    assert np.array_equal(cell(read_png(trav), 0, 2), cdec.traverse(None, [0], 3.0, 3, label=2)[2])


def _expect_usage_error(result, *fragments):
    assert result.exit_code == 2, (result.exit_code, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.stderr
    for f in fragments:
        assert f in lines[0], lines[0]


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory, mlp_graphs, digits):
    d = tmp_path_factory.mktemp("bad")
    good = (mlp_graphs / "decoder.onnx").read_bytes()
    (d / "truncated.onnx").write_bytes(good[: len(good) // 2])
    (d / "corrupt.onnx").write_bytes(bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8)))
    (d / "empty.onnx").write_bytes(b"")
    (d / "text.onnx").write_text("this is not a model\n")
    (d / "notes.txt").write_text("not an image\n")
    png = digits[0].read_bytes()
    (d / "truncated.png").write_bytes(png[: len(png) // 2])
    return d


def test_cli_bad_inputs_are_one_line_exit_2(mlp_graphs, conv_graphs, conditional_graphs, digits, bad_files, tmp_path):
    enc, dec_ = mlp_graphs / "encoder.onnx", mlp_graphs / "decoder.onnx"
    out = tmp_path / "o.png"
    cases = [
        (["generate", "--onnx", dec_, "-n", 0, "--out", out], "-n"),
        (["generate", "--onnx", dec_, "-n", -5, "--out", out], "-n"),
        (["generate", "--onnx", dec_, "-n", 4], "--out"),
        (["generate", "--onnx", dec_, "-n", 4, "--seed", -1, "--out", out], "seed"),
        (["generate", "--onnx", enc, "-n", 4, "--out", out], "is an exported encoder"),
        (["generate", "--onnx", dec_, "-n", 4, "--label", 3, "--out", out], "unconditional"),
        (["generate", "--onnx", conditional_graphs / "decoder.onnx", "--label", 10, "--out", out], "out of range"),
        (
            ["generate", "--onnx", conditional_graphs / "decoder.onnx", "--label", "Sneaker", "--out", out],
            "unknown class",
        ),
        (["generate", "--onnx", bad_files / "truncated.onnx", "--out", out], "truncated.onnx"),
        (["generate", "--onnx", bad_files / "corrupt.onnx", "--out", out], "corrupt.onnx"),
        (["generate", "--onnx", bad_files / "empty.onnx", "--out", out], "empty"),
        (["generate", "--onnx", bad_files / "text.onnx", "--out", out], "text.onnx"),
        (["generate", "--onnx", digits[0], "--out", out], "digit0.png"),
        (["generate", "--onnx", tmp_path / "missing.onnx", "--out", out], "no such file"),
        (["generate", "--onnx", dec_, "--out", tmp_path / "nope" / "o.png"], "does not exist"),
        (["generate", "--onnx", dec_, "--out", bad_files / "notes.txt" / "o.png"], "does not exist"),
        (["generate", "--onnx", dec_, "--out-dir", tmp_path / "nope" / "deeper"], "does not exist"),
        (["reconstruct", "--encoder", dec_, "--decoder", dec_, digits[0], "--out", out], "is an exported decoder"),
        (["reconstruct", "--encoder", enc, "--decoder", enc, digits[0], "--out", out], "is an exported encoder"),
        (
            ["reconstruct", "--encoder", enc, "--decoder", conv_graphs / "decoder.onnx", digits[0], "--out", out],
            "latent dimensions",
        ),
        (["reconstruct", "--encoder", enc, "--decoder", dec_, bad_files / "notes.txt", "--out", out], "notes.txt"),
        (
            ["reconstruct", "--encoder", enc, "--decoder", dec_, bad_files / "truncated.png", "--out", out],
            "truncated.png",
        ),
        (["reconstruct", "--encoder", enc, "--decoder", dec_, tmp_path / "missing.png", "--out", out], "no such file"),
        (
            ["interpolate", "--encoder", enc, "--decoder", dec_, digits[0], digits[1], "--steps", 1, "--out", out],
            "--steps",
        ),
        (["interpolate", "--decoder", dec_, digits[0], digits[1], "--out", out], "--encoder"),
        (["interpolate", "--decoder", dec_, "--seed-a", 1, "--out", out], "--seed-b"),
        (["traverse", "--onnx", dec_, "--dim", 4, "--out", out], "--dim 4 is out of range"),
        (["traverse", "--onnx", dec_, "--dim", -1, "--out", out], "out of range"),
        (["traverse", "--onnx", dec_, "--steps", 1, "--out", out], "--steps"),
        (["traverse", "--onnx", enc, "--out", out], "is an exported encoder"),
        (["info", bad_files / "corrupt.onnx"], "corrupt.onnx"),
    ]
    for args, fragment in cases:
        _expect_usage_error(cli(*args), fragment)
    assert not out.exists()


def test_cli_unwritable_output_directory(mlp_graphs, tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    if os.access(locked, os.W_OK):  # root ignores the mode bits; /proc/self refuses even root
        if not os.path.isdir("/proc/self"):
            pytest.skip("running as root without /proc: no directory that refuses writes")
        locked = Path("/proc/self")
    try:
        for args in (["--out", locked / "g.png"], ["--out-dir", locked]):
            _expect_usage_error(cli("generate", "--onnx", mlp_graphs / "decoder.onnx", "-n", 2, *args), "not writable")
    finally:
        (tmp_path / "locked").chmod(0o700)


def test_cli_existing_output_is_replaced_whole_or_not_at_all(mlp_graphs, tmp_path):
    out = tmp_path / "grid.png"
    out.write_bytes(b"old")
    r = cli("traverse", "--onnx", mlp_graphs / "decoder.onnx", "--dim", 9, "--out", out)
    assert r.exit_code == 2 and out.read_bytes() == b"old"
    assert cli("generate", "--onnx", mlp_graphs / "decoder.onnx", "-n", 4, "--seed", 0, "--out", out).exit_code == 0
    assert read_png(out).shape == grid_shape(1, 4)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["grid.png"]
