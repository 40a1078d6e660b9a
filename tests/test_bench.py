"""The bench/ scripts print figures and are not run by the suite; this checks they still import and parse."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"


@pytest.mark.parametrize(
    "script",
    [
        "train_speed.py",
        "compile_speed.py",
        "infer_speed.py",
        "quality.py",
        "conditional.py",
        "gpu_speed.py",
        "explore_speed.py",
        "sample_quality.py",
        "threads.py",
        "image_store.py",
        "conv_layout.py",
    ],
)
def test_bench_script_imports_and_shows_help(script):
    # --help runs every top-level import (vaectl internals the scripts reach into) before argparse exits
    result = subprocess.run(
        [sys.executable, str(BENCH / script), "--help"], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage:")


def test_conv_layout_times_both_layouts_of_the_picked_model():
    flags = ["--sizes", "8", "--batch", "4", "--steps", "1", "--repeats", "1", "--threads", "1"]
    result = subprocess.run(
        [sys.executable, str(BENCH / "conv_layout.py"), *flags],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "1 thread(s), batches of 4" in result.stdout.splitlines()[0]
    row = result.stdout.strip().splitlines()[-1].split()  # size, widths, two rates, their ratio
    assert row[:2] == ["8", "128"] and float(row[2]) > 0 and float(row[3]) > 0
    assert float(row[4]) == pytest.approx(float(row[3]) / float(row[2]), abs=0.01)


def test_gpu_speed_dry_run_on_cpu(tmp_path):
    """bench/gpu_speed.py's measuring code end to end on the CPU (the real run needs CUDA): it trains through
    vaectl's loop, compares --amp with fp32, and exports in a child process that sees no GPU."""
    pytest.importorskip("torch")
    args = [
        "--device",
        "cpu",
        "--images",
        "512",
        "--epochs",
        "2",
        "--archs",
        "mlp",
        "--modes",
        "fp32,amp",
        "--only",
        "speed,amp,export,ddp,syncs",
        "--keep",
        str(tmp_path),
    ]
    r = subprocess.run(
        [sys.executable, str(BENCH / "gpu_speed.py"), *args], capture_output=True, text=True, timeout=300
    )
    assert r.returncode == 0, r.stderr
    rows = {
        line.split("  ")[0]: line.split()
        for line in r.stdout.splitlines()
        if line.startswith(("mlp fp32 ", "mlp amp "))
    }
    assert set(rows) == {"mlp fp32", "mlp amp"}, r.stdout
    amp_row = next(line.split() for line in r.stdout.splitlines() if line.startswith("mlp    "))  # the amp table
    assert float(amp_row[3]) == pytest.approx(float(amp_row[2]) - float(amp_row[1]), abs=0.011)
    for row in rows.values():
        assert float(row[-2].replace(",", "")) > 0  # img/s
    assert "mlp: exit 0" in r.stdout and "decoder.image       max abs diff vs PyTorch" in r.stdout
    assert "ddp: skipped: 1 process(es)" in r.stdout
    assert "syncs: skipped: CUDA counts" in r.stdout
    assert len((tmp_path / "mlp-amp" / "metrics.jsonl").read_text().splitlines()) == 2


def test_gpu_speed_skips_without_cuda():
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("CUDA is available here: the script would run the whole GPU benchmark")
    r = subprocess.run([sys.executable, str(BENCH / "gpu_speed.py")], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("gpu_speed: skipped: no CUDA device here")


def test_sample_quality_end_to_end_on_tiny_settings(tmp_path):
    """bench/sample_quality.py's measuring code on the embedded sample: trains a tiny VAE and a one-epoch judge,
    exports (fitting the prior) and prints FD / precision / recall for both priors, the reconstructions and
    real images, and the IWAE bound under each prior."""
    pytest.importorskip("torch")
    args = [
        "--datasets",
        "mnist-sample",
        "--recipe",
        "tiny=--hidden 32 --latent-dim 2 --epochs 1",
        "--samples",
        "300",
        "--eval-n",
        "20",
        "--eval-k",
        "4",
        "--judge-epochs",
        "1",
        "--judge-cache",
        str(tmp_path / "judges"),
        "--keep",
        str(tmp_path / "runs"),
    ]
    r = subprocess.run(
        [sys.executable, str(BENCH / "sample_quality.py"), *args], capture_output=True, text=True, timeout=600
    )
    assert r.returncode == 0, r.stderr
    rows = {
        line.split("|")[1].strip(): [float(v.replace(",", "")) for v in line.split("|")[2:6]]
        for line in r.stdout.splitlines()
        if line.startswith("| ") and not line.startswith(("| images", "| ---"))
    }
    assert set(rows) == {
        "samples, gmm (default)",
        "samples, normal",
        "reconstructions of test images",
        "real training images",
    }, r.stdout
    for n, fd, precision, recall in rows.values():
        assert n == 300 and fd >= 0 and 0 <= precision <= 1 and 0 <= recall <= 1
    assert rows["real training images"][1] < rows["samples, normal"][1]  # real images are closest to real images
    assert "IWAE NLL (k=4, first 20 test images) under gmm" in r.stdout
    assert (tmp_path / "judges" / "judge-mnist-sample-A.pt").is_file()  # cached for the next run
