"""Shared by tests/test_export.py and tests/test_export_publish.py: tiny checkpoints, references, feeds."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")


from vaectl import __version__  # noqa: E402
from vaectl.models import VAEConfig  # noqa: E402
from vaectl.models.checkpoint import save_state  # noqa: E402
from vaectl.models.vae import VAE  # noqa: E402

TINY = dict(latent_dim=3, hidden=(16,), conv_channels=(4, 8), conv_hidden=16)
CLASS_NAMES = ("cat", "dog", "eel")
RESNET_COLOUR = dict(arch="resnet", channels=3, conv_channels=(2, 4), likelihood="gaussian-learned")
BUILT = {  # name -> config overrides for checkpoints built here (the trained runs come from conftest)
    "conv-3ch-32": dict(arch="conv", channels=3, height=32, width=32),
    "mlp-3ch-64-latent1": dict(arch="mlp", channels=3, height=64, width=64, latent_dim=1),
    "conv-1ch-64": dict(arch="conv", channels=1, height=64, width=64, conv_channels=(4, 8, 8)),
    "resnet-3ch-16": dict(RESNET_COLOUR, height=16, width=16, log_sigma=(-2.0, -1.5, -1.0)),
    "resnet-1ch-20x12": dict(arch="resnet", channels=1, height=20, width=12, conv_channels=(2, 4)),
    "resnet-3ch-20x12-refined": dict(RESNET_COLOUR, height=20, width=12, refine_steps=3),
}
QUIET = dict(log=lambda message: None)


def save_tiny_checkpoint(path, seed: int = 0, edit=None, **overrides) -> Path:
    """A checkpoint as training writes one (format, config, model), holding an untrained tiny VAE."""
    config = VAEConfig(**{**TINY, **overrides})
    torch.manual_seed(seed)
    state = VAE(config).state_dict()
    if edit is not None:
        edit(state)
    save_state(path, {"vaectl_version": __version__, "config": config.to_dict(), "model": state})
    return Path(path)


def load_torch_model(path):
    from vaectl.models.checkpoint import Checkpoint

    return Checkpoint.load(path).model()


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
            steps = feeds.get("refine_steps", [None])[0]
            mu, logvar = model.encode(tensors[0], *tensors[1:2] if model.config.conditional else (), refine_steps=steps)
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
    if config.refine_steps and role == "encoder":
        feeds["refine_steps"] = np.array([config.refine_steps], np.int64)
    return feeds
