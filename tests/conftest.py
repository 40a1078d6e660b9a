"""Shared fixtures. Tests use tiny configs so the suite runs in minutes on 2 CPU cores."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session", autouse=True)
def image_store_cache(tmp_path_factory):
    """Image stores (data/store.py) of the tests' folders go to a temporary cache, never the user's."""
    import os

    os.environ["VAECTL_CACHE"] = str(tmp_path_factory.mktemp("vaectl-cache"))


def sigint_as_in_a_terminal() -> None:
    """preexec_fn for a child the test will Ctrl-C: SIGINT back to its default action. A test run started in
    the background (`pytest &` in a script) inherits SIGINT ignored, and Python then installs no
    KeyboardInterrupt handler in the child."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)


def run_vaectl(*args, env=None, cwd=None, timeout=600) -> subprocess.CompletedProcess:
    """Run the installed CLI in a fresh interpreter, as a user would."""
    return subprocess.run(
        [sys.executable, "-m", "vaectl.cli", *map(str, args)],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=timeout,
    )


@pytest.fixture(scope="session")
def tiny_mlp_run(tmp_path_factory) -> Path:
    """A run directory from 2 quick epochs of a small MLP VAE on the embedded MNIST sample."""
    torch = pytest.importorskip("torch")  # noqa: F841  (the torch-free CI venv has no training tests)
    from vaectl.training import TrainConfig, train

    out = tmp_path_factory.mktemp("tiny_mlp_run")
    train(
        TrainConfig(out=str(out), epochs=2, batch_size=256, seed=0, grid_every=0),
        dict(arch="mlp", latent_dim=4, hidden=(64,)),
        log=lambda m: None,
    )
    return out


@pytest.fixture(scope="session")
def tiny_conv_run(tmp_path_factory) -> Path:
    """A run directory from 1 quick epoch of a small conv VAE on the embedded MNIST sample."""
    pytest.importorskip("torch")
    from vaectl.training import TrainConfig, train

    out = tmp_path_factory.mktemp("tiny_conv_run")
    train(
        TrainConfig(out=str(out), epochs=1, batch_size=256, seed=0, grid_every=0),
        dict(arch="conv", latent_dim=6, conv_channels=(8, 16), conv_hidden=32),
        log=lambda m: None,
    )
    return out


@pytest.fixture(scope="session")
def tiny_context_run(tmp_path_factory) -> Path:
    """A run directory from 3 quick epochs of a small MLP VAE with a row-autoregressive decoder."""
    pytest.importorskip("torch")
    from vaectl.training import TrainConfig, train

    out = tmp_path_factory.mktemp("tiny_context_run")
    train(
        TrainConfig(out=str(out), **TINY_CONTEXT_TRAINING),
        dict(TINY_CONTEXT_MODEL, context_channels=8),
        log=lambda m: None,
    )
    return out


# tiny_context_run's settings, for tests that train the same model without the row context
TINY_CONTEXT_TRAINING = dict(epochs=3, batch_size=64, seed=0, grid_every=0)
TINY_CONTEXT_MODEL = dict(arch="mlp", latent_dim=4, hidden=(64,))


def write_idx(path, array) -> Path:
    """Write a uint8 array as an IDX file (gzipped when the name ends in .gz), as MNIST is distributed."""
    import gzip

    import numpy as np

    array = np.ascontiguousarray(array, dtype=np.uint8)
    raw = bytes([0, 0, 0x08, array.ndim]) + b"".join(d.to_bytes(4, "big") for d in array.shape) + array.tobytes()
    path = Path(path)
    path.write_bytes(gzip.compress(raw) if path.suffix == ".gz" else raw)
    return path


def make_tiny_idx_dir(directory, n_train: int = 64, n_test: int = 32, gz: bool = True) -> Path:
    """An IDX folder holding the first images of the embedded MNIST sample: tiny epochs for fast tests."""
    from vaectl.data import SAMPLE_DIR
    from vaectl.data.idx import read_idx

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    ext = ".gz" if gz else ""
    for n, prefix in ((n_train, "train"), (n_test, "t10k")):
        write_idx(
            directory / f"{prefix}-images-idx3-ubyte{ext}", read_idx(SAMPLE_DIR / f"{prefix}-images-idx3-ubyte.gz")[:n]
        )
        write_idx(
            directory / f"{prefix}-labels-idx1-ubyte{ext}", read_idx(SAMPLE_DIR / f"{prefix}-labels-idx1-ubyte.gz")[:n]
        )
    return directory


def make_colour_folder(root, n=24, size=(12, 12), classes=("cat", "dog"), seed=0) -> Path:
    """n random colour PNGs (size: width, height), in one subfolder per class (labels), or flat with classes=()."""
    import numpy as np
    from PIL import Image

    root = Path(root)
    rng = np.random.default_rng(seed)
    for i in range(n):
        d = root / classes[i % len(classes)] if classes else root
        d.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (*size[::-1], 3), dtype=np.uint8)).save(d / f"{i:03d}.png")
    return root


@pytest.fixture
def tiny_idx_dir(tmp_path) -> Path:
    return make_tiny_idx_dir(tmp_path / "tiny-idx")


def export_run(run_dir, out_dir, fp16: bool = False) -> Path:
    """Export a run's encoder.onnx and decoder.onnx (+ decoder.fp16.onnx) into out_dir, as `vaectl export` does."""
    from vaectl.export import export_model

    export_model(run_dir, out_dir, fp16=fp16, log=lambda m: None)
    return Path(out_dir)


@pytest.fixture(scope="session")
def mlp_graphs(tiny_mlp_run, tmp_path_factory) -> Path:
    """encoder.onnx, decoder.onnx and decoder.fp16.onnx of the tiny MLP run."""
    return export_run(tiny_mlp_run, tmp_path_factory.mktemp("mlp_graphs"), fp16=True)


@pytest.fixture(scope="session")
def conv_graphs(tiny_conv_run, tmp_path_factory) -> Path:
    return export_run(tiny_conv_run, tmp_path_factory.mktemp("conv_graphs"))


@pytest.fixture(scope="session")
def context_graphs(tiny_context_run, tmp_path_factory) -> Path:
    """encoder.onnx, decoder.onnx and decoder.fp16.onnx of the tiny row-context run."""
    return export_run(tiny_context_run, tmp_path_factory.mktemp("context_graphs"), fp16=True)


def _tiny_conditional_run(tmp_path_factory, name: str, **model) -> Path:
    """A run directory from 1 quick epoch of a small conditional MLP VAE (10 digit classes) with `model`'s fields
    over the --conditional defaults."""
    pytest.importorskip("torch")
    from vaectl.training import TrainConfig, train

    out = tmp_path_factory.mktemp(name)
    train(
        TrainConfig(out=str(out), epochs=1, batch_size=256, seed=0, conditional=True, grid_every=0),
        dict(arch="mlp", latent_dim=4, hidden=(64,), **model),
        log=lambda m: None,
    )
    return out


@pytest.fixture(scope="session")
def tiny_conditional_run(tmp_path_factory) -> Path:
    """Plain conditional (guidance 1): no guidance input, as before guidance."""
    return _tiny_conditional_run(tmp_path_factory, "tiny_conditional_run", guidance=1.0)


@pytest.fixture(scope="session")
def conditional_graphs(tiny_conditional_run, tmp_path_factory) -> Path:
    return export_run(tiny_conditional_run, tmp_path_factory.mktemp("conditional_graphs"))


@pytest.fixture(scope="session")
def tiny_guided_run(tmp_path_factory) -> Path:
    """Trained with label dropout (guidance against a learned "no label" class), default weight 2."""
    return _tiny_conditional_run(tmp_path_factory, "tiny_guided_run", label_dropout=0.2, guidance=2.0)


@pytest.fixture(scope="session")
def guided_graphs(tiny_guided_run, tmp_path_factory) -> Path:
    return export_run(tiny_guided_run, tmp_path_factory.mktemp("guided_graphs"))


@pytest.fixture(scope="session")
def average_guided_graphs(tmp_path_factory) -> Path:
    """At the --conditional defaults' guidance: weight 2 against the average label, no label dropout."""
    run = _tiny_conditional_run(tmp_path_factory, "average_guided_run")
    return export_run(run, tmp_path_factory.mktemp("average_guided_graphs"))


def run_vaectl_in_process(*args) -> tuple[int, str]:
    """`vaectl ARGS` through click in this process: (exit code, stderr). Saves the seconds of a torch import;
    use run_vaectl where a fresh interpreter matters. Exceptions the CLI lets escape are re-raised."""
    from click.testing import CliRunner

    from vaectl.cli import main

    result = CliRunner().invoke(main, [str(a) for a in args])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stderr


GRID_PAD = 2  # files.make_grid's padding


def cli(*args):
    """`vaectl ARGS` through click's CliRunner in this process (exceptions propagate)."""
    from click.testing import CliRunner

    from vaectl.cli import main

    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def read_png(path):
    import numpy as np
    from PIL import Image

    return np.asarray(Image.open(path))


def grid_shape(rows: int, cols: int, side: int = 28) -> tuple[int, int]:
    return rows * (side + GRID_PAD) + GRID_PAD, cols * (side + GRID_PAD) + GRID_PAD


def cell(grid, row: int, col: int, side: int = 28):
    """The tile at (row, col) of a make_grid PNG."""
    y, x = GRID_PAD + row * (side + GRID_PAD), GRID_PAD + col * (side + GRID_PAD)
    return grid[y : y + side, x : x + side]


def grid_cells(grid, rows: int, cols: int, side: int = 28):
    """(rows * cols, side, side) cells of a make_grid PNG, row-major."""
    import numpy as np

    p = GRID_PAD
    return np.stack(
        [
            grid[p + r * (side + p) : p + r * (side + p) + side, p + c * (side + p) : p + c * (side + p) + side]
            for r in range(rows)
            for c in range(cols)
        ]
    )


def snapshot(directory: Path) -> dict[str, str]:
    """Every file under `directory` (hidden ones too) -> SHA-256 of its bytes."""
    import hashlib

    return {
        str(p.relative_to(directory)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(directory.rglob("*"))
        if p.is_file()
    }


def expect_usage_error(result, *fragments: str) -> None:
    """Exit code 2, exactly one 'error: ...' line on stderr containing each of `fragments`, no traceback."""
    assert result.exit_code == 2, (result.exit_code, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


@pytest.fixture(scope="session")
def digits(tmp_path_factory) -> list[Path]:
    """Four MNIST test digits as PNG files."""
    from PIL import Image

    from vaectl.data import load_mnist_sample

    data = load_mnist_sample()
    out = tmp_path_factory.mktemp("digits")
    paths = []
    for i in range(4):
        p = out / f"digit{i}.png"
        Image.fromarray(data.test[i, 0]).save(p)
        paths.append(p)
    return paths


@pytest.fixture(scope="session")
def dec(mlp_graphs):
    """The tiny MLP's exported decoder, loaded."""
    from vaectl.infer import Decoder

    return Decoder(mlp_graphs / "decoder.onnx")


@pytest.fixture(scope="session")
def pair(mlp_graphs):
    from vaectl.infer import VAEPair

    return VAEPair.load(mlp_graphs / "encoder.onnx", mlp_graphs / "decoder.onnx")


@pytest.fixture(scope="session")
def cdec(conditional_graphs):
    """The tiny conditional model's exported decoder, loaded."""
    from vaectl.infer import Decoder

    return Decoder(conditional_graphs / "decoder.onnx")
