"""vaectl export: ONNX graphs that match PyTorch (plain, row-context, conditional, guided) and describe themselves."""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from conftest import cli, expect_usage_error, make_colour_folder, run_vaectl  # noqa: E402
from export_helpers import (  # noqa: E402
    BUILT,
    CLASS_NAMES,
    QUIET,
    dims,
    load_torch_model,
    metadata,
    random_feeds,
    save_tiny_checkpoint,
    session,
    torch_reference,
)
from onnx import TensorProto  # noqa: E402

from vaectl import __version__  # noqa: E402
from vaectl.contract import (
    DEFAULT_OPSET,  # noqa: E402
    parse_metadata,  # noqa: E402
)
from vaectl.export import ExportResult, export_model  # noqa: E402
from vaectl.export.graphs import RANDOM_OPS  # noqa: E402
from vaectl.files import file_sha256

# ----------------------------------------------------------------------------- round trip


@pytest.fixture
def checkpoint(request, tmp_path) -> Path:
    """A trained run directory from conftest, or a checkpoint file built here from BUILT."""
    name = request.param
    if name in BUILT:
        return save_tiny_checkpoint(tmp_path / f"{name}.pt", **BUILT[name])
    return request.getfixturevalue(name)


@pytest.mark.parametrize("checkpoint", ["tiny_mlp_run", "tiny_conv_run", *BUILT], indirect=True)
def test_round_trip_matches_pytorch(checkpoint, tmp_path):
    out = tmp_path / "onnx"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = export_model(checkpoint, out, **QUIET)
    # the legacy exporter's deprecation notices are filtered; nothing else may leak out either
    assert [str(w.message) for w in caught] == []
    assert isinstance(result, ExportResult)
    assert (result.encoder, result.decoder, result.variants) == (out / "encoder.onnx", out / "decoder.onnx", {})
    assert sorted(p.name for p in out.iterdir()) == ["decoder.onnx", "encoder.onnx"]  # no temp or external-data files
    refined = {"refined encoder.mu"} if "refined" in str(checkpoint) else set()
    assert set(result.max_abs_diff) == {"encoder.mu", "encoder.logvar", "decoder.image", *refined}
    assert all(0 <= d <= 1e-4 for d in result.max_abs_diff.values())

    model = load_torch_model(checkpoint)
    c = model.config
    expected = {
        "encoder": (
            {"image": ["N", c.channels, c.height, c.width], **({"refine_steps": [1]} if c.refine_steps else {})},
            {"mu": ["N", c.latent_dim], "logvar": ["N", c.latent_dim]},
        ),
        "decoder": ({"z": ["N", c.latent_dim]}, {"image": ["N", c.channels, c.height, c.width]}),
    }
    for role, (inputs, outputs) in expected.items():
        path = out / f"{role}.onnx"
        onnx.checker.check_model(str(path), full_check=True)
        graph = onnx.load(str(path))
        assert {v.name: dims(v) for v in graph.graph.input} == inputs
        assert {v.name: dims(v) for v in graph.graph.output} == outputs
        assert all(
            v.type.tensor_type.elem_type == (TensorProto.INT64 if v.name == "refine_steps" else TensorProto.FLOAT)
            for v in (*graph.graph.input, *graph.graph.output)
        )
        assert not {n.op_type for n in graph.graph.node} & RANDOM_OPS
        assert graph.opset_import[0].version == DEFAULT_OPSET
        assert all(t.data_location != TensorProto.EXTERNAL for t in graph.graph.initializer)

        feeds = random_feeds(c, role, n=5)
        got = dict(zip(outputs, session(path).run(list(outputs), feeds)))
        want = torch_reference(model, role, feeds)
        for name in outputs:
            np.testing.assert_allclose(got[name], want[name], rtol=0, atol=1e-4, err_msg=f"{role}.{name}")


@pytest.mark.parametrize("checkpoint", ["tiny_conv_run", "conv-3ch-32"], indirect=True)
def test_metadata_describes_the_graph(checkpoint, tmp_path):
    result = export_model(checkpoint, tmp_path / "onnx", **QUIET)
    ckpt_file = checkpoint / "best.pt" if checkpoint.is_dir() else checkpoint
    config = load_torch_model(checkpoint).config
    for role, path in (("encoder", result.encoder), ("decoder", result.decoder)):
        props = metadata(path)
        info = parse_metadata(props, source=str(path))
        assert (info.role, info.variant, info.vaectl_version) == (role, "fp32", __version__)
        assert info.config == config
        assert info.checkpoint_sha256 == file_sha256(ckpt_file)
        assert props["vaectl.latent_dim"] == str(config.latent_dim)
        assert (props["vaectl.channels"], props["vaectl.height"], props["vaectl.width"]) == tuple(
            map(str, config.image_shape)
        )
        assert props["vaectl.arch"] == config.arch and props["vaectl.likelihood"] == config.likelihood
        # the inference side reads it through onnxruntime, without onnx installed
        assert parse_metadata(session(path).get_modelmeta().custom_metadata_map).config == config
    if checkpoint.is_dir():
        assert metadata(result.decoder)["vaectl.dataset"] == "mnist-sample"


def test_dynamic_batch_runs_without_onnxruntime_warnings(tiny_conv_run, tmp_path, capfd):
    result = export_model(tiny_conv_run, tmp_path / "onnx", fp16=True, int8=True, **QUIET)
    config = load_torch_model(tiny_conv_run).config
    graphs = [("encoder", result.encoder), ("decoder", result.decoder)] + [
        ("decoder", p) for p in result.variants.values()
    ]
    capfd.readouterr()
    for role, path in graphs:
        sess = session(path, severity=2)  # log warnings and errors to stderr
        for n in (1, 7, 256, 4096):
            outputs = sess.run(None, random_feeds(config, role, n))
            assert all(o.shape[0] == n for o in outputs)
    err = capfd.readouterr().err
    assert "[W:onnxruntime" not in err and "[E:onnxruntime" not in err, err[-2000:]


def test_warning_check_detects_a_static_batch(tmp_path, capfd):
    """The check above can fail: a graph that declares batch 1 makes onnxruntime warn at N = 2."""
    from onnx import helper

    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])],
        "static",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])],
    )
    path = tmp_path / "static.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    session(path, severity=2).run(None, {"x": np.zeros((2, 3), np.float32)})
    assert "[W:onnxruntime" in capfd.readouterr().err


@pytest.mark.parametrize("checkpoint", ["tiny_mlp_run", "tiny_conv_run"], indirect=True)
def test_reference_evaluator_agrees(checkpoint, tmp_path):
    """onnx's pure-Python evaluator gives the same outputs: nothing onnxruntime-specific in the graphs."""
    from onnx.reference import ReferenceEvaluator

    result = export_model(checkpoint, tmp_path / "onnx", **QUIET)
    config = load_torch_model(checkpoint).config
    for role, path in (("encoder", result.encoder), ("decoder", result.decoder)):
        feeds = random_feeds(config, role, n=3)
        reference = ReferenceEvaluator(str(path)).run(None, feeds)
        runtime = session(path).run(None, feeds)
        assert len(reference) == len(runtime) == (2 if role == "encoder" else 1)
        for a, b in zip(reference, runtime):
            np.testing.assert_allclose(a, b, rtol=0, atol=1e-5)


# ----------------------------------------------------------------------------- row context


def _switch_on_context(state) -> None:
    """Fresh context models start with the context term at zero; give it weights so the tests can see it."""
    g = torch.Generator().manual_seed(1)
    for name in ("decoder.context.out.weight", "decoder.context.out.bias"):
        state[name] = torch.randn(state[name].shape, generator=g)


@pytest.mark.parametrize("arch", ["mlp", "conv"])
def test_row_context_export_generates_and_scores_like_pytorch(arch, tmp_path, capfd):
    source = save_tiny_checkpoint(
        tmp_path / "ctx.pt",
        edit=_switch_on_context,
        arch=arch,
        channels=3,
        height=20,
        width=18,
        context_channels=4,
        context_kernel=5,
    )
    result = export_model(source, tmp_path / "onnx", fp16=True, **QUIET)
    assert set(result.max_abs_diff) == {
        "encoder.mu",
        "encoder.logvar",
        "encoder.context_logits",
        "decoder.image",
        "decoder.base_logits",
        "decoder.fp16.image",
    }
    model = load_torch_model(source)
    image = ["N", 3, 20, 18]
    enc, dec = onnx.load(str(result.encoder)), onnx.load(str(result.decoder))
    assert {v.name: dims(v) for v in enc.graph.output} == {"mu": ["N", 3], "logvar": ["N", 3], "context_logits": image}
    assert {v.name: dims(v) for v in dec.graph.output} == {"image": image, "base_logits": image}

    capfd.readouterr()
    for n in (1, 5):
        x, z = random_feeds(model.config, "encoder", n)["image"], random_feeds(model.config, "decoder", n)["z"]
        mu, logvar, context = session(result.encoder, severity=2).run(None, {"image": x})
        generated, base = session(result.decoder, severity=2).run(None, {"z": z})
        with torch.no_grad():
            want_generated = torch.sigmoid(model.decoder(torch.from_numpy(z))).numpy()
            want_scored = torch.sigmoid(model.decoder(torch.from_numpy(z), x=torch.from_numpy(x))).numpy()
        np.testing.assert_allclose(generated, want_generated, rtol=0, atol=1e-5)
        # what `vaectl eval` computes from the two graphs is PyTorch's teacher-forced likelihood
        np.testing.assert_allclose(1 / (1 + np.exp(-(base + context))), want_scored, rtol=0, atol=1e-5)
        assert np.abs(want_scored - want_generated).max() > 1e-2  # the real rows above do change the scores
        (fp16,) = session(result.variants["fp16"], severity=2).run(["image"], {"z": z})
        assert np.abs(fp16 - generated).max() <= 1e-2
    err = capfd.readouterr().err
    assert "[W:onnxruntime" not in err and "[E:onnxruntime" not in err, err[-2000:]


def test_int8_is_refused_for_a_row_context_model(tmp_path):
    source = save_tiny_checkpoint(tmp_path / "ctx.pt", context_channels=4)
    result = run_vaectl("export", source, "--out", tmp_path / "onnx", "--int8")
    assert result.returncode == 2 and "--int8 is not available" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "onnx").exists()


# ----------------------------------------------------------------------------- conditional


@pytest.mark.parametrize("arch", ["mlp", "conv"])
def test_conditional_export_has_label_inputs_and_matches_pytorch_per_label(arch, tmp_path):
    from onnx.reference import ReferenceEvaluator

    ckpt = save_tiny_checkpoint(
        tmp_path / "cond.pt", arch=arch, num_classes=3, class_names=CLASS_NAMES, channels=3, height=32, width=32
    )
    result = export_model(ckpt, tmp_path / "onnx", **QUIET)
    model = load_torch_model(ckpt)
    for path in (result.encoder, result.decoder):
        graph = onnx.load(str(path)).graph
        label = {v.name: v for v in graph.input}["label"]
        assert label.type.tensor_type.elem_type == TensorProto.INT64 and dims(label) == ["N"]
        props = metadata(path)
        assert props["vaectl.num_classes"] == "3" and json.loads(props["vaectl.class_names"]) == list(CLASS_NAMES)

    z = np.random.default_rng(0).standard_normal((4, 3), dtype=np.float32)
    decoder = session(result.decoder)
    images = []
    for k in range(3):
        feeds = {"z": z, "label": np.full(4, k, dtype=np.int64)}
        (image,) = decoder.run(None, feeds)
        np.testing.assert_allclose(image, torch_reference(model, "decoder", feeds)["image"], rtol=0, atol=1e-4)
        np.testing.assert_allclose(
            ReferenceEvaluator(str(result.decoder)).run(None, feeds)[0], image, rtol=0, atol=1e-5
        )
        images.append(image)
    assert not np.allclose(images[0], images[1]), "the label must change the decoded image"

    encoder = session(result.encoder)
    x = np.random.default_rng(1).random((4, 3, 32, 32), dtype=np.float32)
    for k in range(3):
        feeds = {"image": x, "label": np.full(4, k, dtype=np.int64)}
        mu, logvar = encoder.run(["mu", "logvar"], feeds)
        want = torch_reference(model, "encoder", feeds)
        np.testing.assert_allclose(mu, want["mu"], rtol=0, atol=1e-4)
        np.testing.assert_allclose(logvar, want["logvar"], rtol=0, atol=1e-4)


# ----------------------------------------------------------------------------- guidance


@pytest.mark.parametrize(
    "context_channels, label_dropout",
    [(0, 0.2), (4, 0.2), (0, 0.0)],  # label dropout 0: guided against the average label, the --conditional default
)
def test_guided_decoder_has_a_guidance_input_with_a_default_and_matches_pytorch(
    context_channels, label_dropout, tmp_path
):
    from vaectl.infer import Decoder

    ckpt = save_tiny_checkpoint(
        tmp_path / "guided.pt",
        num_classes=3,
        class_names=CLASS_NAMES,
        label_dropout=label_dropout,
        guidance=2.0,
        context_channels=context_channels,
        context_kernel=5,
    )
    result = export_model(ckpt, tmp_path / "onnx", fp16=True, **QUIET)
    assert {k for k in result.max_abs_diff if k.startswith("decoder")} >= {"decoder.image", "decoder.fp16.image"}
    graph = onnx.load(str(result.decoder)).graph
    guidance = {v.name: v for v in graph.input}["guidance"]
    assert guidance.type.tensor_type.elem_type == TensorProto.FLOAT and dims(guidance) == [1]
    # a plain input, not backed by an initializer: onnxruntime-web refuses feeds for initializer-backed inputs
    assert "guidance" not in {t.name for t in graph.initializer}
    assert json.loads(metadata(result.decoder)["vaectl.config"])["guidance"] == 2.0  # the weight to feed by default
    assert "guidance" not in {v.name for v in onnx.load(str(result.encoder)).graph.input}

    model = load_torch_model(ckpt)
    sess = session(result.decoder)
    feeds = random_feeds(model.config, "decoder", 6)
    z, y = (torch.from_numpy(feeds[k]) for k in ("z", "label"))
    for w in (0.0, 1.0, 2.0, 4.5):
        (image,) = sess.run(["image"], {**feeds, "guidance": np.array([w], np.float32)})
        with torch.no_grad():
            want = torch.sigmoid(model.decoder(z, y, guidance=torch.tensor([w]))).numpy()
        np.testing.assert_allclose(image, want, rtol=0, atol=1e-5)
    # the reference label (K = 3: "no label", or the average label) and the fp16 variant take the same inputs
    unconditional = sess.run(
        ["image"], {**feeds, "label": np.full(6, 3, np.int64), "guidance": np.ones(1, np.float32)}
    )[0]
    with torch.no_grad():
        want = torch.sigmoid(model.decoder(z, torch.full_like(y, 3))).numpy()
    np.testing.assert_allclose(unconditional, want, rtol=0, atol=1e-5)
    half = session(result.variants["fp16"]).run(["image"], {**feeds, "guidance": np.array([4.5], np.float32)})[0]
    np.testing.assert_allclose(half, image, rtol=0, atol=1e-2)
    # the torch-free side feeds the model's own weight unless told otherwise
    decoder = Decoder(result.decoder)
    np.testing.assert_array_equal(
        decoder.decode_float(feeds["z"], feeds["label"]), decoder.decode_float(feeds["z"], feeds["label"], guidance=2.0)
    )


def test_a_plain_conditional_decoder_is_unchanged_by_the_guidance_fields(tmp_path):
    """label_dropout 0 and guidance 1: no guidance input, the same graph as before guidance existed."""
    ckpt = save_tiny_checkpoint(tmp_path / "cond.pt", num_classes=3, class_names=CLASS_NAMES, guidance=1.0)
    result = export_model(ckpt, tmp_path / "onnx", **QUIET)
    graph = onnx.load(str(result.decoder)).graph
    assert [v.name for v in graph.input] == ["z", "label"]
    assert "guidance" not in {t.name for t in graph.initializer}
    # nor in the metadata: a vaectl that predates guidance still reads it
    assert not {"label_dropout", "guidance"} & set(json.loads(metadata(result.decoder)["vaectl.config"]))


# ----------------------------------------------------------------------------- the resnet on colour images


def test_a_tiny_colour_resnet_exports_and_runs_in_the_torch_free_commands(tmp_path):
    """GroupNorm and nearest Resize in plain opset-17 ops (InstanceNormalization, Resize: onnxruntime and
    onnxruntime-web run both); ORT against PyTorch; the learned sigma in the metadata; generate, reconstruct
    and eval on the graphs."""
    from PIL import Image

    ckpt = save_tiny_checkpoint(tmp_path / "resnet.pt", **BUILT["resnet-3ch-16"])
    out = tmp_path / "onnx"
    export_model(ckpt, out, **QUIET)
    model = load_torch_model(ckpt)
    ops = set()
    for role in ("encoder", "decoder"):
        graph = onnx.load(out / f"{role}.onnx")
        ops |= {node.op_type for node in graph.graph.node}
        feeds = random_feeds(model.config, role, 5, seed=1)
        got = session(out / f"{role}.onnx").run(None, feeds)
        for name, expected in torch_reference(model, role, feeds).items():
            np.testing.assert_allclose(got[[o.name for o in graph.graph.output].index(name)], expected, atol=1e-5)
    assert {"InstanceNormalization", "Resize", "Conv"} <= ops and not ops & {"GroupNormalization", *RANDOM_OPS}
    config = parse_metadata(metadata(out / "decoder.onnx")).config
    assert config.likelihood == "gaussian-learned" and config.log_sigma == (-2.0, -1.5, -1.0)
    images = make_colour_folder(tmp_path / "images", n=12, size=(16, 16), classes=())
    r = run_vaectl("generate", "--decoder", out, "-n", "4", "--out", tmp_path / "samples.png")
    assert r.returncode == 0, r.stderr
    assert Image.open(tmp_path / "samples.png").mode == "RGB"
    r = run_vaectl(
        "reconstruct",
        images / "000.png",
        images / "001.png",
        "--encoder",
        out,
        "--decoder",
        out,
        "--out",
        tmp_path / "r.png",
    )
    assert r.returncode == 0, r.stderr
    r = run_vaectl("eval", "--encoder", out, "--decoder", out, "--data", images, "--k", "4", "--json")
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert report["likelihood"] == "gaussian-learned"
    assert report["bits_per_dim"] == pytest.approx(report["iwae_nll"] / (3 * 16 * 16 * np.log(2)) + 8)


def test_without_out_a_run_exports_into_its_onnx_folder(tiny_mlp_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(tiny_mlp_run, run)
    r = cli("export", run, "--prior", "normal")
    assert r.exit_code == 0, r.stderr
    assert r.stdout.split() == [str(run / "onnx" / "encoder.onnx"), str(run / "onnx" / "decoder.onnx")]
    last = r.stderr.strip().splitlines()[-1]
    assert last == f"next: vaectl generate {run / 'onnx'} --out samples.png, or vaectl explore {run / 'onnx'}"
    samples = tmp_path / "samples.png"
    assert cli("generate", run / "onnx", "--out", samples).exit_code == 0 and samples.stat().st_size > 0
    r = cli("export", run / "last.pt", "--prior", "normal")  # a checkpoint inside the run: the same folder
    assert r.exit_code == 0, r.stderr
    assert r.stdout.split()[-1] == str(run / "onnx" / "decoder.onnx")

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    shutil.copy(run / "best.pt", elsewhere / "model.pt")  # a checkpoint outside any run: the user names the folder
    expect_usage_error(
        cli("export", elsewhere / "model.pt"),
        "a checkpoint outside a training run; name the directory for the graphs with --out",
    )
    assert sorted(p.name for p in elsewhere.iterdir()) == ["model.pt"]
