"""The ONNX metadata contract between export (torch side) and infer (torch-free side).

Every exported graph carries these string key/value pairs in `metadata_props`, so a decoder.onnx
alone says what it is: role, latent size, image shape, likelihood, classes, provenance.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from . import __version__
from .errors import UserInputError
from .models.config import VAEConfig

FORMAT_VERSION = 1
ROLES = ("encoder", "decoder")


@dataclass(frozen=True)
class GraphInfo:
    """What infer needs to know about one exported graph."""

    role: str
    config: VAEConfig
    checkpoint_sha256: str
    variant: str  # "fp32", "fp16" or "int8"
    vaectl_version: str
    format_version: int

    @property
    def latent_dim(self) -> int:
        return self.config.latent_dim

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return self.config.image_shape

    @property
    def num_classes(self) -> int:
        return self.config.num_classes

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.config.class_names


def build_metadata(config: VAEConfig, role: str, checkpoint_sha256: str, variant: str = "fp32") -> dict[str, str]:
    if role not in ROLES:
        raise ValueError(f"role must be one of {ROLES}")
    return {
        "vaectl.format_version": str(FORMAT_VERSION),
        "vaectl.role": role,
        "vaectl.variant": variant,
        "vaectl.latent_dim": str(config.latent_dim),
        "vaectl.channels": str(config.channels),
        "vaectl.height": str(config.height),
        "vaectl.width": str(config.width),
        "vaectl.likelihood": config.likelihood,
        "vaectl.arch": config.arch,
        "vaectl.dataset": config.dataset,
        "vaectl.num_classes": str(config.num_classes),
        "vaectl.class_names": json.dumps(list(config.class_names)),
        "vaectl.version": __version__,
        "vaectl.checkpoint_sha256": checkpoint_sha256,
        "vaectl.config": json.dumps(config.to_dict(), sort_keys=True),
    }


def parse_metadata(props: dict[str, str], source: str = "model") -> GraphInfo:
    """Metadata dict (e.g. onnxruntime's `custom_metadata_map`) -> GraphInfo, or UserInputError."""
    if "vaectl.role" not in props or "vaectl.config" not in props:
        raise UserInputError(f"{source}: not a vaectl export (no vaectl metadata); export it with `vaectl export`")
    try:
        version = int(props.get("vaectl.format_version", "0"))
    except ValueError:
        raise UserInputError(f"{source}: malformed vaectl.format_version") from None
    if version > FORMAT_VERSION:
        raise UserInputError(f"{source}: export format {version} is newer than this vaectl supports ({FORMAT_VERSION})")
    role = props["vaectl.role"]
    if role not in ROLES:
        raise UserInputError(f"{source}: unknown role {role!r}")
    try:
        config = VAEConfig.from_dict(json.loads(props["vaectl.config"]))
    except json.JSONDecodeError:
        raise UserInputError(f"{source}: malformed vaectl.config metadata") from None
    return GraphInfo(
        role=role,
        config=config,
        checkpoint_sha256=props.get("vaectl.checkpoint_sha256", ""),
        variant=props.get("vaectl.variant", "fp32"),
        vaectl_version=props.get("vaectl.version", ""),
        format_version=version,
    )
