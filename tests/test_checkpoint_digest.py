"""Every checkpoint carries a digest of its contents, checked on every load (resume, export, eval)."""

from __future__ import annotations

import hashlib
import json
import random
import zipfile
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from conftest import cli, expect_usage_error  # noqa: E402

from vaectl.errors import CorruptCheckpointError  # noqa: E402
from vaectl.models.checkpoint import DIGEST_KEY, payload_digest, read_state, save_state  # noqa: E402

CORRUPT = "checkpoint is corrupt"


def tensor_entries(path: Path) -> list[zipfile.ZipInfo]:
    """The zip entries holding tensor bytes (archive/data/N), stored uncompressed by torch.save."""
    with zipfile.ZipFile(path) as z:
        entries = [i for i in z.infolist() if "/data/" in i.filename and i.file_size > 0]
    assert entries and all(i.compress_type == zipfile.ZIP_STORED for i in entries)
    return entries


def data_offset(raw: bytes, info: zipfile.ZipInfo) -> int:
    """Where an entry's bytes start: after its local header (30 bytes, the name, the extra field)."""
    h = info.header_offset
    name_len, extra_len = int.from_bytes(raw[h + 26 : h + 28], "little"), int.from_bytes(raw[h + 28 : h + 30], "little")
    return h + 30 + name_len + extra_len


def flip_bit_in_entry(src: Path, dst: Path, info: zipfile.ZipInfo, rng: random.Random) -> None:
    raw = bytearray(src.read_bytes())
    raw[data_offset(raw, info) + rng.randrange(info.file_size)] ^= 1 << rng.randrange(8)
    dst.write_bytes(raw)


def test_saved_checkpoints_carry_a_digest_of_what_loads(tiny_mlp_run):
    raw = torch.load(tiny_mlp_run / "last.pt", weights_only=True)
    assert raw[DIGEST_KEY] == payload_digest(raw) and len(raw[DIGEST_KEY]) == 64
    read_state(tiny_mlp_run / "last.pt")  # verifies, no exception


def test_a_flipped_bit_in_any_tensor_is_caught(tiny_mlp_run, tmp_path):
    """One flipped bit in each tensor's bytes in turn (weights, optimizer moments, the RNG state): torch.load
    reads every one of them without complaint; the digest refuses every one."""
    src = tiny_mlp_run / "last.pt"
    rng = random.Random(0)
    entries = tensor_entries(src)
    assert len(entries) >= 10  # model weights + Adam's two moments per weight + steps + RNG state
    for info in entries:
        bad = tmp_path / "bad.pt"
        flip_bit_in_entry(src, bad, info, rng)
        torch.load(bad, weights_only=True)  # the silent load the digest exists for
        with pytest.raises(CorruptCheckpointError, match=CORRUPT):
            read_state(bad)


def test_the_digest_changes_with_every_kind_of_value(tiny_mlp_run):
    base = torch.load(tiny_mlp_run / "last.pt", weights_only=True)
    digest = payload_digest(base)
    edits = {
        "a weight's last bit": lambda c: c["model"].__setitem__(
            next(iter(c["model"])), _flip_last_bit(next(iter(c["model"].values())))
        ),
        "a float": lambda c: c.__setitem__("best_val", c["best_val"] + 1e-12),
        "an int": lambda c: c.__setitem__("epoch", c["epoch"] + 1),
        "a string": lambda c: c["config"].__setitem__("arch", "conv"),
        "a list becoming a tuple": lambda c: c["config"].__setitem__("hidden", tuple(c["config"]["hidden"])),
        "a dtype": lambda c: c["model"].__setitem__(next(iter(c["model"])), next(iter(c["model"].values())).double()),
        "a shape": lambda c: c["model"].__setitem__(
            next(iter(c["model"])), next(iter(c["model"].values())).reshape(-1)
        ),
        "a key": lambda c: c.__setitem__("extra", None),
    }
    for name, edit in edits.items():
        changed = torch.load(tiny_mlp_run / "last.pt", weights_only=True)
        edit(changed)
        assert payload_digest(changed) != digest, name
    assert payload_digest(dict(reversed(list(base.items())))) == digest  # key order does not matter


def _flip_last_bit(t):
    t = t.clone()
    t.view(-1).view(torch.int32)[-1] ^= 1
    return t


@pytest.mark.parametrize("command", ["export", "eval", "resume"])
def test_corrupt_checkpoint_gets_one_line_and_exit_2_before_any_work(tiny_mlp_run, tmp_path, command):
    run = tmp_path / "run"
    run.mkdir()
    for name in ("last.pt", "best.pt", "config.json", "metrics.jsonl"):
        (run / name).write_bytes((tiny_mlp_run / name).read_bytes())
    target = run / ("last.pt" if command == "resume" else "best.pt")
    flip_bit_in_entry(target, target, tensor_entries(target)[0], random.Random(1))
    before = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in run.iterdir()}
    args = {
        "export": ["export", run, "--out", tmp_path / "onnx"],
        "eval": ["eval", run, "-n", 8, "--k", 2],
        "resume": ["train", "--resume", run, "--epochs", 3],
    }[command]
    r = cli(*args)
    expect_usage_error(r, CORRUPT)
    assert str(target) in r.stderr
    assert not (tmp_path / "onnx").exists()
    assert {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in run.iterdir()} == before  # nothing written


def test_a_checkpoint_written_before_the_digest_loads_with_a_note(tiny_mlp_run, tmp_path):
    legacy = torch.load(tiny_mlp_run / "best.pt", weights_only=True)
    del legacy[DIGEST_KEY]
    torch.save(legacy, tmp_path / "old.pt")
    r = cli("eval", tmp_path / "old.pt", "-n", 8, "--k", 2, "--json")
    assert r.exit_code == 0, r.stderr
    notes = [line for line in r.stderr.splitlines() if line.strip() and not line.startswith("warning: only 8 images")]
    assert len(notes) == 1 and notes[0].startswith("note: ") and "no content digest" in notes[0], r.stderr
    assert json.loads(r.stdout)["n"] == 8


def test_saving_again_round_trips_the_digest(tiny_mlp_run, tmp_path):
    ckpt = torch.load(tiny_mlp_run / "last.pt", weights_only=True)
    save_state(tmp_path / "again.pt", {k: v for k, v in ckpt.items() if k not in ("format", "format_version")})
    again = torch.load(tmp_path / "again.pt", weights_only=True)
    assert again[DIGEST_KEY] == ckpt[DIGEST_KEY]  # the digest depends on the contents alone
