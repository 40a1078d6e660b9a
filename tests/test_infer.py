"""vaectl.infer's API on graphs exported from tiny runs: sessions, sampling, latent paths, conditional labels."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import cli
from onnx_builders import nan_decoder
from PIL import Image

from vaectl.errors import UserInputError
from vaectl.infer import (
    Decoder,
    Encoder,
    VAEPair,
    describe_model,
    grid_latents,
    interpolate_latents,
    lerp,
    prepare_images,
    slerp,
    traverse_latents,
)

# ----------------------------------------------------------------------------- API


def test_every_name_the_infer_package_promises_resolves():
    """vaectl.infer imports each name from its module on first use; the table must match __all__."""
    import importlib

    import vaectl.infer as infer

    assert sorted(infer.__all__) == sorted(infer._MODULE_OF)
    for name in infer.__all__:
        home = importlib.import_module(infer._MODULE_OF[name], "vaectl.infer")
        assert getattr(infer, name) is getattr(home, name), name
    with pytest.raises(AttributeError):
        infer.load_data  # noqa: B018  (the datasets live in vaectl.data)


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
    from vaectl.models.checkpoint import Checkpoint

    model = Checkpoint.load(tiny_mlp_run).model()
    z = dec.latents(16, seed=3)
    with torch.no_grad():
        want = torch.sigmoid(model.decoder(torch.from_numpy(z))).numpy()
    got = dec.decode_float(z)
    assert got.shape == want.shape == (16, 1, 28, 28)
    assert np.abs(got - want).max() < 1e-4
    assert np.abs(dec.decode(z).astype(int) - np.rint(want[:, 0] * 255)).max() <= 1


def test_temperature_zero_gives_the_mean_image(dec):
    images = dec.sample(3, seed=5, temperature=0.0, prior="normal")  # the fitted prior: its components' means
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
    # under N(0, I) the component sweeps -span..span (a fitted prior: its mean +- span standard deviations)
    images = dec.traverse(z0, [2, 0], span=3.0, steps=5, prior="normal")
    assert images.shape == (10, 28, 28)
    assert np.array_equal(images, dec.decode(z))
    assert len({im.tobytes() for im in images[:5]}) > 1
    all_dims = dec.traverse(None, None, span=2.0, steps=3, prior="normal")  # z0 defaults to the prior's mean
    assert np.array_equal(all_dims, dec.decode(traverse_latents(np.zeros(4), None, 2.0, 3)))
    with pytest.raises(UserInputError, match="out of range"):
        dec.traverse(z0, [4])


def test_grid_latents_lay_two_dimensions_out_like_a_plot(dec):
    z0 = np.array([0.5, -1.0, 0.25, 2.0], np.float32)
    z = grid_latents(z0, dims=(2, 0), span=2.0, steps=5)
    assert z.shape == (25, 4) and z.dtype == np.float32
    grid = z.reshape(5, 5, 4)  # rows top to bottom, columns left to right
    assert np.allclose(grid[0, :, 2], np.linspace(-2, 2, 5))  # dims[0] grows to the right
    assert np.allclose(grid[:, 0, 0], np.linspace(2, -2, 5))  # dims[1] grows upwards: the top row is +span
    assert np.array_equal(np.delete(z, [0, 2], axis=1), np.tile(z0[[1, 3]], (25, 1)))  # the others stay at z0
    assert np.array_equal(grid[2, 2], [0.0, -1.0, 0.0, 2.0])  # the centre: both at 0
    assert np.array_equal(dec.decode(z)[7], dec.decode(grid[1, 2])[0])
    for dims in ((1, 1), (0,), (0, 4)):
        with pytest.raises(UserInputError, match="two different|out of range"):
            grid_latents(z0, dims=dims)
    with pytest.raises(UserInputError, match="span"):
        grid_latents(z0, span=0)
    with pytest.raises(UserInputError, match="steps"):
        grid_latents(z0, steps=1)


def test_images_as_datasets_hold_them_channels_first_are_accepted():
    from vaectl.data import load_mnist_sample

    x = load_mnist_sample().test[:3]  # uint8 (3, 1, 28, 28)
    one_by_one = prepare_images([x[0], x[1], x[2]], (1, 28, 28))
    np.testing.assert_array_equal(one_by_one, x.astype(np.float32) / 255)
    np.testing.assert_array_equal(prepare_images(x[1], (1, 28, 28)), one_by_one[1:2])
    colour = np.random.default_rng(0).integers(0, 256, (3, 28, 28), dtype=np.uint8)  # (C, H, W)
    np.testing.assert_array_equal(
        prepare_images([colour], (3, 28, 28)), prepare_images([colour.transpose(1, 2, 0)], (3, 28, 28))
    )


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
    grid = cdec.sample(n, seed=4, label="all", same_z=True, prior="normal")
    assert grid.shape == (10 * n, 28, 28)
    z = np.random.default_rng(4).standard_normal((n, 4)).astype(np.float32)
    for k in range(10):
        assert np.array_equal(grid[k * n : (k + 1) * n], cdec.decode(z, label=k))
    different_z = cdec.sample(n, seed=4, label="all", prior="normal")
    assert different_z.shape == grid.shape and not np.array_equal(different_z[n:], grid[n:])
    with pytest.raises(UserInputError, match="same_z=True goes with label=all"):
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
    with pytest.raises(UserInputError, match="conditional decoder: give a label"):  # from Python: the parameter
        cdec.decode(np.zeros((1, 4)))


def test_conditional_pair_needs_and_uses_the_label(conditional_graphs, digits):
    pair = VAEPair.load(conditional_graphs / "encoder.onnx", conditional_graphs / "decoder.onnx")
    with pytest.raises(UserInputError, match="give a label"):
        pair.reconstruct(digits[:1])
    rec = pair.reconstruct(digits[:2], label=[7, 2])
    mu, _ = pair.encoder.encode(digits[:2], label=[7, 2])
    assert np.array_equal(rec, pair.decoder.decode(mu, label=np.array([7, 2])))
    strip = pair.interpolate(digits[0], digits[1], steps=4, label=3)
    assert strip.shape == (4, 28, 28)


def test_session_threads_follow_vaectl_threads_then_the_free_cores(mlp_graphs, monkeypatch):
    import os

    from vaectl import threads

    monkeypatch.setenv(threads.ENV, "2")
    assert Decoder(mlp_graphs / "decoder.onnx").session.get_session_options().intra_op_num_threads == 2
    monkeypatch.delenv(threads.ENV)
    monkeypatch.setattr(os, "getloadavg", lambda: (1e6, 0.0, 0.0))  # a machine with every core busy: one
    assert Decoder(mlp_graphs / "decoder.onnx").session.get_session_options().intra_op_num_threads == 1
    assert Decoder(mlp_graphs / "decoder.onnx", threads=3).session.get_session_options().intra_op_num_threads == 3
