"""vaectl export: ONNX graphs that match PyTorch, describe themselves, and refuse bad input cleanly."""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from click.testing import CliRunner  # noqa: E402
from conftest import run_vaectl  # noqa: E402
from onnx import TensorProto  # noqa: E402

from vaectl import __version__  # noqa: E402
from vaectl.cli import main  # noqa: E402
from vaectl.contract import parse_metadata  # noqa: E402
from vaectl.errors import VerificationError  # noqa: E402
from vaectl.export import ExportResult, export_model  # noqa: E402
from vaectl.export.graphs import DEFAULT_OPSET, RANDOM_OPS  # noqa: E402
from vaectl.files import file_sha256
from vaectl.models import VAEConfig  # noqa: E402
from vaectl.models.checkpoint import save_checkpoint  # noqa: E402
from vaectl.models.vae import VAE  # noqa: E402

TINY = dict(latent_dim=3, hidden=(16,), conv_channels=(4, 8), conv_hidden=16)
CLASS_NAMES = ("cat", "dog", "eel")
BUILT = {  # name -> config overrides for checkpoints built here (the trained runs come from conftest)
    "conv-3ch-32": dict(arch="conv", channels=3, height=32, width=32),
    "mlp-3ch-64-latent1": dict(arch="mlp", channels=3, height=64, width=64, latent_dim=1),
    "conv-1ch-64": dict(arch="conv", channels=1, height=64, width=64, conv_channels=(4, 8, 8)),
}
QUIET = dict(log=lambda message: None)


def save_tiny_checkpoint(path, seed: int = 0, edit=None, **overrides) -> Path:
    """A checkpoint as training writes one (format, config, model), holding an untrained tiny VAE."""
    config = VAEConfig(**{**TINY, **overrides})
    torch.manual_seed(seed)
    state = VAE(config).state_dict()
    if edit is not None:
        edit(state)
    save_checkpoint(path, {"vaectl_version": __version__, "config": config.to_dict(), "model": state})
    return Path(path)


def load_torch_model(path):
    from vaectl.models.checkpoint import load_model

    return load_model(path)[0]


def metadata(path) -> dict[str, str]:
    return {p.key: p.value for p in onnx.load(str(path)).metadata_props}


def dims(value) -> list:
    return [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]


def session(path, severity: int = 3) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.log_severity_level = severity
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def torch_reference(model, role: str, feeds: dict) -> dict[str, np.ndarray]:
    tensors = [torch.from_numpy(v) for v in feeds.values()]
    with torch.no_grad():
        if role == "encoder":
            mu, logvar = model.encoder(*tensors)
            return {"mu": mu.numpy(), "logvar": logvar.numpy()}
        return {"image": torch.sigmoid(model.decoder(*tensors)).numpy()}


def random_feeds(config: VAEConfig, role: str, n: int, seed: int = 123) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    first = (
        rng.random((n, *config.image_shape), dtype=np.float32)
        if role == "encoder"
        else rng.standard_normal((n, config.latent_dim), dtype=np.float32)
    )
    feeds = {"image" if role == "encoder" else "z": first}
    if config.num_classes:
        feeds["label"] = rng.integers(0, config.num_classes, n).astype(np.int64)
    return feeds


@pytest.fixture
def checkpoint(request, tmp_path) -> Path:
    """A trained run directory from conftest, or a checkpoint file built here from BUILT."""
    name = request.param
    if name in BUILT:
        return save_tiny_checkpoint(tmp_path / f"{name}.pt", **BUILT[name])
    return request.getfixturevalue(name)


# ----------------------------------------------------------------------------- round trip


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
    assert set(result.max_abs_diff) == {"encoder.mu", "encoder.logvar", "decoder.image"}
    assert all(0 <= d <= 1e-4 for d in result.max_abs_diff.values())

    model = load_torch_model(checkpoint)
    c = model.config
    expected = {
        "encoder": (
            {"image": ["N", c.channels, c.height, c.width]},
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
        assert all(v.type.tensor_type.elem_type == TensorProto.FLOAT for v in (*graph.graph.input, *graph.graph.output))
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


# ----------------------------------------------------------------------------- variants, opset, --last


@pytest.mark.parametrize("checkpoint", ["tiny_mlp_run", "conditional-conv"], indirect=False)
def test_fp16_and_int8_decoders(checkpoint, request, tmp_path):
    if checkpoint == "conditional-conv":
        source = save_tiny_checkpoint(tmp_path / "cond.pt", arch="conv", num_classes=3, class_names=CLASS_NAMES)
    else:
        source = request.getfixturevalue(checkpoint)
    result = export_model(source, tmp_path / "onnx", fp16=True, int8=True, **QUIET)
    out = tmp_path / "onnx"
    assert result.variants == {"fp16": out / "decoder.fp16.onnx", "int8": out / "decoder.int8.onnx"}
    assert sorted(p.name for p in out.iterdir()) == [
        "decoder.fp16.onnx",
        "decoder.int8.onnx",
        "decoder.onnx",
        "encoder.onnx",
    ]
    assert result.max_abs_diff["decoder.fp16.image"] <= 1e-2 and result.max_abs_diff["decoder.int8.image"] <= 1e-1

    config = load_torch_model(source).config
    fp32 = onnx.load(str(result.decoder))
    feeds = random_feeds(config, "decoder", n=16)
    (reference,) = session(result.decoder).run(None, feeds)
    for variant, bound, weight_types in (("fp16", 1e-2, {TensorProto.FLOAT16}), ("int8", 1e-1, {TensorProto.INT8})):
        path = result.variants[variant]
        onnx.checker.check_model(str(path), full_check=True)
        graph = onnx.load(str(path))
        # same interface as the float32 decoder: float32 in and out, int64 label
        assert [(v.name, v.type.tensor_type.elem_type, dims(v)) for v in graph.graph.input] == [
            (v.name, v.type.tensor_type.elem_type, dims(v)) for v in fp32.graph.input
        ]
        assert [(v.name, v.type.tensor_type.elem_type, dims(v)) for v in graph.graph.output] == [
            (v.name, v.type.tensor_type.elem_type, dims(v)) for v in fp32.graph.output
        ]
        info = parse_metadata(metadata(path))
        assert (info.variant, info.role, info.config) == (variant, "decoder", config)
        assert weight_types <= {t.data_type for t in graph.graph.initializer}
        assert path.stat().st_size < 0.75 * result.decoder.stat().st_size
        (image,) = session(path).run(None, feeds)
        assert image.dtype == np.float32 and np.isfinite(image).all()
        assert float(np.abs(image - reference).max()) <= bound
    fp16_floats = [
        t for t in onnx.load(str(result.variants["fp16"])).graph.initializer if t.data_type == TensorProto.FLOAT
    ]
    assert fp16_floats == [], "every float weight of the fp16 decoder is float16"


def test_fp16_overflow_fails_verification_and_writes_nothing(tmp_path):
    """A weight beyond float16's range (65504) cannot make a usable fp16 decoder: exit 1, no files."""

    def huge_bias(state):
        state["decoder.body.2.bias"][:] = 1e5  # saturates the float32 sigmoid at 1: the fp32 graphs still verify

    ckpt = save_tiny_checkpoint(tmp_path / "huge.pt", arch="mlp", edit=huge_bias)
    out = tmp_path / "onnx"
    with pytest.raises(VerificationError, match=r"decoder\.fp16.*float16 range"):
        export_model(ckpt, out, fp16=True, **QUIET)
    assert not out.exists()


@pytest.mark.parametrize("opset", [13, 20])
def test_opset_is_selectable(opset, tmp_path):
    ckpt = save_tiny_checkpoint(tmp_path / "m.pt", arch="conv")
    result = export_model(ckpt, tmp_path / "onnx", opset=opset, int8=True, **QUIET)
    for path in (result.encoder, result.decoder, result.variants["int8"]):
        versions = {o.domain: o.version for o in onnx.load(str(path)).opset_import}
        assert versions[""] == opset


def test_run_directory_uses_best_or_last_through_the_cli(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    save_tiny_checkpoint(run / "best.pt", seed=0, arch="mlp")
    save_tiny_checkpoint(run / "last.pt", seed=1, arch="mlp")
    assert file_sha256(run / "best.pt") != file_sha256(run / "last.pt")
    for flags, name in (([], "best.pt"), (["--last"], "last.pt")):
        out = tmp_path / f"onnx-{name}"
        result = CliRunner().invoke(main, ["export", str(run), "--out", str(out), *flags])
        assert result.exit_code == 0, result.stderr
        assert result.stdout.split() == [str(out / "encoder.onnx"), str(out / "decoder.onnx")]
        assert "max abs diff" in result.stderr
        for graph in ("encoder.onnx", "decoder.onnx"):
            assert parse_metadata(metadata(out / graph)).checkpoint_sha256 == file_sha256(run / name)


# ----------------------------------------------------------------------------- publishing only verified graphs


def test_existing_files_are_replaced_after_verification(tmp_path):
    ckpt = save_tiny_checkpoint(tmp_path / "m.pt", arch="mlp")
    out = tmp_path / "onnx"
    out.mkdir()
    (out / "encoder.onnx").write_bytes(b"old encoder")
    (out / "decoder.onnx").write_bytes(b"old decoder")
    (out / "notes.txt").write_text("mine")
    export_model(ckpt, out, **QUIET)
    assert sorted(p.name for p in out.iterdir()) == ["decoder.onnx", "encoder.onnx", "notes.txt"]
    for name in ("encoder.onnx", "decoder.onnx"):
        onnx.checker.check_model(str(out / name), full_check=True)
    assert (out / "notes.txt").read_text() == "mine"


def test_failed_verification_exits_1_lists_every_failure_and_leaves_files_alone(tmp_path, monkeypatch):
    from vaectl.export import verify

    real = verify.torch_outputs

    def shifted(model, role, feeds):  # PyTorch "disagrees" with onnxruntime by 1e-3 on every output
        return {name: value + 1e-3 for name, value in real(model, role, feeds).items()}

    monkeypatch.setattr(verify, "torch_outputs", shifted)
    ckpt = save_tiny_checkpoint(tmp_path / "m.pt", arch="conv")
    out = tmp_path / "onnx"
    out.mkdir()
    old = b"a previously exported decoder"
    (out / "decoder.onnx").write_bytes(old)

    result = CliRunner().invoke(main, ["export", str(ckpt), "--out", str(out), "--fp16"])
    assert result.exit_code == 1, result.output
    error_lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(error_lines) == 1
    for output in ("encoder.mu", "encoder.logvar", "decoder.image"):
        assert f"{output} at N=1" in error_lines[0] and f"{output} at N=64" in error_lines[0]
    assert "> atol 0.0001" in error_lines[0] and "nothing was written" in error_lines[0]
    assert sorted(p.name for p in out.iterdir()) == ["decoder.onnx"]  # no temp files, no variants
    assert (out / "decoder.onnx").read_bytes() == old

    fresh = tmp_path / "fresh"
    assert CliRunner().invoke(main, ["export", str(ckpt), "--out", str(fresh)]).exit_code == 1
    assert not fresh.exists()


def test_atol_zero_reports_the_measured_difference(tmp_path):
    """With --atol 0 any rounding difference fails; the numbers are real measurements, not placeholders."""
    ckpt = save_tiny_checkpoint(tmp_path / "m.pt", arch="conv", conv_hidden=64)
    out = tmp_path / "onnx"
    try:
        result = export_model(ckpt, out, atol=0.0, **QUIET)
    except VerificationError as e:
        assert "> atol 0" in str(e)
        assert not out.exists()
    else:  # bit-identical outputs are legal; then the report must say so
        assert all(d == 0.0 for d in result.max_abs_diff.values())


# ----------------------------------------------------------------------------- bad input


def _bad_input(tmp_path: Path, case: str) -> tuple[list[str], str]:
    """(CLI args, a fragment the message must contain) for one kind of bad input."""
    out = str(tmp_path / "onnx")
    good = tmp_path / "good.pt"
    if case == "missing path":
        return ["export", str(tmp_path / "nope"), "--out", out], "no such file or directory"
    if case == "directory without checkpoint":
        (tmp_path / "empty-run").mkdir()
        return ["export", str(tmp_path / "empty-run"), "--out", out], "no checkpoint"
    if case == "text file":
        (tmp_path / "notes.pt").write_text("these are not weights\n")
        return ["export", str(tmp_path / "notes.pt"), "--out", out], "not a vaectl checkpoint"
    if case == "zip that is not a checkpoint":
        torch.save({"weights": torch.zeros(2)}, tmp_path / "other.pt")
        return ["export", str(tmp_path / "other.pt"), "--out", out], "not a vaectl checkpoint"
    if case == "zero-byte checkpoint":
        (tmp_path / "empty.pt").write_bytes(b"")
        return ["export", str(tmp_path / "empty.pt"), "--out", out], "empty"
    if case == "truncated checkpoint":
        data = save_tiny_checkpoint(good, arch="mlp").read_bytes()
        (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])
        return ["export", str(tmp_path / "cut.pt"), "--out", out], "truncated or corrupt"
    if case == "non-finite weights":

        def poison(state):
            state["decoder.body.0.weight"][0, 0] = float("nan")

        save_tiny_checkpoint(tmp_path / "nan.pt", arch="mlp", edit=poison)
        return ["export", str(tmp_path / "nan.pt"), "--out", out], "NaN or inf"
    if case == "config from a newer version":
        config = VAEConfig(**TINY, arch="mlp")
        save_checkpoint(
            tmp_path / "newer.pt",
            {"config": {**config.to_dict(), "attention_heads": 4}, "model": VAE(config).state_dict()},
        )
        return ["export", str(tmp_path / "newer.pt"), "--out", out], "newer version"
    if case == "output path under a file":
        save_tiny_checkpoint(good, arch="mlp")
        (tmp_path / "a-file").write_text("x")
        return ["export", str(good), "--out", str(tmp_path / "a-file" / "onnx")], "cannot write"
    if case == "output path is a file":
        save_tiny_checkpoint(good, arch="mlp")
        (tmp_path / "a-file").write_text("x")
        return ["export", str(good), "--out", str(tmp_path / "a-file")], "not a directory"
    if case == "opset out of range":
        save_tiny_checkpoint(good, arch="mlp")
        return ["export", str(good), "--out", out, "--opset", "99"], "--opset"
    if case == "negative atol":
        save_tiny_checkpoint(good, arch="mlp")
        return ["export", str(good), "--out", out, "--atol", "-1"], "--atol"
    raise AssertionError(case)


BAD_INPUTS = [
    "missing path",
    "directory without checkpoint",
    "text file",
    "zip that is not a checkpoint",
    "zero-byte checkpoint",
    "truncated checkpoint",
    "non-finite weights",
    "config from a newer version",
    "output path under a file",
    "output path is a file",
    "opset out of range",
    "negative atol",
]


@pytest.mark.parametrize("case", BAD_INPUTS)
def test_bad_input_is_one_line_and_exit_2(case, tmp_path):
    args, fragment = _bad_input(tmp_path, case)
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit)  # handled, not a crash
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert fragment in lines[0]
    assert "Traceback" not in result.output
    assert not (tmp_path / "onnx").exists()


def test_unwritable_output_directory(tmp_path):
    ckpt = save_tiny_checkpoint(tmp_path / "m.pt", arch="mlp")
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        # root writes through permission bits; /proc refuses everyone
        result = CliRunner().invoke(main, ["export", str(ckpt), "--out", "/proc/self/vaectl-export"])
        assert result.exit_code == 2 and "cannot write" in result.stderr, result.stderr
        return
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        result = CliRunner().invoke(main, ["export", str(ckpt), "--out", str(locked)])
    finally:
        locked.chmod(0o700)
    assert result.exit_code == 2 and "cannot write" in result.stderr
    assert list(locked.iterdir()) == []


class _CreatesMarker:
    """Unpickling this calls os.system: a checkpoint holding it must be refused before that happens."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch '{self.marker}'",))


def test_malicious_checkpoint_is_refused_and_never_runs(tmp_path):
    """In a real process, as a user would run it: torch's zip format with the payload inside."""
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pt"
    torch.save(
        {"format": "vaectl.checkpoint", "format_version": 1, "config": {}, "model": _CreatesMarker(marker)}, evil
    )
    proc = run_vaectl("export", evil, "--out", tmp_path / "onnx", timeout=120)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "refused" in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr
    assert not marker.exists()
    assert not (tmp_path / "onnx").exists()


def test_malicious_raw_pickle_is_refused_and_never_runs(tmp_path):
    """A plain pickle file named .pt (the pre-zip torch format) is refused before any unpickling."""
    import pickle

    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pt"
    evil.write_bytes(pickle.dumps(_CreatesMarker(marker)))
    result = CliRunner().invoke(main, ["export", str(evil), "--out", str(tmp_path / "onnx")])
    assert result.exit_code == 2 and isinstance(result.exception, SystemExit)
    assert result.stderr.startswith("error: ") and len(result.stderr.strip().splitlines()) == 1
    assert not marker.exists()


# ----------------------------------------------------------------------------- guidance


@pytest.mark.parametrize("context_channels", [0, 4])
def test_guided_decoder_has_a_guidance_input_with_a_default_and_matches_pytorch(context_channels, tmp_path):
    from vaectl.infer import Decoder

    ckpt = save_tiny_checkpoint(
        tmp_path / "guided.pt",
        num_classes=3,
        class_names=CLASS_NAMES,
        label_dropout=0.2,
        guidance=2.0,
        context_channels=context_channels,
        context_kernel=5,
    )
    result = export_model(ckpt, tmp_path / "onnx", fp16=True, **QUIET)
    assert {k for k in result.max_abs_diff if k.startswith("decoder")} >= {"decoder.image", "decoder.fp16.image"}
    graph = onnx.load(str(result.decoder)).graph
    guidance = {v.name: v for v in graph.input}["guidance"]
    assert guidance.type.tensor_type.elem_type == TensorProto.FLOAT and dims(guidance) == [1]
    (default,) = [t for t in graph.initializer if t.name == "guidance"]
    assert onnx.numpy_helper.to_array(default).tolist() == [2.0]  # the model's weight, which a caller may override
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
        if w == 2.0:  # left out, the input takes its initializer's value
            np.testing.assert_array_equal(sess.run(["image"], feeds)[0], image)
    # the unconditional label (K = 3) and the fp16 variant take the same inputs
    unconditional = sess.run(["image"], {"z": feeds["z"], "label": np.full(6, 3, np.int64)})[0]
    with torch.no_grad():
        want = torch.sigmoid(model.decoder(z, torch.full_like(y, 3))).numpy()
    np.testing.assert_allclose(unconditional, want, rtol=0, atol=1e-5)
    half = session(result.variants["fp16"]).run(["image"], {**feeds, "guidance": np.array([4.5], np.float32)})[0]
    np.testing.assert_allclose(half, image, rtol=0, atol=1e-2)
    # the torch-free side sees the input and the model's default
    decoder = Decoder(result.decoder)
    np.testing.assert_array_equal(
        decoder.decode_float(feeds["z"], feeds["label"]), decoder.decode_float(feeds["z"], feeds["label"], guidance=2.0)
    )


def test_a_plain_conditional_decoder_is_unchanged_by_the_guidance_fields(tmp_path):
    """label_dropout = 0 (the default): no guidance input, the same graph as before guidance existed."""
    ckpt = save_tiny_checkpoint(tmp_path / "cond.pt", num_classes=3, class_names=CLASS_NAMES)
    result = export_model(ckpt, tmp_path / "onnx", **QUIET)
    graph = onnx.load(str(result.decoder)).graph
    assert [v.name for v in graph.input] == ["z", "label"]
    assert "guidance" not in {t.name for t in graph.initializer}
    # nor in the metadata: a vaectl that predates guidance still reads it
    assert not {"label_dropout", "guidance"} & set(json.loads(metadata(result.decoder)["vaectl.config"]))
