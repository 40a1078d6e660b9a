"""The bench/ scripts print figures and are not run by the suite; this checks they still import and parse."""

from __future__ import annotations

import json
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
        "colour.py",
        "colour_sets.py",
        "peer_vanilla_vae.py",
        "refine_steps.py",
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


def bench_module(name: str):
    sys.path.insert(0, str(BENCH))
    try:
        return __import__(name)
    finally:
        sys.path.remove(str(BENCH))


def test_colour_nearest_training_image_is_the_closest_one():
    import numpy as np

    colour = bench_module("colour")
    rng = np.random.default_rng(0)
    train = rng.random((50, 3, 4, 4), dtype=np.float32)
    test = np.concatenate([train[[7, 3]], train[[11]] + 0.01, rng.random((4, 3, 4, 4), dtype=np.float32)])
    got = colour.nearest_reconstruct(train, test)
    err = ((test[:, None] - train[None]) ** 2).reshape(len(test), len(train), -1).sum(axis=2)  # (7, 50)
    assert np.array_equal(got, train[err.argmin(axis=1)]) and np.array_equal(got[:3], train[[7, 3, 11]])
    assert colour.scores(got[:2], test[:2])["psnr"] == pytest.approx(120.0)  # exact copies: the 1e-12 floor


def test_colour_reuse_exports_a_run_it_finds_and_never_trains_it_again(tmp_path, monkeypatch):
    colour = bench_module("colour")
    calls = []
    monkeypatch.setattr(colour, "run", lambda cmd, log: calls.append(cmd[3]) or 1.0)  # "train" or "export"
    work = tmp_path / "set-default"
    (work / "run").mkdir(parents=True)
    (work / "run" / "best.pt").write_bytes(b"")
    (work / "run" / "metrics.jsonl").write_text('{"seconds": 2.0}\n{"seconds": 3.0}\n')
    args = (tmp_path / "set", work, [], [], work / "vaectl.log")
    assert colour.train_and_export(*args, reuse=True)[0] == 5.0  # its epochs' time, not a new run's
    assert calls == ["export"]  # trained, never exported: export it
    (work / "export").mkdir()
    (work / "export" / "decoder.onnx").write_bytes(b"")
    calls.clear()
    colour.train_and_export(*args, reuse=True)
    assert calls == []
    colour.train_and_export(tmp_path / "set", work, [], ["--refine-steps", "0"], work / "vaectl.log", reuse=True)
    assert calls == ["export"]
    calls.clear()
    colour.train_and_export(*args, reuse=False)
    assert calls == ["train", "export"]


def test_colour_sets_keeps_each_icon_file_once_under_its_own_name(tmp_path, monkeypatch):
    colour_sets = bench_module("colour_sets")
    for size in ("48x48", "256x256"):
        places = tmp_path / size / "places"
        places.mkdir(parents=True)
        (places / "folder-image.png").write_bytes(size.encode())
        (places / "folder-pictures.png").symlink_to("folder-image.png")  # the theme's aliases
        (places / "folder-picture.png").symlink_to("folder-pictures.png")
        (places / "user-home.png").write_bytes(b"home" + size.encode())
    (tmp_path / "48x48" / "places" / "small-only.png").write_bytes(b"x")
    (tmp_path / "22x22" / "places").mkdir(parents=True)
    (tmp_path / "22x22" / "places" / "tiny.png").write_bytes(b"x")  # drawn only below 48 px
    monkeypatch.setattr(colour_sets, "OXYGEN_DIR", tmp_path)
    got = {key: str(path.relative_to(tmp_path)) for key, path in colour_sets.oxygen_sources()}
    assert got == {
        "places_folder-image": "256x256/places/folder-image.png",
        "places_small-only": "48x48/places/small-only.png",
        "places_user-home": "256x256/places/user-home.png",
    }


def test_colour_sets_keeps_each_clip_art_drawing_once(tmp_path, monkeypatch):
    from PIL import Image

    colour_sets = bench_module("colour_sets")

    def drawing(rel: str, size: int, colour) -> Path:
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGBA", (size, size), colour).save(path)
        return path

    drawing("animals/cat.png", 64, (200, 0, 0, 255))
    (tmp_path / "animals" / "cat_copy.png").write_bytes((tmp_path / "animals" / "cat.png").read_bytes())
    drawing("people/red_big.png", 256, (200, 0, 0, 255))  # the same drawing at another size
    drawing("food/fruit/lime.png", 64, (0, 200, 0, 255))
    drawing("food/tiny.png", 40, (0, 0, 200, 255))  # under 48 px
    drawing("shapes/stars/star_5pt.png", 64, (0, 0, 200, 255))  # generated, not drawn
    (tmp_path / "food" / "lime_link.png").symlink_to("fruit/lime.png")
    monkeypatch.setattr(colour_sets, "CLIPART_DIR", tmp_path)
    got = {key: str(path.relative_to(tmp_path)) for key, path in colour_sets.clipart_sources()}
    assert got == {"animals_cat": "animals/cat.png", "food_fruit_lime": "food/fruit/lime.png"}


def test_refine_steps_scores_each_count_and_times_the_exported_encoder(tmp_path):
    from conftest import make_colour_folder, run_vaectl_in_process

    images = make_colour_folder(tmp_path / "images", n=30, size=(16, 16), classes=())
    flags = ["--epochs", "1", "--conv-channels", "2,4", "--threads", "1"]
    code, stderr = run_vaectl_in_process("train", "--data", images, "--out", tmp_path / "run", *flags)
    assert code == 0, stderr
    args = [tmp_path / "run", images, "--steps", "0,3", "--timed", "0,3", "--threads", "1"]
    result = subprocess.run(
        [sys.executable, str(BENCH / "refine_steps.py"), *map(str, args)], capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    scored, timed = report["rows"][:2], report["rows"][2:]
    assert [r["steps"] for r in scored] == [0, 3] and [r["steps"] for r in timed] == [0, 3]
    # one encoder graph, fed each count
    assert timed[1]["mb"] == timed[0]["mb"] and all(r["ms_batch"] > 0 and r["load_s"] > 0 for r in timed)
    assert scored[0]["held_out"] != scored[1]["held_out"]
