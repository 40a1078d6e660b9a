"""What the command line says: one name for the decoder argument, export directories where a graph is expected,
messages that name the cause (a checkpoint, a truncated file, a missing directory), grammar, notes for the
conversions vaectl makes on its own, and library errors that name Python parameters where the CLI names flags."""

from __future__ import annotations

import re

import numpy as np
import pytest
from conftest import cell, cli, expect_usage_error, read_png
from PIL import Image

from vaectl.cli import main
from vaectl.errors import UserInputError

DECODER_COMMANDS = ["generate", "reconstruct", "interpolate", "traverse", "eval", "explore"]


@pytest.mark.parametrize("command", DECODER_COMMANDS)
def test_every_command_calls_the_decoder_argument_decoder(command):
    """--decoder everywhere, and --onnx, its synonym, shown beside it."""
    help_text = cli(command, "--help").stdout
    assert re.search(r"^\s+--decoder, --onnx PATH", help_text, re.M), help_text
    option = next(p for p in main.get_command(None, command).params if p.name == "decoder")
    assert option.opts == ["--decoder", "--onnx"]


def test_onnx_is_still_accepted_and_gives_the_same_images(mlp_graphs, tmp_path):
    a, b = tmp_path / "a.png", tmp_path / "b.png"
    assert cli("generate", "--onnx", mlp_graphs / "decoder.onnx", "-n", 4, "--seed", 0, "--out", a).exit_code == 0
    assert cli("generate", "--decoder", mlp_graphs / "decoder.onnx", "-n", 4, "--seed", 0, "--out", b).exit_code == 0
    assert a.read_bytes() == b.read_bytes()


def test_an_export_directory_or_a_run_holding_one_is_accepted_for_a_graph(mlp_graphs, digits, tmp_path):
    by_file, by_dir = tmp_path / "f.png", tmp_path / "d.png"
    enc, dec = mlp_graphs / "encoder.onnx", mlp_graphs / "decoder.onnx"
    assert cli("reconstruct", "--encoder", enc, "--decoder", dec, *digits[:2], "--out", by_file).exit_code == 0
    r = cli("reconstruct", "--encoder", mlp_graphs, "--decoder", mlp_graphs, *digits[:2], "--out", by_dir)
    assert r.exit_code == 0, r.stderr
    assert by_file.read_bytes() == by_dir.read_bytes()
    run = tmp_path / "run"  # a run directory with its export in a subfolder, as `vaectl export RUN` leaves it
    (run / "onnx").mkdir(parents=True)
    for name in ("encoder.onnx", "decoder.onnx"):
        (run / "onnx" / name).write_bytes((mlp_graphs / name).read_bytes())
    assert cli("generate", "--decoder", run, "-n", 2, "--out", tmp_path / "g.png").exit_code == 0


def test_a_run_without_an_export_or_a_checkpoint_where_a_graph_is_expected_names_vaectl_export(tiny_mlp_run, tmp_path):
    out = tmp_path / "g.png"
    expect_usage_error(
        cli("generate", "--decoder", tiny_mlp_run, "--out", out), f"vaectl export {tiny_mlp_run}"
    )  # --decoder names graphs
    r = cli("generate", "--decoder", tiny_mlp_run / "best.pt", "--out", out)
    expect_usage_error(r, "a PyTorch checkpoint, not an ONNX graph; export it first (vaectl export")
    expect_usage_error(cli("generate", "--decoder", tmp_path, "--out", out), "no decoder.onnx in this directory")


def test_a_truncated_checkpoint_says_truncated(tiny_mlp_run, tmp_path):
    cut = tmp_path / "cut.pt"
    data = (tiny_mlp_run / "best.pt").read_bytes()
    cut.write_bytes(data[: len(data) // 3])
    r = cli("eval", cut, "--k", 2)
    expect_usage_error(r, "checkpoint is truncated")
    assert "Errno" not in r.stderr


def test_explore_of_a_missing_directory_says_it_does_not_exist(tmp_path):
    expect_usage_error(cli("explore", tmp_path / "nope", "--no-browser"), f"{tmp_path / 'nope'}: no such directory")


def test_the_demo_without_a_label_names_label_none_and_no_path(tmp_path):
    r = cli("traverse", "--demo", "--out", tmp_path / "t.png")
    expect_usage_error(r, "the demo model is a conditional decoder: give a --label (one of 0, 1, 2")
    assert "or none: unconditional" in r.stderr and "site-packages" not in r.stderr and "/" not in r.stderr


def test_grammar_one_image_one_reconstruction_an_encoder(mlp_graphs, digits, tmp_path):
    enc, dec = mlp_graphs / "encoder.onnx", mlp_graphs / "decoder.onnx"
    one = cli("generate", "--decoder", dec, "-n", 1, "--out", tmp_path / "one.png")
    assert one.stderr == f"wrote 1 image to {tmp_path / 'one.png'}\n"
    rec = cli("reconstruct", "--encoder", enc, "--decoder", dec, digits[0], "--out", tmp_path / "r.png")
    assert rec.stderr.endswith(f"wrote 1 reconstruction (below its original) to {tmp_path / 'r.png'}\n")
    swapped = cli("generate", "--decoder", enc, "--out", tmp_path / "x.png")
    expect_usage_error(swapped, "is an exported encoder, but a decoder is expected")
    swapped = cli("reconstruct", "--encoder", dec, "--decoder", dec, digits[0], "--out", tmp_path / "x.png")
    expect_usage_error(swapped, "is an exported decoder, but an encoder is expected")


def test_train_help_shows_real_defaults():
    text = " ".join(cli("train", "--help").stdout.split())
    assert "see README" not in text and "[see" not in text
    assert "(0: off) [0]" in text  # --label-dropout
    assert "(1: none) [1; 2 with --conditional]" in text  # --guidance
    assert "Latent dimensions [32; 4 with --conditional]" in text
    from vaectl.models.presets import IMAGE_RECIPE, SMALL_IMAGE_TRAIN

    for name in ("epochs", "batch_size"):  # the colour recipe's value depends on the image size: both are given
        small, large = SMALL_IMAGE_TRAIN[name], IMAGE_RECIPE.train[name]
        assert f"for colour or 32 px and up {small} up to 32 px, {large} above;" in text


# ----------------------------------------------------------------------------- parameters and flags


def test_library_errors_name_the_python_parameter_and_the_cli_its_flag(mlp_graphs, tmp_path):
    from vaectl.infer import commands

    dec = mlp_graphs / "decoder.onnx"
    cases = [  # (library call, what Python reads, CLI args, what the command line reads)
        (lambda: commands.generate(dec, 0, out=tmp_path / "g.png"), "n must be a positive number of images",
         ["generate", "--decoder", dec, "-n", 0, "--out", tmp_path / "g.png"], "-n must be a positive number"),
        (lambda: commands.traverse(dec, tmp_path / "t.png", dims=[9]), "dims=9 is out of range",
         ["traverse", "--decoder", dec, "--dim", 9, "--out", tmp_path / "t.png"], "--dim 9 is out of range"),
        (lambda: commands.traverse(dec, tmp_path / "t.png", dims=[0], all_dims=True), "give dims or all_dims=True",
         ["traverse", "--decoder", dec, "--dim", 0, "--all", "--out", tmp_path / "t.png"], "give --dim or --all, not"),
        (lambda: commands.generate(dec, 4), "give one of out FILE.png (one grid), out FILE.npy (one uint8 array) or out_dir DIR",
         ["generate", "--decoder", dec], "give one of --out FILE.png (one grid), --out FILE.npy (one uint8 array) or --out-dir DIR"),
        (lambda: commands.data_images(count=0, out=tmp_path / "d.png"), "count must be at least 1",
         ["data-images", "-n", 0, "--out", tmp_path / "d.png"], "-n must be at least 1"),
    ]  # fmt: skip
    for call, python_text, args, cli_text in cases:
        with pytest.raises(UserInputError) as e:
            call()
        assert python_text in str(e.value) and "--" not in str(e.value).split(":")[0], str(e.value)
        expect_usage_error(cli(*args), cli_text)


def test_training_errors_name_parameters_from_python_and_flags_from_the_cli(tmp_path):
    pytest.importorskip("torch")
    from vaectl.training import train

    with pytest.raises(UserInputError, match="^epochs must be at least 1, got 0$"):
        train(out=str(tmp_path / "r"), epochs=0, log=lambda m: None)
    expect_usage_error(cli("train", "--epochs", 0, "--out", tmp_path / "r"), "--epochs must be at least 1, got 0")
    expect_usage_error(cli("eval", "--encoder", "e", "--decoder", "d", "-n", 0), "-n must be at least 1, got 0")


# ----------------------------------------------------------------------------- notes


def test_an_image_squeezed_to_the_models_input_is_said_once(mlp_graphs, tmp_path):
    colour = tmp_path / "wide.png"
    Image.fromarray((np.random.default_rng(0).random((40, 60, 3)) * 255).astype(np.uint8)).save(colour)
    enc, dec = mlp_graphs / "encoder.onnx", mlp_graphs / "decoder.onnx"
    r = cli("encode", "--encoder", enc, colour, colour, colour, "--chunk-size", 1, "--out", tmp_path / "z.npy")
    assert r.exit_code == 0, r.stderr
    notes = [line for line in r.stderr.splitlines() if line.startswith("note:")]
    assert notes == [
        "note: images brought to the model's input (grey 28x28): colour made grey, "
        "resized with the aspect ratio changed (stretched, not cropped)"
    ]  # three batches, one note
    fits = tmp_path / "fits.png"
    Image.fromarray(np.zeros((28, 28), np.uint8)).save(fits)
    quiet = cli("reconstruct", "--encoder", enc, "--decoder", dec, fits, "--out", tmp_path / "r.png")
    assert "note" not in quiet.stderr
    with pytest.warns(UserWarning, match="colour made grey, resized with the aspect ratio changed"):
        from vaectl.infer import Encoder

        Encoder(enc).encode([colour])


def test_a_conditional_generate_without_a_label_says_it_cycles_through_the_classes(cdec, conditional_graphs, tmp_path):
    out = tmp_path / "c.png"
    r = cli("generate", "--decoder", conditional_graphs, "-n", 10, "--nrow", 10, "--seed", 0, "--out", out)
    assert r.exit_code == 0, r.stderr
    assert r.stderr.splitlines()[0] == (
        f"note: {conditional_graphs / 'decoder.onnx'} is conditional and no --label was given: "
        "image i is of class i mod 10 (0, 1, 2, ...); give --label for one class"
    )
    assert np.array_equal(cell(read_png(out), 0, 3), cdec.sample(10, seed=0, label=None)[3])
    labelled = cli("generate", "--decoder", conditional_graphs, "--label", 3, "-n", 2, "--out", out)
    assert "note" not in labelled.stderr


def test_eval_of_a_run_without_torch_names_the_command_on_its_exported_graphs(tiny_mlp_run, mlp_graphs, tmp_path):
    import shlex
    import shutil

    from test_doctor import BASE_INSTALL, run_blocked  # torch and the extras absent, as in `pip install .`

    def run_torch_free(*args):
        return run_blocked(BASE_INSTALL, *args)

    run = tmp_path / "run"
    shutil.copytree(tiny_mlp_run, run)
    r = run_torch_free("eval", run, "-n", 8, "--k", 2)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert f"scoring the PyTorch checkpoint {run} needs torch, which comes with the [train] extra" in r.stderr
    assert f"export it where torch is installed (vaectl export {run}), then: vaectl eval {run / 'onnx'}" in r.stderr

    shutil.copytree(mlp_graphs, run / "onnx")  # as `vaectl export RUN` leaves it
    r = run_torch_free("eval", run / "best.pt", "-n", 8, "--k", 2)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    suggested = r.stderr.split("without it, give the graphs exported from it: vaectl ", 1)[1].strip()
    assert suggested == f"eval {run / 'onnx'}"
    r = run_torch_free(*shlex.split(suggested), "-n", 8, "--k", 2)  # the way it names works without torch
    assert r.returncode == 0, r.stderr
    assert "IWAE" in r.stdout
    r = run_torch_free("eval", run, "-n", 8, "--k", 2)  # the run itself: its export, with a note
    assert r.returncode == 0 and "scoring the export in" in r.stderr, r.stderr


def test_a_dataset_that_cannot_download_names_data_and_the_debian_package(tmp_path, monkeypatch):
    """The download fails (every mirror points at a closed local port, never the network): one line that says
    why and names --data, with Debian's package for Fashion-MNIST, whose folder --data then reads."""
    tvd = pytest.importorskip("torchvision.datasets")
    monkeypatch.setattr(tvd.FashionMNIST, "mirrors", ["http://127.0.0.1:9/a/", "http://127.0.0.1:9/b/"])
    r = cli("train", "--dataset", "fashion-mnist", "--cache-dir", tmp_path / "cache", "--out", tmp_path / "run")
    assert r.exit_code == 2
    (line,) = r.stderr.strip().splitlines()
    assert line.startswith(f"error: could not download FashionMNIST into {tmp_path / 'cache'} (<urlopen error")
    assert "give --data DIR instead of --dataset, DIR holding its IDX files" in line
    assert "`apt install dataset-fashion-mnist` puts them in /usr/share/datasets/fashion-mnist" in line
    assert not (tmp_path / "run").exists()
