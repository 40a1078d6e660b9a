"""The inference commands end to end through the CLI (cli_inference.py): outputs equal the API's, bad input is
one line and exit 2."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from conftest import cell, cli, expect_usage_error, grid_cells, grid_shape, read_png, run_vaectl_in_process  # noqa: E402

from vaectl.infer import (
    Decoder,
    lerp,
)

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
        "--scale",
        1,
        "--no-labels",
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
        "--scale",
        1,
        "--no-labels",
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
        "--scale",
        1,
        "--no-labels",
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
        "--scale",
        1,
        "--no-labels",
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
            "--no-labels",
            "--scale",
            1,
            "--out",
            one,
        ).exit_code
        == 0
    )
    assert read_png(one).shape == grid_shape(1, 9)
    expected = dec.traverse(None, [3], 3.0, 9, seed=0)
    assert np.array_equal(cell(read_png(one), 0, 8), expected[8])
    args = ["traverse", "--onnx", mlp_graphs / "decoder.onnx", "--all", "--steps", 5, "--no-labels", "--scale", 1]
    assert cli(*args, "--out", every).exit_code == 0
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
    r = cli(
        "traverse", "--onnx", tmp_path / "decoder.onnx", "--steps", 5, "--no-labels", "--scale", 1, "--out", default
    )
    assert r.exit_code == 0 and "wrote 2 rows of 5 steps (z1, z3)" in r.stderr
    assert "note: rows: the 2 informative latent dimensions of 4 (mean KL to N(0, 1) above 0.05 nats" in r.stderr
    assert np.array_equal(grid_cells(read_png(default), 2, 5), dec.traverse(None, [1, 3], 3.0, 5))
    r = cli(
        "traverse",
        "--onnx",
        tmp_path / "decoder.onnx",
        "--all",
        "--steps",
        5,
        "--no-labels",
        "--scale",
        1,
        "--out",
        every,
    )
    assert r.exit_code == 0 and "wrote 4 rows of 5 steps (z1, z3, z2, z0)" in r.stderr  # every dimension, by KL
    assert np.array_equal(grid_cells(read_png(every), 4, 5), dec.traverse(None, [1, 3, 2, 0], 3.0, 5))


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
            "--no-labels",
            "--scale",
            1,
            "--out",
            trav,
        ).exit_code
        == 0
    )
    assert np.array_equal(cell(read_png(trav), 0, 2), cdec.traverse(None, [0], 3.0, 3, label=2)[2])


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
        expect_usage_error(cli(*args), fragment)
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
            expect_usage_error(cli("generate", "--onnx", mlp_graphs / "decoder.onnx", "-n", 2, *args), "not writable")
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


# ----------------------------------------------------------------------------- the fitted prior in use


def old_normal_images(decoder, n: int, seed: int, temperature: float = 1.0, label=None):
    """What `vaectl generate` drew before the fitted prior: z = N(0, I) * t from numpy's stream, decoded (with
    `label`, the labels of a conditional decoder)."""
    z = (np.random.default_rng(seed).standard_normal((n, decoder.latent_dim)) * temperature).astype(np.float32)
    return decoder.decode(z, label)


def test_generate_samples_the_fitted_prior_by_default_and_prior_normal_bit_for_bit_as_before(mlp_graphs, tmp_path, dec):
    assert [p.name for p in dec.priors] == ["gmm", "normal"]
    default, normal = tmp_path / "default.png", tmp_path / "normal.png"
    for out, extra in ((default, ()), (normal, ("--prior", "normal"))):
        r = cli(
            "generate",
            "--onnx",
            mlp_graphs / "decoder.onnx",
            "-n",
            16,
            "--seed",
            3,
            "--temperature",
            0.8,
            *extra,
            "--out",
            out,
        )
        assert r.exit_code == 0, r.stderr
    assert np.array_equal(grid_cells(read_png(normal), 2, 8), old_normal_images(dec, 16, 3, 0.8))
    gmm = dec.decode(dec.prior("gmm").latents(16, 3, temperature=0.8))
    assert np.array_equal(grid_cells(read_png(default), 2, 8), gmm)
    assert not np.array_equal(gmm, old_normal_images(dec, 16, 3, 0.8))


def test_fitted_prior_images_do_not_depend_on_the_batch_size_and_temperature_0_gives_component_means(dec):
    whole = dec.sample(50, seed=1)
    assert np.array_equal(np.concatenate(list(dec.iter_sample(50, seed=1, batch_size=7))), whole)
    prior = dec.prior()
    cold = dec.sample(20, seed=1, temperature=0.0)
    means = dec.decode(prior.means[0])
    assert all(any(np.array_equal(image, m) for m in means) for image in cold)


def test_generate_npy_holds_the_pixels_of_the_pngs(mlp_graphs, tmp_path):
    png, npy = tmp_path / "s.png", tmp_path / "s.npy"
    for out in (png, npy):
        r = cli("generate", "--onnx", mlp_graphs / "decoder.onnx", "-n", 10, "--seed", 4, "--nrow", 5, "--out", out)
        assert r.exit_code == 0, r.stderr
    array = np.load(npy)
    assert array.dtype == np.uint8 and array.shape == (10, 1, 28, 28)
    assert np.array_equal(array[:, 0], grid_cells(read_png(png), 2, 5))
    expect_usage_error(
        cli("generate", "--onnx", mlp_graphs / "decoder.onnx", "-n", 2, "--out", npy, "--scale", 2),
        "--scale is for images",
    )
    assert np.array_equal(np.load(npy), array)  # the refused run left the file as it was


def test_generate_npy_of_a_colour_decoder_is_channels_first(tmp_path):
    from onnx_builders import colour_decoder

    path = colour_decoder(tmp_path / "rgb.onnx")
    r = cli("generate", "--onnx", path, "-n", 3, "--seed", 0, "--out", tmp_path / "rgb.npy")
    assert r.exit_code == 0, r.stderr
    array = np.load(tmp_path / "rgb.npy")
    assert array.shape == (3, 3, 8, 8)
    assert np.array_equal(array.transpose(0, 2, 3, 1), Decoder(path).sample(3, seed=0))


def test_interpolate_between_seeds_and_traverse_use_the_fitted_prior(mlp_graphs, tmp_path, dec):
    prior = dec.prior()
    out = tmp_path / "i.png"
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
        "--scale",
        1,
        "--no-labels",
        "--out",
        out,
    )
    assert r.exit_code == 0, r.stderr
    strip = grid_cells(read_png(out), 1, 4)
    assert np.array_equal(strip[0], dec.decode(prior.latents(1, 1))[0])
    assert np.array_equal(strip[3], dec.decode(prior.latents(1, 2))[0])
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
        "--prior",
        "normal",
        "--scale",
        1,
        "--no-labels",
        "--out",
        out,
    )
    assert np.array_equal(grid_cells(read_png(out), 1, 4)[0], old_normal_images(dec, 1, 1)[0])
    # traverse: the other components at the prior's mean, the swept one over its mean +- span standard deviations
    r = cli(
        "traverse",
        "--onnx",
        mlp_graphs / "decoder.onnx",
        "--dim",
        2,
        "--steps",
        3,
        "--span",
        2,
        "--no-labels",
        "--scale",
        1,
        "--out",
        tmp_path / "t.png",
    )
    assert r.exit_code == 0, r.stderr
    mean, std = prior.moments()
    z = np.repeat(mean[None], 3, 0)
    z[:, 2] = mean[2] + std[2] * np.array([-2.0, 0.0, 2.0])
    assert np.array_equal(grid_cells(read_png(tmp_path / "t.png"), 1, 3), dec.decode(z.astype(np.float32)))
    r = cli(
        "traverse",
        "--onnx",
        mlp_graphs / "decoder.onnx",
        "--dim",
        2,
        "--steps",
        3,
        "--span",
        2,
        "--prior",
        "normal",
        "--no-labels",
        "--scale",
        1,
        "--out",
        tmp_path / "n.png",
    )
    z = np.zeros((3, 4), np.float32)
    z[:, 2] = [-2, 0, 2]
    assert np.array_equal(grid_cells(read_png(tmp_path / "n.png"), 1, 3), dec.decode(z))


def test_prior_flag_errors_and_info_shows_the_priors(mlp_graphs, tmp_path, conditional_graphs):
    expect_usage_error(
        cli("generate", "--onnx", mlp_graphs / "decoder.onnx", "--prior", "flow", "--out", tmp_path / "x.png"),
        "unknown prior 'flow'",
    )
    old = Path(__file__).parent / "fixtures" / "v010_plain" / "decoder.onnx"  # exported before the fitted prior
    expect_usage_error(
        cli("generate", "--onnx", old, "--prior", "gmm", "--out", tmp_path / "x.png"), "carries no fitted prior"
    )
    assert not (tmp_path / "x.png").exists()
    text = cli("info", mlp_graphs / "decoder.onnx").output
    assert "prior       gmm (default): mixture of" in text and "            normal: N(0, I)" in text
    assert "characters of JSON" in text
    card = json.loads(cli("info", "--json", mlp_graphs / "decoder.onnx").output)
    assert [p["name"] for p in card["priors"]] == ["gmm", "normal"]
    assert "prior       normal (default): N(0, I)" in cli("info", old).output


# ----------------------------------------------------------------------------- MODEL, the same way everywhere


@pytest.fixture(scope="module")
def exported_run(tiny_mlp_run, mlp_graphs, tmp_path_factory):
    """A copy of the tiny run with its export inside it (RUN/onnx), and a bare copy (checkpoint only)."""
    import shutil

    root = tmp_path_factory.mktemp("model_arg")
    run, bare = root / "run", root / "bare"
    shutil.copytree(tiny_mlp_run, run)
    shutil.copytree(tiny_mlp_run, bare)
    shutil.copytree(mlp_graphs, run / "onnx")
    return run, bare


def test_generate_takes_model_as_a_run_export_graph_or_checkpoint(exported_run, tmp_path):
    pytest.importorskip("torch")
    run, bare = exported_run
    outs = {}
    for name, model in {
        "run": run,
        "export": run / "onnx",
        "graph": run / "onnx" / "decoder.onnx",
        "checkpoint": bare / "best.pt",
        "unexported run": bare,
    }.items():
        out = tmp_path / f"{name.replace(' ', '_')}.npy"
        code, err = run_vaectl_in_process("generate", model, "-n", 4, "--seed", 0, "--prior", "normal", "--out", out)
        assert code == 0, (name, err)
        outs[name] = np.load(out)
        assert ("running it with PyTorch" in err) == (name in ("checkpoint", "unexported run")), name
    # the same model whichever way it was named; PyTorch's arithmetic within a pixel level of onnxruntime's
    assert all(np.array_equal(outs["run"], outs[k]) for k in ("export", "graph"))
    assert all(
        np.abs(outs["run"].astype(int) - outs[k].astype(int)).max() <= 1 for k in ("checkpoint", "unexported run")
    )


def test_model_then_images_for_reconstruct_and_encode(exported_run, digits, tmp_path):
    run, _ = exported_run
    code, err = run_vaectl_in_process("reconstruct", run, *digits[:2], "--out", tmp_path / "rec.png")
    assert code == 0, err
    code, err = run_vaectl_in_process("encode", run / "onnx" / "decoder.onnx", *digits[:2], "--out", tmp_path / "z.npy")
    assert code == 0, err  # the encoder beside the named decoder
    assert len(np.load(tmp_path / "z.npy")) == 2


def test_info_and_eval_take_an_export_directory(exported_run):
    run, _ = exported_run
    result = cli("info", run / "onnx")
    assert "role        encoder" in result.output and "role        decoder" in result.output
    code, err = run_vaectl_in_process("eval", run / "onnx", "--k", 2, "-n", 20)
    assert code == 0, err


def test_onnx_is_a_documented_synonym_of_decoder():
    for command in ("generate", "traverse", "interpolate", "reconstruct"):
        assert "--decoder, --onnx" in cli(command, "--help").output
        assert "MODEL is a run directory" in " ".join(cli(command, "--help").output.split())


def test_no_model_names_every_way_to_give_one():
    code, err = run_vaectl_in_process("generate", "-n", 1, "--out", "x.png")
    assert code == 2 and "give a MODEL" in err and "--decoder" in err and "--demo" in err
