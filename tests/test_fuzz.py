"""Byte-level fuzzing of the three untrusted file kinds: a real decoder.onnx, a real PNG, a real checkpoint.

Seeded mutants (bit flips, truncation, splices, zeroed runs, random runs, huge length fields at the format's
own length fields) go through the CLI. Each must end in exit 0, or exit 2 with exactly one `error:` line:
never a traceback, another exit code, a crash or a hang. Most run in this process through click (a per-run
alarm catches a hang in Python code); a few run in a fresh interpreter to catch a hard crash or a hang in C.
"""

from __future__ import annotations

import random
import shutil
import signal
import struct
from pathlib import Path

import pytest

pytest.importorskip("torch")

from conftest import run_vaectl, run_vaectl_in_process  # noqa: E402

SEED = 16
PER_RUN_SECONDS = 30
KINDS = ("bit flips", "truncation", "splice", "zeroed run", "random run", "huge length")


# ----------------------------------------------------------------------------- where each format keeps lengths


# Each finder returns (offset, bytes now there, a huge value to put in their place).


def png_length_fields(data: bytes) -> list[tuple[int, int, bytes]]:
    """Each chunk's 4-byte big-endian length field."""
    found, pos = [], 8
    while pos + 8 <= len(data):
        length = struct.unpack(">I", data[pos : pos + 4])[0]
        found += [(pos, 4, b"\x7f\xff\xff\xff"), (pos, 4, b"\xff\xff\xff\xff")]
        pos += 12 + length
    return found


def zip_length_fields(data: bytes) -> list[tuple[int, int, bytes]]:
    """The size and name-length fields (little-endian) of every zip header: local, central, end of directory."""
    found = []
    for magic, fields in ((b"PK\x03\x04", (18, 22, 26)), (b"PK\x01\x02", (20, 24, 28)), (b"PK\x05\x06", (12, 16))):
        pos = data.find(magic)
        while pos != -1:
            found += [(pos + f, 2, b"\xff\xff") if f in (26, 28) else (pos + f, 4, b"\xff\xff\xff\xff") for f in fields]
            pos = data.find(magic, pos + 4)
    return found


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(data) or shift > 63:
            raise ValueError("bad varint")
        b = data[pos]
        value |= (b & 0x7F) << shift
        pos, shift = pos + 1, shift + 7
        if b < 0x80:
            return value, pos


def protobuf_length_fields(
    data: bytes, start: int = 0, end: int | None = None, depth: int = 0
) -> list[tuple[int, int, bytes]]:
    """The length varint of every length-delimited field, nested messages included; replaced by 2^32 - 1."""
    end, found, pos = len(data) if end is None else end, [], start
    try:
        while pos < end:
            key, pos = _varint(data, pos)
            wire = key & 7
            if wire == 0:
                _, pos = _varint(data, pos)
            elif wire == 1:
                pos += 8
            elif wire == 5:
                pos += 4
            elif wire == 2:
                length_at = pos
                length, pos = _varint(data, pos)
                found.append((length_at, pos - length_at, b"\xff\xff\xff\xff\x0f"))
                if depth < 4 and length > 2:
                    found += protobuf_length_fields(data, pos, min(pos + length, end), depth + 1)
                pos += length
            else:
                return found
    except ValueError:
        pass
    return found


# ----------------------------------------------------------------------------- mutants


def mutate(data: bytes, kind: str, rng: random.Random, length_fields) -> bytes:
    b = bytearray(data)
    n = len(b)
    if kind == "bit flips":
        for _ in range(rng.randint(1, 8)):
            b[rng.randrange(n)] ^= 1 << rng.randrange(8)
    elif kind == "truncation":
        del b[rng.randrange(n) :]
    elif kind == "splice":  # a run of the file copied over (or into) another place
        a = rng.randrange(n)
        chunk = bytes(b[a : a + rng.randint(1, 512)])
        at = rng.randrange(n)
        b[at : at + (len(chunk) if rng.random() < 0.5 else 0)] = chunk
    elif kind == "zeroed run":
        a = rng.randrange(n)
        run = min(rng.randint(1, 4096), n - a)
        b[a : a + run] = bytes(run)
    elif kind == "random run":
        a = rng.randrange(n)
        run = min(rng.randint(1, 64), n - a)
        b[a : a + run] = rng.randbytes(run)
    elif kind == "huge length":
        at, old_size, value = rng.choice(length_fields)
        b[at : at + old_size] = value
    return bytes(b)


def mutants(path: Path, count: int, length_fields) -> list[tuple[str, bytes]]:
    """`count` seeded mutants of the file, cycling through the kinds: [(description, bytes)]."""
    data = path.read_bytes()
    found = []
    for i in range(count):
        kind = KINDS[i % len(KINDS)]
        rng = random.Random(f"{SEED}-{path.name}-{i}")
        found.append((f"{path.name} mutant {i} ({kind})", mutate(data, kind, rng, length_fields)))
    return found


# ----------------------------------------------------------------------------- running them


class Hang(Exception):
    pass


def _alarm(signum, frame):
    raise Hang(f"still running after {PER_RUN_SECONDS} s")


def check_in_process(problems: list, what: str, *args) -> int:
    old = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(PER_RUN_SECONDS)
    try:
        code, stderr = run_vaectl_in_process(*args)
    except Exception as e:  # the CLI let an exception escape: a traceback for the user
        problems.append(f"{what}: {args[0]} raised {type(e).__name__}: {e}")
        return -1
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
    judge(problems, what, args[0], code, stderr)
    return code


def judge(problems: list, what: str, command, code: int, stderr: str) -> None:
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    if "Traceback" in stderr:
        problems.append(f"{what}: {command} printed a traceback")
    elif code == 0 and errors:
        problems.append(f"{what}: {command} exited 0 with {errors}")
    elif code == 2 and len(errors) != 1:
        problems.append(f"{what}: {command} exited 2 with {len(errors)} error lines: {stderr!r}")
    elif code not in (0, 2):
        problems.append(f"{what}: {command} exited {code}: {stderr.strip()[-300:]!r}")


@pytest.fixture(scope="module")
def real_png(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("png") / "digit.png"
    assert run_vaectl_in_process("data-images", "-n", 1, "--out", path)[0] == 0
    return path


def test_onnx_mutants(mlp_graphs, tmp_path):
    decoder = mlp_graphs / "decoder.onnx"
    problems, outcomes = [], []
    for what, data in mutants(decoder, 150, protobuf_length_fields(decoder.read_bytes())):
        m = tmp_path / "decoder.onnx"
        m.write_bytes(data)
        outcomes.append(check_in_process(problems, what, "info", m))
        outcomes.append(
            check_in_process(problems, what, "generate", "--onnx", m, "-n", 2, "--seed", 0, "--out", tmp_path / "g.png")
        )
    assert not problems, "\n".join(problems)
    assert outcomes.count(2) > 50 and outcomes.count(0) > 10  # the mutants reach both outcomes


def test_png_mutants(mlp_graphs, real_png, tmp_path):
    problems, outcomes = [], []
    for what, data in mutants(real_png, 120, png_length_fields(real_png.read_bytes())):
        m = tmp_path / "input.png"
        m.write_bytes(data)
        outcomes.append(
            check_in_process(
                problems,
                what,
                "reconstruct",
                "--encoder",
                mlp_graphs / "encoder.onnx",
                "--decoder",
                mlp_graphs / "decoder.onnx",
                m,
                "--out",
                tmp_path / "r.png",
            )
        )
    assert not problems, "\n".join(problems)
    assert outcomes.count(2) > 30 and outcomes.count(0) > 0


def same_contents(a, b) -> bool:
    import torch

    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(same_contents(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(same_contents(x, y) for x, y in zip(a, b))
    return a == b or (a != a and b != b)  # NaN equals NaN here


def test_checkpoint_mutants(tiny_mlp_run, tmp_path):
    """Most mutants land in tensor bytes, which torch.load reads silently: each must be refused, unless what
    loads is exactly what was saved (a mutant of bytes torch never reads)."""
    import torch

    source = tiny_mlp_run / "best.pt"
    original = torch.load(source, weights_only=True)
    problems, outcomes = [], []
    for i, (what, data) in enumerate(mutants(source, 120, zip_length_fields(source.read_bytes()))):
        m = tmp_path / "m.pt"
        m.write_bytes(data)
        code = check_in_process(problems, what, "eval", m, "-n", 8, "--k", 2)
        if code == 0 and not same_contents(torch.load(m, weights_only=True), original):
            problems.append(f"{what}: loaded with changed contents, no error")
        outcomes.append(code)
        if i % 4 == 0:
            out = tmp_path / "onnx"
            outcomes.append(check_in_process(problems, what, "export", m, "--out", out))
            shutil.rmtree(out, ignore_errors=True)
    assert not problems, "\n".join(problems)
    assert outcomes.count(2) > 60


def test_a_few_mutants_in_a_fresh_interpreter(mlp_graphs, real_png, tiny_mlp_run, tmp_path):
    """A segfault or a hang inside onnxruntime, Pillow or torch would take down or stall the process: caught here."""
    decoder, checkpoint = mlp_graphs / "decoder.onnx", tiny_mlp_run / "best.pt"
    cases = [
        (
            what,
            data,
            "decoder.onnx",
            lambda m: ["generate", "--onnx", m, "-n", 2, "--seed", 0, "--out", tmp_path / "g.png"],
        )
        for what, data in mutants(decoder, 150, protobuf_length_fields(decoder.read_bytes()))[::30]
    ]
    cases += [
        (
            what,
            data,
            "input.png",
            lambda m: [
                "reconstruct",
                "--encoder",
                mlp_graphs / "encoder.onnx",
                "--decoder",
                decoder,
                m,
                "--out",
                tmp_path / "r.png",
            ],
        )
        for what, data in mutants(real_png, 120, png_length_fields(real_png.read_bytes()))[::40]
    ]
    cases += [
        (what, data, "m.pt", lambda m: ["eval", m, "-n", 8, "--k", 2])
        for what, data in mutants(checkpoint, 120, zip_length_fields(checkpoint.read_bytes()))[::60]
    ]
    problems = []
    for what, data, name, args in cases:
        m = tmp_path / name
        m.write_bytes(data)
        r = run_vaectl(*args(m), timeout=120)  # raises TimeoutExpired on a hang
        if r.returncode < 0:
            problems.append(f"{what}: killed by signal {-r.returncode}")
        judge(problems, what, args(m)[0], r.returncode, r.stderr)
    assert len(cases) >= 10 and not problems, "\n".join(problems)
