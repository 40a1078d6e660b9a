"""Shared fixtures. Tests use tiny configs so the suite runs in minutes on 2 CPU cores."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def run_vaectl(*args, env=None, cwd=None, timeout=600) -> subprocess.CompletedProcess:
    """Run the installed CLI in a fresh interpreter, as a user would."""
    return subprocess.run([sys.executable, "-m", "vaectl.cli", *map(str, args)], capture_output=True, text=True,
                          env=env, cwd=cwd, timeout=timeout)


@pytest.fixture(scope="session")
def tiny_mlp_run(tmp_path_factory) -> Path:
    """A run directory from 2 quick epochs of a small MLP VAE on the embedded MNIST sample."""
    torch = pytest.importorskip("torch")  # noqa: F841  (the torch-free CI venv has no training tests)
    from vaectl.training import TrainConfig, train

    out = tmp_path_factory.mktemp("tiny_mlp_run")
    train(TrainConfig(out=str(out), epochs=2, batch_size=256, seed=0, grid_every=0),
          dict(arch="mlp", latent_dim=4, hidden=(64,)), log=lambda m: None)
    return out


@pytest.fixture(scope="session")
def tiny_conv_run(tmp_path_factory) -> Path:
    """A run directory from 1 quick epoch of a small conv VAE on the embedded MNIST sample."""
    pytest.importorskip("torch")
    from vaectl.training import TrainConfig, train

    out = tmp_path_factory.mktemp("tiny_conv_run")
    train(TrainConfig(out=str(out), epochs=1, batch_size=256, seed=0, grid_every=0),
          dict(arch="conv", latent_dim=6, conv_channels=(8, 16), conv_hidden=32), log=lambda m: None)
    return out
