"""The conditional VAE: label inputs in the exported graphs, per-label generation through the CLI, and
bad label inputs through the CLI (exit 2, one `error:` line, no traceback).

Already covered elsewhere and not repeated here: ONNX vs PyTorch per label (test_export), Decoder.sample's
label/same_z API (test_infer), `--conditional` on an unlabelled image folder in-process (test_cli_train).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import cli, expect_usage_error, export_run, grid_cells, grid_shape, read_png, run_vaectl
from PIL import Image

from vaectl.errors import UserInputError
from vaectl.infer import Decoder, Encoder

CLASS_NAMES = ("cat", "dog", "eel")
TRAINING_LOG: list[str] = []  # named_run's log lines


@pytest.fixture(scope="module")
def named_run(tmp_path_factory) -> Path:
    """1 epoch of a tiny conditional MLP on an image folder whose subfolders (cat, dog, eel) are the labels."""
    pytest.importorskip("torch")
    from vaectl.training import TrainConfig, train

    root = tmp_path_factory.mktemp("named")
    rng = np.random.default_rng(0)
    for k, name in enumerate(CLASS_NAMES):
        (root / "imgs" / name).mkdir(parents=True)
        for i in range(8):
            pixels = rng.integers(0, 60, (12, 12)) + 80 * k
            Image.fromarray(pixels.astype(np.uint8)).save(root / "imgs" / name / f"{i}.png")
    train(
        TrainConfig(
            out=str(root / "run"),
            data=str(root / "imgs"),
            epochs=1,
            batch_size=8,
            seed=0,
            conditional=True,
            grid_every=0,
        ),
        dict(arch="mlp", latent_dim=3, hidden=(16,)),
        log=TRAINING_LOG.append,
    )
    return root / "run"


@pytest.fixture(scope="module")
def named_graphs(named_run, tmp_path_factory) -> Path:
    pytest.importorskip("onnx")
    return export_run(named_run, tmp_path_factory.mktemp("named_graphs"))


def test_training_header_names_the_classes(named_run):
    header = next(line for line in TRAINING_LOG if line.startswith("training "))
    assert "conditional on 3 classes (cat, dog, eel)" in header


@pytest.fixture(scope="module")
def cdec(conditional_graphs) -> Decoder:
    return Decoder(conditional_graphs / "decoder.onnx")


# ----------------------------------------------------------------------------- exported graphs


def test_exported_encoder_and_decoder_take_an_int64_label(conditional_graphs, mlp_graphs):
    for role, cls, first in (
        ("encoder", Encoder, ("image", "tensor(float)")),
        ("decoder", Decoder, ("z", "tensor(float)")),
    ):
        graph = cls(conditional_graphs / f"{role}.onnx")
        inputs = {i.name: i for i in graph.session.get_inputs()}
        assert set(inputs) == {first[0], "label"}
        assert inputs[first[0]].type == first[1]
        assert inputs["label"].type == "tensor(int64)"
        assert len(inputs["label"].shape) == 1 and not isinstance(inputs["label"].shape[0], int)  # dynamic [N]
        assert graph.num_classes == 10 and graph.class_names == tuple(str(i) for i in range(10))
        # an int32 label is a type error in the graph itself: the input really is typed int64
        feed = {
            first[0]: np.zeros((2, *graph.image_shape) if role == "encoder" else (2, 4), np.float32),
            "label": np.zeros(2, np.int32),
        }
        with pytest.raises(Exception, match="(?i)int64|type"):
            graph.session.run(None, feed)
    # unconditional exports are unchanged: no label input
    for role in ("encoder", "decoder"):
        names = {
            i.name
            for i in (Encoder if role == "encoder" else Decoder)(mlp_graphs / f"{role}.onnx").session.get_inputs()
        }
        assert names == {"image" if role == "encoder" else "z"}


def test_image_folder_subfolders_become_the_class_names(named_run, named_graphs):
    from vaectl.models.checkpoint import Checkpoint

    config = Checkpoint.load(named_run).model().config
    assert config.num_classes == 3 and config.class_names == CLASS_NAMES
    for role, cls in (("encoder", Encoder), ("decoder", Decoder)):
        graph = cls(named_graphs / f"{role}.onnx")
        assert graph.num_classes == 3 and graph.class_names == CLASS_NAMES
    r = cli("info", named_graphs / "decoder.onnx")
    assert r.exit_code == 0 and "classes     cat, dog, eel" in r.stdout


# ----------------------------------------------------------------------------- generation through the CLI


def test_cli_generate_label_is_byte_identical_for_a_seed(conditional_graphs, cdec, tmp_path):
    dec = conditional_graphs / "decoder.onnx"
    outs = {}
    for name, label, seed in (("a", 7, 0), ("b", 7, 0), ("other_seed", 7, 1), ("other_label", 3, 0)):
        outs[name] = tmp_path / f"{name}.png"
        r = cli("generate", "--onnx", dec, "--label", label, "--seed", seed, "-n", 6, "--out", outs[name])
        assert r.exit_code == 0, r.stderr
    data = {k: p.read_bytes() for k, p in outs.items()}
    assert data["a"] == data["b"]
    assert data["a"] != data["other_seed"] and data["a"] != data["other_label"]
    # the pixels are seed-0 latents of the graph's prior decoded with label 7, built here without Decoder.sample
    z = cdec.prior().latents(6, 0)
    grid = read_png(outs["a"])
    assert grid.shape == grid_shape(1, 6)
    assert np.array_equal(grid_cells(grid, 1, 6), cdec.decode(z, label=np.full(6, 7, np.int64)))


def test_cli_generate_label_in_a_fresh_process_is_byte_identical(conditional_graphs, tmp_path):
    a, b = tmp_path / "a.png", tmp_path / "b.png"
    for out in (a, b):
        r = run_vaectl(
            "generate",
            "--onnx",
            conditional_graphs / "decoder.onnx",
            "--label",
            7,
            "--seed",
            0,
            "--out",
            out,
            timeout=120,
        )
        assert r.returncode == 0, r.stderr
    assert a.read_bytes() == b.read_bytes()
    assert read_png(a).shape == grid_shape(8, 8)  # -n 64 by default, 8 per row


def test_cli_label_by_class_name(named_graphs, tmp_path):
    dec = Decoder(named_graphs / "decoder.onnx")
    outs = {}
    for label in ("dog", "DOG", "1", "cat"):
        outs[label] = tmp_path / f"{label}.png"
        r = cli(
            "generate",
            "--onnx",
            named_graphs / "decoder.onnx",
            "--label",
            label,
            "--seed",
            5,
            "-n",
            4,
            "--out",
            outs[label],
        )
        assert r.exit_code == 0, r.stderr
    assert outs["dog"].read_bytes() == outs["1"].read_bytes() == outs["DOG"].read_bytes()
    assert outs["dog"].read_bytes() != outs["cat"].read_bytes()
    z = dec.prior().latents(4, 5)  # the graph's default prior
    cells = grid_cells(read_png(outs["dog"]), 1, 4, side=12)
    assert np.array_equal(cells, dec.decode(z, label=np.ones(4, np.int64)))


@pytest.mark.parametrize("same_z", [True, False])
def test_cli_label_all_has_one_row_per_class(conditional_graphs, cdec, tmp_path, same_z):
    n = 4
    out = tmp_path / "all.png"
    r = cli(
        "generate",
        "--onnx",
        conditional_graphs / "decoder.onnx",
        "--label",
        "all",
        *(["--same-z"] if same_z else []),
        "-n",
        n,
        "--seed",
        0,
        "--prior",
        "normal",
        "--out",
        out,
    )
    assert r.exit_code == 0, r.stderr
    grid = read_png(out)
    assert grid.shape == grid_shape(10, n)
    cells = grid_cells(grid, 10, n).reshape(10, n, 28, 28)
    rng = np.random.default_rng(0)
    if same_z:  # every row decodes the same n latents, with its own label
        z = np.tile(rng.standard_normal((n, 4)), (10, 1)).astype(np.float32)
    else:  # row k: the next n draws of the stream, label k
        z = rng.standard_normal((10 * n, 4)).astype(np.float32)
    expected = cdec.decode(z, label=np.repeat(np.arange(10), n).astype(np.int64)).reshape(10, n, 28, 28)
    assert np.array_equal(cells, expected)
    assert len({row.tobytes() for row in cells}) == 10  # the label changes every row
    if same_z:  # the fitted prior (generate's default): one set of draws, decoded with every label
        z = cdec.prior().latents(n, 0)
        labels = np.repeat(np.arange(10), n).astype(np.int64)
        want = cdec.decode(np.tile(z, (10, 1)), label=labels)
        assert np.array_equal(cdec.sample(n, seed=0, label="all", same_z=True), want)


def test_cli_label_all_uses_the_models_class_count(named_graphs, tmp_path):
    out = tmp_path / "all.png"
    r = cli("generate", "--onnx", named_graphs / "decoder.onnx", "--label", "all", "--same-z", "-n", 5, "--out", out)
    assert r.exit_code == 0, r.stderr
    assert read_png(out).shape == grid_shape(3, 5, side=12)


# ----------------------------------------------------------------------------- bad input


def test_bad_labels_through_the_cli_are_one_line_exit_2(mlp_graphs, conditional_graphs, named_graphs, tmp_path):
    img = tmp_path / "digit.png"
    Image.new("L", (28, 28), 90).save(img)
    enc, dec = mlp_graphs / "encoder.onnx", mlp_graphs / "decoder.onnx"
    cenc, cdec_ = conditional_graphs / "encoder.onnx", conditional_graphs / "decoder.onnx"
    out = tmp_path / "o.png"
    cases = [
        # --label on an unconditional decoder, for every command that takes --label
        (["generate", "--onnx", dec, "--label", "all", "--out", out], "unconditional"),
        (["traverse", "--onnx", dec, "--label", 3, "--out", out], "unconditional"),
        (["interpolate", "--decoder", dec, "--seed-a", 1, "--seed-b", 2, "--label", 3, "--out", out], "unconditional"),
        (["reconstruct", "--encoder", enc, "--decoder", dec, img, "--label", 3, "--out", out], "unconditional"),
        # a label index out of range
        (["generate", "--onnx", cdec_, "--label", -1, "--out", out], "out of range"),
        (["traverse", "--onnx", cdec_, "--label", 10, "--out", out], "out of range"),
        (["generate", "--onnx", named_graphs / "decoder.onnx", "--label", 3, "--out", out], "out of range"),
        (["reconstruct", "--encoder", cenc, "--decoder", cdec_, img, "--label", 12, "--out", out], "out of range"),
        # an unknown class name
        (
            ["generate", "--onnx", named_graphs / "decoder.onnx", "--label", "Sneaker", "--out", out],
            "unknown class 'Sneaker'",
        ),
        (["traverse", "--onnx", named_graphs / "decoder.onnx", "--label", "bird", "--out", out], "cat, dog, eel"),
        # a conditional model used without --label
        (["traverse", "--onnx", cdec_, "--dim", 0, "--out", out], "give a --label"),
        (["traverse", "--onnx", cdec_, "--all", "--seed", 0, "--out", out], "give a --label"),
        (["interpolate", "--decoder", cdec_, "--seed-a", 1, "--seed-b", 2, "--out", out], "give a --label"),
        (["reconstruct", "--encoder", cenc, "--decoder", cdec_, img, "--out", out], "give a --label"),
        (["traverse", "--onnx", cdec_, "--encoder", cenc, "--image", img, "--out", out], "give a --label"),
        # --same-z without --label all; a conditional encoder with an unconditional decoder
        (["generate", "--onnx", cdec_, "--label", 3, "--same-z", "--out", out], "--same-z"),
        (["reconstruct", "--encoder", cenc, "--decoder", dec, img, "--out", out], "different models"),
    ]
    for args, fragment in cases:
        expect_usage_error(cli(*args), fragment)
    assert not out.exists()


def test_issue_bad_inputs_in_a_fresh_process(mlp_graphs, conditional_graphs, tmp_path):
    """As a user runs them: a real interpreter, stderr exactly one line."""
    flat = tmp_path / "flat"
    flat.mkdir()
    for i in range(6):
        Image.new("L", (8, 8), 40 * i).save(flat / f"{i}.png")
    out = tmp_path / "o.png"
    cases = [
        (["generate", "--onnx", mlp_graphs / "decoder.onnx", "--label", 7, "--out", out], "unconditional"),
        (["generate", "--onnx", conditional_graphs / "decoder.onnx", "--label", 10, "--out", out], "out of range"),
        (
            ["generate", "--onnx", conditional_graphs / "decoder.onnx", "--label", "Sneaker", "--out", out],
            "unknown class",
        ),
        (["traverse", "--onnx", conditional_graphs / "decoder.onnx", "--dim", 0, "--out", out], "give a --label"),
    ]
    try:
        import torch  # noqa: F401
    except ImportError:
        pass
    else:  # the training stack is installed: --conditional on an image folder without subfolders
        cases.append(
            (
                [
                    "train",
                    "--data",
                    flat,
                    "--conditional",
                    "--epochs",
                    1,
                    "--arch",
                    "mlp",
                    "--hidden",
                    16,
                    "--latent-dim",
                    2,
                    "--grid-every",
                    0,
                    "--out",
                    tmp_path / "run",
                ],
                "needs labels",
            )
        )
    for args, fragment in cases:
        r = run_vaectl(*args, timeout=300)
        assert r.returncode == 2, (args, r.stderr)
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and fragment in lines[0], r.stderr
        assert "Traceback" not in r.stderr
    assert not out.exists() and not (tmp_path / "run" / "last.pt").exists()


# ----------------------------------------------------------------------------- guidance


def test_cli_guidance_weights_and_the_unconditional_label(guided_graphs, tmp_path):
    dec = Decoder(guided_graphs / "decoder.onnx")
    assert dec.config.guided and dec.config.guidance == 2.0
    info = cli("info", guided_graphs / "decoder.onnx")
    assert info.exit_code == 0 and "input       guidance: tensor(float) [1] (the model's weight: 2)" in info.stdout
    grids = {}
    for w in (None, "1", "2", "3.5", "0"):
        out = tmp_path / f"g{w}.png"
        args = ["generate", "--onnx", guided_graphs / "decoder.onnx", "-n", 8, "--seed", 5, "--label", 7, "--out", out]
        r = cli(*args, *([] if w is None else ["--guidance", w]))
        assert r.exit_code == 0, r.stderr
        grids[w] = read_png(out)
    assert np.array_equal(grids[None], grids["2"])  # the model's own weight when none is given
    assert not np.array_equal(grids["1"], grids["2"]) and not np.array_equal(grids["2"], grids["3.5"])
    # the same images from Python, and weight 1 is the plain conditional decoder: l_c exactly
    z = dec.latents(8, seed=5)
    sampled = dec.sample(8, seed=5, label=7, guidance=3.5)
    assert np.array_equal(sampled, dec.decode(z, 7, guidance=3.5))
    assert np.array_equal(grid_cells(grids["3.5"], 1, 8), sampled)
    # weight 0 and label "none" are both the unconditional decoder
    unconditional = dec.sample(8, seed=5, label="none")
    assert np.array_equal(dec.sample(8, seed=5, label=7, guidance=0.0), dec.sample(8, seed=5, label=7, guidance=0.0))
    assert np.abs(dec.sample(8, seed=5, label=7, guidance=0.0).astype(int) - unconditional).max() <= 1
    r = cli(
        "generate",
        "--onnx",
        guided_graphs / "decoder.onnx",
        "-n",
        4,
        "--seed",
        5,
        "--label",
        "none",
        "--out",
        tmp_path / "none.png",
    )
    assert r.exit_code == 0, r.stderr
    assert np.array_equal(grid_cells(read_png(tmp_path / "none.png"), 1, 4), unconditional[:4])


def test_guidance_bad_inputs_are_one_line_exit_2(guided_graphs, conditional_graphs, mlp_graphs, tmp_path):
    out = tmp_path / "o.png"
    cases = [
        (mlp_graphs, ["--guidance", 2], "takes no guidance weight"),
        (conditional_graphs, ["--label", 3, "--guidance", 2], "takes no guidance weight"),
        (conditional_graphs, ["--label", "none"], "needs a model trained with label dropout"),
        (guided_graphs, ["--label", 3, "--guidance", -1], "finite number >= 0"),
        (guided_graphs, ["--label", 3, "--guidance", "nan"], "finite number >= 0"),
        (guided_graphs, ["--label", 3, "--guidance", "inf"], "finite number >= 0"),
        (guided_graphs, ["--label", 11, "--guidance", 2], "out of range"),
    ]
    for graphs, extra, fragment in cases:
        expect_usage_error(cli("generate", "--onnx", graphs / "decoder.onnx", "--out", out, *extra), fragment)
    assert not out.exists()
    dec = Decoder(guided_graphs / "decoder.onnx")
    with pytest.raises(UserInputError, match="finite number"):
        dec.sample(2, label=1, guidance=float("-inf"))
    with pytest.raises(UserInputError, match="takes no guidance weight"):
        Decoder(conditional_graphs / "decoder.onnx").sample(2, label=1, guidance=1.0)


def test_a_graph_from_a_newer_export_format_is_refused_in_one_line(conditional_graphs, tmp_path):
    import onnx

    from vaectl.contract import FORMAT_VERSION

    model = onnx.load(str(conditional_graphs / "decoder.onnx"))
    for prop in model.metadata_props:
        if prop.key == "vaectl.format_version":
            prop.value = str(FORMAT_VERSION + 1)
    newer = tmp_path / "decoder.onnx"
    onnx.save(model, str(newer))
    out = tmp_path / "o.png"
    r = run_vaectl("generate", "--onnx", newer, "--label", 3, "--out", out, timeout=300)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    lines = r.stderr.strip().splitlines()
    assert (
        len(lines) == 1
        and lines[0].startswith("error: ")
        and f"export format {FORMAT_VERSION + 1} is newer" in lines[0]
    )
    assert not out.exists()


def test_conditional_defaults_and_what_overrides_them():
    from vaectl.training.config import resolve

    defaults = {"latent_dim": 4, "hidden": (1024, 512), "beta": 3.0, "guidance": 2.0}
    assert resolve(conditional=True)[0] == defaults
    assert resolve(conditional=True, beta=1.0, latent_dim=8, guidance=1.0)[0] == {
        **defaults,
        "latent_dim": 8,
        "beta": 1.0,
        "guidance": 1.0,
    }
    assert resolve(conditional=True, label_dropout=0.2)[0] == {**defaults, "label_dropout": 0.2}
    assert resolve(preset="quality", conditional=True)[0]["latent_dim"] == 64  # a preset's own choice wins
    assert resolve()[0] == {}  # unconditional runs are untouched


def test_bad_label_dropout_through_the_cli_is_one_line_exit_2(tmp_path):
    pytest.importorskip("torch")
    common = ["train", "--epochs", 1, "--hidden", 16, "--grid-every", 0, "--out", tmp_path / "run"]
    expect_usage_error(cli(*common, "--conditional", "--label-dropout", 1.5), "label dropout must be in [0, 1)")
    expect_usage_error(cli(*common, "--label-dropout", 0.2), "needs a conditional model")
    expect_usage_error(cli(*common, "--guidance", 2), "guidance needs a conditional model")
    expect_usage_error(cli(*common, "--conditional", "--label-dropout", 0.2, "--guidance", -2), "finite number >= 0")
    assert not (tmp_path / "run" / "last.pt").exists()


def test_a_default_conditional_run_is_guided_against_the_average_label(tmp_path):
    """`vaectl train --conditional` with no model flags: 4-D latent, 1024-512 MLP, beta 3, guidance weight 2
    against the average label (no label dropout); generate feeds the weight, and --guidance 1 is the
    plain conditional decoder."""
    pytest.importorskip("torch")
    pytest.importorskip("onnx")
    run = tmp_path / "run"
    # one epoch on the embedded sample; every model field is the conditional default
    r = cli("train", "--conditional", "--epochs", 1, "--grid-every", 0, "--out", run)
    assert r.exit_code == 0, r.stderr
    assert cli("export", run, "--out", tmp_path / "onnx").exit_code == 0
    dec = Decoder(tmp_path / "onnx" / "decoder.onnx")
    cfg = dec.config
    assert (cfg.latent_dim, cfg.hidden, cfg.beta, cfg.guidance, cfg.label_dropout) == (4, (1024, 512), 3.0, 2.0, 0.0)
    assert "guidance" in {i.name for i in dec.session.get_inputs()}
    assert np.array_equal(dec.sample(6, seed=1, label=3), dec.sample(6, seed=1, label=3, guidance=2.0))
    assert not np.array_equal(dec.sample(6, seed=1, label=3), dec.sample(6, seed=1, label=3, guidance=1.0))
    out = tmp_path / "sevens.png"
    r = cli("generate", "--onnx", tmp_path / "onnx" / "decoder.onnx", "--label", 7, "-n", 4, "--seed", 2, "--out", out)
    assert r.exit_code == 0, r.stderr
    assert np.array_equal(grid_cells(read_png(out), 1, 4), dec.sample(4, seed=2, label=7))
    expect_usage_error(
        cli("generate", "--onnx", tmp_path / "onnx" / "decoder.onnx", "--label", "none", "--out", out),
        "needs a model trained with label dropout",
    )
