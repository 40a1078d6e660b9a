"""Checkpoints: tensors and plain Python data only, written atomically, loaded with weights_only=True,
and checked against a digest of their contents stored inside them.

torch.load does not check the zip's CRCs, so flipped bits in a tensor's bytes would load silently; every
checkpoint therefore carries `payload_sha256`, a SHA-256 over a canonical encoding of everything else in it
(sorted keys; each tensor's dtype, shape and bytes; plain values exactly), recomputed on every load from
what was actually loaded. Checkpoints written before the digest existed load with a note.
"""

from __future__ import annotations

import hashlib
import io
import math
import pickle
import re
import struct
import sys
import zipfile
from pathlib import Path

import torch

from .. import layout
from ..errors import CorruptCheckpointError, UserInputError
from ..files import atomic_write
from ..models import VAEConfig

FORMAT = "vaectl.checkpoint"
FORMAT_VERSION = 1  # payload_sha256 is an addition older readers ignore, so the format keeps its number
DIGEST_KEY = "payload_sha256"


def _feed(h, value) -> None:
    """Feed one value to the hash, tagged by type and length-prefixed, so that different payloads never
    encode to the same bytes."""
    if isinstance(value, torch.Tensor):
        t = value.detach().cpu().contiguous()
        h.update(b"T" + str(t.dtype).encode() + b"|" + ",".join(map(str, t.shape)).encode() + b"|")
        data = t.reshape(-1).view(torch.uint8).numpy() if t.numel() else b""
        h.update(struct.pack("<Q", len(data)))
        h.update(data)
    elif isinstance(value, dict):
        items = sorted(value.items(), key=lambda kv: (type(kv[0]).__name__, repr(kv[0])))
        h.update(b"D" + struct.pack("<Q", len(items)))
        for k, v in items:
            _feed(h, k)
            _feed(h, v)
    elif isinstance(value, (list, tuple)):
        h.update((b"L" if isinstance(value, list) else b"U") + struct.pack("<Q", len(value)))
        for v in value:
            _feed(h, v)
    elif isinstance(value, str):
        data = value.encode("utf-8", "surrogatepass")
        h.update(b"S" + struct.pack("<Q", len(data)) + data)
    elif value is None or isinstance(value, bool):  # before int: bool is an int
        h.update(b"N" if value is None else (b"1" if value else b"0"))
    elif isinstance(value, int):
        data = str(value).encode()
        h.update(b"I" + struct.pack("<Q", len(data)) + data)
    elif isinstance(value, float):
        h.update(b"F" + (value.hex() if math.isfinite(value) else repr(value)).encode() + b"|")
    elif isinstance(value, (torch.dtype, torch.device, torch.Size)):
        h.update(b"O" + type(value).__name__.encode() + b"|" + str(value).encode() + b"|")
    else:
        raise TypeError(f"a checkpoint cannot hold a {type(value).__name__}")


def payload_digest(payload: dict) -> str:
    """SHA-256 of the canonical encoding of a checkpoint's contents, without its own digest."""
    h = hashlib.sha256()
    _feed(h, {k: v for k, v in payload.items() if k != DIGEST_KEY})
    return h.hexdigest()


def save_checkpoint(path, state: dict) -> None:
    """Atomic: temp file, fsync, os.replace. A crash mid-save leaves the previous file intact.

    Serialized in memory first, so a full disk surfaces as the writer's OSError (files.py maps it), never
    as an error inside torch's zip writer."""
    payload = {"format": FORMAT, "format_version": FORMAT_VERSION, **state}
    payload[DIGEST_KEY] = payload_digest(payload)
    buf = io.BytesIO()
    torch.save(payload, buf)
    atomic_write(path, lambda f: f.write(buf.getbuffer()))


def resolve_checkpoint(path, last: bool = False) -> Path:
    """A run directory (best.pt, or last.pt with last=True, falling back to the other) or a file."""
    path = Path(path)
    if not path.exists():
        raise UserInputError(f"{path}: no such file or directory")
    if path.is_dir():
        order = (layout.checkpoint_name(last), layout.checkpoint_name(not last))
        for name in order:
            if (path / name).is_file():
                return path / name
        raise UserInputError(f"{path}: no checkpoint (best.pt or last.pt) in this directory")
    return path


def load_checkpoint(path, map_location="cpu") -> dict:
    """Load and check a vaectl checkpoint. Never falls back to weights_only=False."""
    path = Path(path)
    if not path.is_file():
        raise UserInputError(f"{path}: no such checkpoint file")
    if path.stat().st_size == 0:
        raise UserInputError(f"{path}: checkpoint file is empty (0 bytes)")
    # save_checkpoint always writes torch's zip format. Anything else (text, images, raw pickles) is
    # refused before unpickling: torch's weights-only unpickler raises KeyError/IndexError on junk.
    try:
        with open(path, "rb") as f:
            magic = f.read(4)
    except OSError as e:
        raise UserInputError(f"{path}: cannot read checkpoint ({e.strerror or e})") from None
    if magic != b"PK\x03\x04":
        raise UserInputError(f"{path}: not a vaectl checkpoint (not a PyTorch zip archive)")
    if not zipfile.is_zipfile(path):  # a zip archive whose directory, written last, is missing: cut short
        raise UserInputError(
            f"{path}: checkpoint is truncated ({path.stat().st_size:,} bytes, its end is missing: a copy or a save "
            "was cut short); use a complete copy or an earlier checkpoint"
        )
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        # torch's message goes on to suggest weights_only=False: exactly wrong advice here, so keep only what it found
        found = re.search(r"GLOBAL ([\w.]+)", str(e))
        what = f" (it asks to import {found.group(1)})" if found else ""
        raise UserInputError(
            f"{path}: refused to load checkpoint: it holds more than tensors and plain data{what}"
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile) as e:
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UserInputError(f"{path}: not a readable checkpoint (truncated or corrupt?): {msg}") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise UserInputError(f"{path}: not a vaectl checkpoint")
    if not isinstance(ckpt.get("format_version", 0), int):
        raise UserInputError(f"{path}: not a vaectl checkpoint (format_version {ckpt['format_version']!r})")
    if ckpt.get("format_version", 0) > FORMAT_VERSION:
        raise UserInputError(f"{path}: checkpoint format {ckpt['format_version']} is newer than this vaectl supports")
    check_digest(path, ckpt)
    ckpt["config"] = VAEConfig.from_dict(ckpt.get("config", {}))
    return ckpt


def check_digest(path: Path, ckpt: dict) -> None:
    """Raise CorruptCheckpointError unless the stored digest matches what was loaded (no digest: a note)."""
    stored = ckpt.pop(DIGEST_KEY, None)
    if stored is None:
        print(
            f"note: {path} has no content digest (written by an earlier vaectl), so it cannot be checked "
            "for corruption",
            file=sys.stderr,
        )
        return
    try:
        actual = payload_digest(ckpt)
    except TypeError as e:
        raise CorruptCheckpointError(f"{path}: checkpoint is corrupt ({e})") from None
    if stored != actual:
        raise CorruptCheckpointError(
            f"{path}: checkpoint is corrupt: its contents do not match the digest stored "
            "in it (damaged on disk or in transfer); use another copy or an earlier checkpoint"
        )


def load_model(path, map_location="cpu", last: bool = False):
    """(VAE in eval mode, checkpoint dict) from a run directory or checkpoint file."""
    from ..models.vae import VAE

    ckpt_path = resolve_checkpoint(path, last=last)
    ckpt = load_checkpoint(ckpt_path, map_location)
    model = VAE(ckpt["config"])
    try:
        model.load_state_dict(ckpt["model"])
    except (RuntimeError, KeyError, TypeError) as e:
        raise UserInputError(f"{ckpt_path}: weights do not match the stored config: {str(e).splitlines()[0]}") from None
    for name, t in ckpt["model"].items():
        if torch.is_floating_point(t) and not torch.isfinite(t).all():
            raise UserInputError(f"{ckpt_path}: weight {name} contains NaN or inf")
    ckpt["path"] = str(ckpt_path)
    return model.eval(), ckpt
