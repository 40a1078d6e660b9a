"""The demo model shipped in vaectl/demo/: its files match the manifest, its metadata the recipe, its decoder
carries the fitted prior, and the --demo commands use it."""

from __future__ import annotations

import importlib.util
import shutil

import numpy as np
import pytest
from conftest import REPO, cli, expect_usage_error, grid_cells, read_png
from test_cli_infer import old_normal_images
from test_prior import components, read_prior_with_numpy_only

from vaectl import __version__, demo
from vaectl.data import MNIST_SAMPLE, load_data
from vaectl.errors import VaectlError
from vaectl.files import file_sha256
from vaectl.infer import Decoder, Encoder
from vaectl.prior import MixturePrior


def load_make_demo():
    spec = importlib.util.spec_from_file_location("make_demo", REPO / "tools" / "make_demo.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def flag(argv: list[str], name: str) -> str:
    return argv[argv.index(name) + 1]


def test_shipped_files_match_the_manifest_checksums():
    manifest = demo.manifest()
    assert sorted(manifest["sha256"]) == ["decoder.onnx", "encoder.onnx"]
    for name, digest in manifest["sha256"].items():
        assert file_sha256(demo.DEMO_DIR / name) == digest, name
        assert (demo.DEMO_DIR / name).stat().st_size == manifest["bytes"][name]
    assert demo.demo_dir() == demo.DEMO_DIR  # verify() passes
    assert sum(manifest["bytes"].values()) < 2.5e6  # small enough to ship in the base install


def test_metadata_matches_the_recipe_seed_and_version():
    manifest = demo.manifest()
    assert manifest["recipe"] == load_make_demo().RECIPE  # the manifest describes the script's recipe
    train = manifest["recipe"]["train"]
    assert train[:2] == ["vaectl", "train"] and "--conditional" in train
    assert int(flag(train, "--seed")) == manifest["seed"]
    enc, dec = Encoder(demo.demo_path("encoder")), Decoder(demo.demo_path("decoder"))
    for graph in (enc, dec):
        cfg = graph.config
        assert cfg.latent_dim == int(flag(train, "--latent-dim")) == 2
        assert cfg.dataset == flag(train, "--dataset") == MNIST_SAMPLE
        # the model flags are spelled out in the recipe, so it stays the demo's whatever the defaults become
        assert ",".join(map(str, cfg.hidden)) == flag(train, "--hidden") and cfg.beta == float(flag(train, "--beta"))
        assert cfg.label_dropout == float(flag(train, "--label-dropout"))
        assert cfg.guidance == float(flag(train, "--guidance"))
        assert graph.conditional and graph.class_names == tuple(str(i) for i in range(10))
        assert graph.info.variant == "fp16"
        assert graph.info.vaectl_version == manifest["vaectl_version"]
    assert enc.info.checkpoint_sha256 == dec.info.checkpoint_sha256  # one checkpoint, one export
    assert manifest["vaectl_version"] == __version__, "re-run tools/make_demo.py after a version bump"


def test_weights_digest_matches_the_manifest():
    pytest.importorskip("onnx")  # the digest reads initializers with onnx (the [train] extra)
    make_demo = load_make_demo()
    for name, digest in demo.manifest()["weights_sha256"].items():
        assert make_demo.weights_sha256(demo.DEMO_DIR / name) == digest


def test_the_demo_latent_is_used_and_reconstructs_digits():
    """Both latent dimensions spread the test set out (the map shows the whole latent), and decoding the posterior
    means with the true labels stays close to the images (a trained model, not random weights)."""
    ds = load_data()
    x, y = ds.test[:500], ds.test_labels[:500]
    enc, dec = Encoder(demo.demo_path("encoder")), Decoder(demo.demo_path("decoder"))
    mu, logvar = enc.encode(x, y)
    assert (mu.std(axis=0) > 0.5).all()
    assert (np.exp(logvar).mean(axis=0) < 0.2).all()  # informative: posterior much narrower than the prior
    recon = dec.decode_float(mu, y)
    assert np.abs(recon - x / 255.0).mean() < 0.12


def test_the_shipped_decoder_carries_one_fitted_mixture_for_all_classes():
    """Export fitted the prior to the encoded mnist-sample and the float16 decoder kept it: `vaectl info` lists it
    as the default, one mixture shared by every class (a reader with numpy alone finds exactly one), as the
    manifest says."""
    path = demo.demo_path("decoder")
    doc, log_p, _ = read_prior_with_numpy_only(path)
    assert (doc["kind"], doc["latent_dim"], doc["by_label"]) == ("gmm", 2, False)
    k = components(doc)
    assert k >= 2  # a mixture, not one Gaussian
    assert (doc["fitted_to"]["data"], doc["fitted_to"]["images"]) == (MNIST_SAMPLE, len(load_data().train))
    assert demo.manifest()["prior"] == {"kind": "gmm", "by_label": False, "components": [k]}
    dec = Decoder(path)
    assert [p.name for p in dec.priors] == ["gmm", "normal"]
    text = cli("info", path).stdout
    assert f"prior       gmm (default): mixture of {k} full-covariance Gaussians fitted to" in text
    assert "            normal: N(0, I)" in text
    # fitted to where this encoder puts images: it scores draws of q(z|x, y) of the test images above N(0, I)
    ds = load_data()
    mu, logvar = Encoder(demo.demo_path("encoder")).encode(ds.test, ds.test_labels)
    z = mu + np.exp(0.5 * logvar) * np.random.default_rng(1).standard_normal(mu.shape)
    assert log_p(z).mean() > dec.prior("normal").log_density(z).mean()


def test_generate_with_demo_draws_from_the_fitted_prior_by_default(tmp_path):
    """`vaectl generate --demo` decodes vaectl.prior's draws of the mixture the metadata holds (the classes in
    turn, no --label given); `--prior normal` decodes N(0, I) draws of the same seed, other images."""
    dec = Decoder(demo.demo_path("decoder"))
    doc, _, _ = read_prior_with_numpy_only(demo.demo_path("decoder"))
    labels = np.arange(16) % 10
    images = {}
    for name, extra in (("gmm", ()), ("normal", ("--prior", "normal"))):
        r = cli("generate", "--demo", "-n", 16, "--seed", 3, *extra, "--out", tmp_path / f"{name}.png")
        assert r.exit_code == 0, r.stderr
        images[name] = grid_cells(read_png(tmp_path / f"{name}.png"), 2, 8)
    assert np.array_equal(images["gmm"], dec.decode(MixturePrior(doc).latents(16, 3), labels))
    assert np.array_equal(images["normal"], old_normal_images(dec, 16, 3, label=labels))
    assert not np.array_equal(images["gmm"], images["normal"])


def test_generate_with_demo_equals_generate_with_its_file(tmp_path):
    r = cli("generate", "--demo", "-n", 10, "--seed", 0, "--out", tmp_path / "a.png")
    assert r.exit_code == 0, r.stderr
    assert (
        cli(
            "generate", "--onnx", demo.demo_path("decoder"), "-n", 10, "--seed", 0, "--out", tmp_path / "b.png"
        ).exit_code
        == 0
    )
    assert (tmp_path / "a.png").read_bytes() == (tmp_path / "b.png").read_bytes()
    assert read_png(tmp_path / "a.png").shape == (62, 242)


def test_demo_on_the_other_commands(tmp_path):
    digits = load_data().test
    from PIL import Image

    for i in (0, 1):
        Image.fromarray(digits[i, 0]).save(tmp_path / f"d{i}.png")
    ims = [tmp_path / "d0.png", tmp_path / "d1.png"]
    runs = [
        ["traverse", "--demo", "--label", 8, "--all", "--steps", 5, "--out", tmp_path / "t.gif"],
        ["traverse", "--demo", "--label", 8, "--image", ims[0], "--dim", 0, "--out", tmp_path / "ti.png"],
        ["interpolate", "--demo", "--label", 3, "--seed-a", 1, "--seed-b", 2, "--out", tmp_path / "i.png"],
        ["interpolate", "--demo", "--label", 3, *ims, "--out", tmp_path / "ii.png"],
        ["reconstruct", "--demo", "--label", 7, *ims, "--out", tmp_path / "r.png"],
        ["encode", "--demo", "--out", tmp_path / "z.npy"],
    ]
    for args in runs:
        r = cli(*args)
        assert r.exit_code == 0, (args, r.stderr)
    assert np.load(tmp_path / "z.npy")["mu"].shape == (len(digits), 2)
    expect_usage_error(
        cli("generate", "--demo", "--onnx", demo.demo_path("decoder"), "--out", tmp_path / "x.png"), "not both"
    )
    expect_usage_error(cli("generate", "--out", tmp_path / "x.png"), "--demo")
    expect_usage_error(cli("traverse", "--demo", "--out", tmp_path / "x.png"), "--label")


def test_a_damaged_demo_file_is_reported(tmp_path, monkeypatch):
    copy = tmp_path / "demo"
    shutil.copytree(demo.DEMO_DIR, copy, ignore=shutil.ignore_patterns("__pycache__", "*.py"))
    data = bytearray((copy / "decoder.onnx").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (copy / "decoder.onnx").write_bytes(bytes(data))
    monkeypatch.setattr(demo, "DEMO_DIR", copy)
    with pytest.raises(VaectlError, match="decoder.onnx is missing or fails its checksum"):
        demo.demo_dir()
    r = cli("generate", "--demo", "--out", tmp_path / "x.png")
    assert r.exit_code == 1 and "reinstall vaectl" in r.stderr
