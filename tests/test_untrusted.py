"""Hostile inputs: ONNX files that reference external data, decompression bombs, exotic image formats."""

from __future__ import annotations

import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from conftest import cli
from onnx_builders import SECRET_BYTES, embedded_decoder, external_data_decoder, external_data_in_subgraph
from PIL import Image

from vaectl.data.images import MAX_IMAGE_PIXELS, open_image
from vaectl.errors import UserInputError
from vaectl.infer import Decoder, check_model_bytes

ATTACKS = ("dotdot", "absolute", "symlink", "hardlink", "ort_memory_address", "subgraph")


@pytest.fixture
def secret(tmp_path) -> Path:
    """A file outside the model's directory that a hostile model tries to read."""
    outside = tmp_path / "outside"
    outside.mkdir()
    path = outside / "secret.bin"
    path.write_bytes(SECRET_BYTES)
    return path


def build_attack(kind: str, tmp_path: Path, secret: Path) -> Path:
    """tmp_path/a/b/decoder.onnx whose weights come from `secret` by way of `kind`."""
    model_dir = tmp_path / "a" / "b"
    model_dir.mkdir(parents=True)
    path = model_dir / "decoder.onnx"
    if kind == "dotdot":
        return external_data_decoder(path, "../../outside/secret.bin")
    if kind == "absolute":
        return external_data_decoder(path, str(secret))
    if kind == "symlink":
        (model_dir / "weights.bin").symlink_to(secret)
        return external_data_decoder(path, "weights.bin")
    if kind == "hardlink":
        os.link(secret, model_dir / "weights.bin")
        return external_data_decoder(path, "weights.bin")
    if kind == "ort_memory_address":  # onnxruntime's tag for "read this many bytes at this address"
        return external_data_decoder(path, "*/_ORT_MEM_ADDR_/*", offset=4096)
    if kind == "subgraph":
        return external_data_in_subgraph(path, str(secret))
    raise ValueError(kind)


@pytest.mark.parametrize("kind", ATTACKS)
def test_external_data_models_are_refused_by_every_command(kind, tmp_path, secret, mlp_graphs):
    model = build_attack(kind, tmp_path, secret)
    out = tmp_path / "out.png"
    digit = tmp_path / "digit.png"
    Image.new("L", (28, 28)).save(digit)
    commands = [
        ["generate", "--onnx", model, "-n", 2, "--seed", 0, "--out", out],
        ["generate", "--onnx", model, "-n", 2, "--out-dir", tmp_path / "dir"],
        ["traverse", "--onnx", model, "--dim", 0, "--out", out],
        ["interpolate", "--decoder", model, "--seed-a", 1, "--seed-b", 2, "--out", out],
        ["reconstruct", "--encoder", mlp_graphs / "encoder.onnx", "--decoder", model, digit, "--out", out],
        ["info", model],
    ]
    for args in commands:
        r = cli(*args)
        assert r.exit_code == 2, (args, r.stdout, r.stderr)
        assert "external data" in r.stderr and "Traceback" not in r.stderr
        assert len(r.stderr.strip().splitlines()) == 1
        assert r.stdout == ""  # info printed nothing from the file
    assert not out.exists() and not (tmp_path / "dir").exists()
    with pytest.raises(UserInputError, match="external data"):
        check_model_bytes(model.read_bytes(), "bytes")  # decided from the bytes alone


@pytest.mark.parametrize("where", ["relative", "absolute"])
def test_the_session_itself_finds_no_external_data_when_the_byte_check_is_bypassed(
    where, tmp_path, secret, monkeypatch
):
    """Second layer: create_session alone (no check_model_bytes) loads no external file, not even one beside
    the model or in the working directory."""
    from vaectl.infer.safe_load import create_session

    (tmp_path / "weights.bin").write_bytes(secret.read_bytes())
    monkeypatch.chdir(tmp_path)
    model = external_data_decoder(tmp_path / "decoder.onnx", "weights.bin" if where == "relative" else str(secret))
    with pytest.raises(UserInputError, match="onnxruntime cannot load this model"):
        create_session(model.read_bytes(), "decoder.onnx")


def test_the_attack_graph_would_leak_if_loaded(tmp_path, secret):
    """Control: the same graph with its weight embedded loads and outputs the weight bytes as pixels,
    so a refused external-data model is refused for its reference, not for a broken graph."""
    leaky = Decoder(embedded_decoder(tmp_path / "decoder.onnx", secret.read_bytes()))
    assert leaky.decode(np.zeros((1, 4))).tobytes() == SECRET_BYTES


def test_plain_onnxruntime_follows_the_hardlink(tmp_path, secret):
    """Why the check exists: onnxruntime itself loads a hardlinked external file (measured on 1.32)."""
    ort = pytest.importorskip("onnxruntime")
    model = build_attack("hardlink", tmp_path, secret)
    try:
        session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    except Exception:  # a future onnxruntime that refuses hardlinks too: nothing left to demonstrate
        pytest.skip(f"onnxruntime {ort.__version__} refuses hardlinked external data by itself")
    image = session.run(["image"], {"z": np.zeros((1, 4), np.float32)})[0]
    assert np.rint(image * 255).astype(np.uint8).tobytes() == SECRET_BYTES


def test_refusal_happens_before_onnxruntime_or_any_other_file(tmp_path, secret):
    """In a fresh interpreter: only the model file is opened, and onnxruntime is never imported."""
    model = build_attack("hardlink", tmp_path, secret)
    probe = f"""
import sys
opened = []
sys.addaudithook(lambda event, args: opened.append(str(args[0])) if event == "open" and {str(tmp_path)!r} in str(args[0]) else None)
from vaectl.errors import UserInputError
from vaectl.infer import Decoder
try:
    Decoder({str(model)!r})
except UserInputError as e:
    print("refused:", e)
print("opened:", opened)
print("onnxruntime imported:", "onnxruntime" in sys.modules)
"""
    r = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "refused:" in r.stdout and "external data" in r.stdout
    assert f"opened: [{str(model)!r}]" in r.stdout
    assert "onnxruntime imported: False" in r.stdout


# ----------------------------------------------------------------------------- images


def png_bomb(path: Path, side: int) -> Path:
    """A 1-bit all-black PNG of side x side pixels, written without ever holding the pixels."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    row = b"\0" * (1 + (side + 7) // 8)  # filter byte + packed bits
    comp = zlib.compressobj(9)
    idat = b"".join(comp.compress(row) for _ in range(side)) + comp.flush()
    ihdr = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)  # bit depth 1, grayscale
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b""))
    return path


@pytest.mark.parametrize("side", [10_000, 15_000])  # 100 MP (over the limit) and 225 MP (over twice the limit)
def test_decompression_bomb_is_refused_within_the_memory_budget(side, tmp_path):
    bomb = png_bomb(tmp_path / "bomb.png", side)
    assert bomb.stat().st_size < 40_000 and side * side > MAX_IMAGE_PIXELS
    probe = f"""
import resource
from vaectl.data.images import open_image
from vaectl.errors import UserInputError
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
try:
    open_image({str(bomb)!r})
    print("accepted")
except UserInputError as e:
    print("refused:", e)
print("peak growth KiB:", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before)
"""
    r = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert "refused:" in r.stdout and "decompression bomb" in r.stdout, r.stdout + r.stderr
    growth_kib = int(r.stdout.split("peak growth KiB:")[1])
    # the budget: refused before decoding, so < 16 MiB (decoding would take >= 100 MB)
    assert growth_kib < 16 * 1024, growth_kib


def test_decompression_bomb_through_the_cli(tmp_path, mlp_graphs):
    bomb = png_bomb(tmp_path / "bomb.png", 10_000)
    r = cli(
        "reconstruct",
        "--encoder",
        mlp_graphs / "encoder.onnx",
        "--decoder",
        mlp_graphs / "decoder.onnx",
        bomb,
        "--out",
        tmp_path / "o.png",
    )
    assert r.exit_code == 2 and "decompression bomb" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "o.png").exists()


def test_exotic_formats_are_not_decoded_even_when_named_png(tmp_path):
    eps = tmp_path / "image.png"
    eps.write_bytes(b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 28 28\nshowpage\n")
    ico = tmp_path / "icon.png"
    Image.new("L", (28, 28)).save(ico, format="ICO")
    for path in (eps, ico):
        with pytest.raises(UserInputError, match="not an image in an accepted format"):
            open_image(path)


def test_truncated_image_is_refused(tmp_path):
    path = tmp_path / "t.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64), dtype=np.uint8)).save(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 200])
    with pytest.raises(UserInputError, match="cannot decode"):
        open_image(path)
