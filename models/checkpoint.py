"""Checkpoints: tensors and plain Python data only, written atomically, loaded with weights_only=True."""

from __future__ import annotations

import pickle
import re
import zipfile
from pathlib import Path

import torch

from ..errors import UserInputError
from ..files import atomic_write
from ..models import VAEConfig

FORMAT = "vaectl.checkpoint"
FORMAT_VERSION = 1


def save_checkpoint(path, state: dict) -> None:
    """Atomic: temp file, fsync, os.replace. A crash mid-save leaves the previous file intact."""
    atomic_write(path, lambda f: torch.save({"format": FORMAT, "format_version": FORMAT_VERSION, **state}, f))


def resolve_checkpoint(path, last: bool = False) -> Path:
    """A run directory (best.pt, or last.pt with last=True, falling back to the other) or a file."""
    path = Path(path)
    if not path.exists():
        raise UserInputError(f"{path}: no such file or directory")
    if path.is_dir():
        order = ("last.pt", "best.pt") if last else ("best.pt", "last.pt")
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
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        # torch's message goes on to suggest weights_only=False: exactly wrong advice here, so keep only what it found
        found = re.search(r"GLOBAL ([\w.]+)", str(e))
        what = f" (it asks to import {found.group(1)})" if found else ""
        raise UserInputError(f"{path}: refused to load checkpoint: it holds more than tensors and plain data{what}") from None
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile) as e:
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UserInputError(f"{path}: not a readable checkpoint (truncated or corrupt?): {msg}") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise UserInputError(f"{path}: not a vaectl checkpoint")
    if ckpt.get("format_version", 0) > FORMAT_VERSION:
        raise UserInputError(f"{path}: checkpoint format {ckpt['format_version']} is newer than this vaectl supports")
    ckpt["config"] = VAEConfig.from_dict(ckpt.get("config", {}))
    return ckpt


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
