"""vaectl export: fp16/int8 variants, opset and --last, publishing only verified graphs, and bad input."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from click.testing import CliRunner  # noqa: E402
from conftest import run_vaectl  # noqa: E402
from export_helpers import (  # noqa: E402
    CLASS_NAMES,
    QUIET,
    TINY,
    dims,
    load_torch_model,
    metadata,
    random_feeds,
    save_tiny_checkpoint,
    session,
)
from onnx import TensorProto  # noqa: E402

from vaectl.cli import main  # noqa: E402
from vaectl.contract import parse_metadata  # noqa: E402
from vaectl.errors import VerificationError  # noqa: E402
from vaectl.export import export_model  # noqa: E402
from vaectl.files import file_sha256
from vaectl.models import VAEConfig  # noqa: E402
from vaectl.models.checkpoint import save_state  # noqa: E402
from vaectl.models.vae import VAE  # noqa: E402

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
        return ["export", str(tmp_path / "cut.pt"), "--out", out], "checkpoint is truncated"
    if case == "non-finite weights":

        def poison(state):
            state["decoder.body.0.weight"][0, 0] = float("nan")

        save_tiny_checkpoint(tmp_path / "nan.pt", arch="mlp", edit=poison)
        return ["export", str(tmp_path / "nan.pt"), "--out", out], "NaN or inf"
    if case == "config from a newer version":
        config = VAEConfig(**TINY, arch="mlp")
        save_state(
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
