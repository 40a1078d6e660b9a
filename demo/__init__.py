"""The demo model shipped with vaectl: a small conditional VAE with a 2-D latent, trained on the embedded
mnist-sample, so `pip install vaectl` (no torch) has something to look at.

    from vaectl.demo import demo_dir
    from vaectl.infer import Decoder
    Decoder(demo_dir() / "decoder.onnx").sample(16, seed=0, label=7)
`vaectl generate --demo` (and traverse/interpolate/reconstruct/encode --demo) use it; `vaectl explore` opens it
when given no model. manifest.json holds the recipe (the exact `vaectl train`/`export` arguments), the seed,
the vaectl version, the fitted prior's components (the decoder carries the prior export fitted, so --demo and the
explorer sample from it by default) and each file's sha256; tools/make_demo.py re-creates the files from it.
"""

from __future__ import annotations

import json
from pathlib import Path

from .. import layout
from ..errors import VaectlError
from ..files import file_sha256

DEMO_DIR = Path(__file__).parent
MANIFEST = "manifest.json"
FILES = {"encoder": layout.ENCODER, "decoder": layout.DECODER}  # an export directory's float32 names


def manifest() -> dict:
    """manifest.json as a dict."""
    try:
        return json.loads((DEMO_DIR / MANIFEST).read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise VaectlError(f"the demo model's {MANIFEST} is missing or damaged ({e}); reinstall vaectl") from None


def verify() -> None:
    """Check each shipped file against the manifest's sha256; a damaged install says so."""
    for name, digest in manifest()["sha256"].items():
        path = DEMO_DIR / name
        if not path.is_file() or file_sha256(path) != digest:
            raise VaectlError(f"the demo model's {name} is missing or fails its checksum; reinstall vaectl")


def demo_dir(verify_files: bool = True) -> Path:
    """The folder holding the demo's encoder.onnx, decoder.onnx and manifest.json (checked unless told not to)."""
    if verify_files:
        verify()
    return DEMO_DIR


def demo_path(role: str) -> Path:
    """The demo's encoder.onnx or decoder.onnx, checked."""
    if role not in FILES:
        raise ValueError(f"role must be one of {sorted(FILES)}, got {role!r}")
    return demo_dir() / FILES[role]
