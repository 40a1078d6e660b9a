"""`vaectl doctor`: the report on the train install, on a (simulated) base install, the smoke run, --json, and
failing checks that exit 1 with their advice line."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from conftest import cli, run_vaectl

from vaectl import doctor
from vaectl.doctor import probe

# Like tests/test_torch_free.py's prelude, but a blocked package looks as a really absent one does (no finder
# finds it: importlib.util.find_spec gives None, import raises ModuleNotFoundError naming it), or as a broken
# one (its import raises an OSError, as a missing shared library does).
PRELUDE = """
import sys, runpy
BLOCKED = {blocked!r}  # top-level module -> "missing", or the OSError message of a broken install

class Hide:
    def __init__(self, finder):
        self.finder = finder

    def __getattr__(self, attr):  # find_distributions, invalidate_caches, ...: the wrapped finder's
        return getattr(self.finder, attr)

    def find_spec(self, name, path=None, target=None):
        if BLOCKED.get(name.split(".")[0]) == "missing":
            return None
        return self.finder.find_spec(name, path, target)

class Break:
    def find_spec(self, name, path=None, target=None):
        why = BLOCKED.get(name.split(".")[0])
        if why not in (None, "missing"):
            raise OSError(why)
        return None

sys.meta_path[:] = [Break()] + [Hide(f) for f in sys.meta_path]
sys.argv = ["vaectl"] + sys.argv[1:]
try:
    runpy.run_module("vaectl.cli", run_name="__main__")
finally:
    loaded = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)
    assert not loaded, loaded
"""
# every module of every extra (pyproject.toml's optional-dependencies), hidden: what `pip install .` has
EXTRA_MODULES = ("torch", "torchvision", "onnx", "tqdm", "threadpoolctl", "tensorboard", "matplotlib", "ipykernel")
BASE_INSTALL = dict.fromkeys(
    EXTRA_MODULES + ("pytest", "ruff", "mypy", "playwright", "nbclient", "nbformat"), "missing"
)
ALL_EXTRAS = ("train", "tensorboard", "notebook", "dev")


def run_blocked(blocked: dict, *args) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", PRELUDE.format(blocked=blocked), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=300,
    )


def check_lines(stdout: str) -> dict:
    """{check or note name: (mark, detail)} from the report's `checks` and `notes` sections."""
    section = stdout.split("\nchecks\n", 1)[1].splitlines()
    rows = {}
    for line in section:
        mark = line[2:3]
        if line.startswith("  ") and mark in doctor.MARKS.values():
            name, _, detail = line[4:].partition("  ")
            rows[name.strip()] = (mark, detail.strip())
    return rows


def test_train_install_report_with_smoke_run():
    r = run_vaectl("doctor")
    assert r.returncode == 0, r.stdout + r.stderr
    rows = check_lines(r.stdout)
    for name in ("base install", "onnxruntime", "smoke cpu"):
        assert rows[name][0] == "✔", (name, r.stdout)
    assert rows["[train] extra"] == ("·", rows["[train] extra"][1]) and rows["[train] extra"][1].startswith("complete")
    assert "trained 1 epoch in" in rows["smoke cpu"][1] and "exported in" in rows["smoke cpu"][1]
    import onnxruntime
    import torch

    versions = dict(line.split(None, 1) for line in r.stdout.split("\ndevices\n")[0].splitlines()[1:])
    assert versions["onnxruntime"].startswith(f"{onnxruntime.__version__}  (providers:")
    assert versions["torch"].startswith(torch.__version__.split("+")[0])
    assert r.stdout.rstrip().endswith("checks passed: ready")
    assert "smoke run on cpu" in r.stderr  # progress goes to stderr, the report to stdout
    assert "Traceback" not in r.stderr


def test_json_report_structure_and_smoke_figures():
    result = cli("doctor", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["ok"] is True and report["extras"] == dict.fromkeys(("base", *ALL_EXTRAS), True)
    assert report["versions"]["numpy"] == np.__version__
    assert "CPUExecutionProvider" in report["onnxruntime_providers"]
    assert report["devices"]["cpu"]["usable_cores"] >= 1 and report["devices"]["mps"] in (True, False)
    checks = {c["name"]: c for c in report["checks"]}
    assert {c["status"] for c in report["checks"]} <= {"pass", "fail", "skip"}
    assert [(n["name"], n["status"]) for n in report["notes"]] == [
        *((f"[{name}] extra", "note") for name in ALL_EXTRAS),
        ("torch build", "note"),
    ]
    smoke = checks["smoke cpu"]
    assert smoke["status"] == "pass" and smoke["seconds"] > 0 and smoke["advice"] == ""
    # the figures in the detail are the smoke run's own comparisons: ONNX vs PyTorch, both tiny
    diffs = [float(v) for v in re.findall(r"(?:PyTorch|on cpu) (\d\.\de[-+]\d+)", smoke["detail"])]
    assert len(diffs) == 2 and max(diffs) < 1e-3, smoke["detail"]


def test_no_smoke_runs_no_training(monkeypatch):
    monkeypatch.setenv("VAECTL_THREADS", "3")
    result = cli("doctor", "--no-smoke")
    assert re.search(r"\n  threads +train and inference take 3 now \(VAECTL_THREADS=3; load average \d", result.stdout)
    assert result.exit_code == 0, result.output
    rows = check_lines(result.stdout)
    assert "smoke cpu" not in rows and rows["[train] extra"][1].startswith("complete: torch")
    assert rows["demo model"] == ("✔", "16 images generated from decoder.onnx")  # torch-free and quick: kept


def test_the_extras_checked_are_pyprojects_lists():
    """doctor reads the extras from vaectl's metadata: the same packages pyproject.toml lists, none missed."""
    tomllib = pytest.importorskip("tomllib")
    project = tomllib.loads((Path(doctor.__file__).parents[1] / "pyproject.toml").read_text())["project"]
    name = lambda req: re.match(r"[A-Za-z0-9._-]+", req).group(0)  # noqa: E731
    expected = {"base": [name(r) for r in project["dependencies"]]}
    expected |= {extra: [name(r) for r in reqs] for extra, reqs in project["optional-dependencies"].items()}
    assert probe.declared_packages() == expected
    assert probe._parse_requirements(['ruff<0.18,>=0.17; extra == "dev"', "numpy>=1.24"]) == {
        "base": ["numpy"],
        "dev": ["ruff"],
    }
    assert probe.module_of("pillow") == "PIL" and probe.module_of("no-such-dist-here") is None


def test_torch_build_note_says_what_the_cpu_build_saves():
    torch = pytest.importorskip("torch")
    no_gpu = {"cuda": [], "nvidia_driver": None}
    fake_cpu = SimpleNamespace(__version__="2.14.1+cpu", version=SimpleNamespace(cuda=None, hip=None))
    note = doctor.check_torch_build(fake_cpu, no_gpu)
    assert (note.status, note.detail, note.advice) == ("note", "CPU build (2.14.1+cpu): trains on the CPU", "")
    if torch.version.cuda is None or torch.cuda.is_available():
        pytest.skip("needs a CUDA build of torch on a machine without a GPU")
    note = doctor.check_torch_build(torch, no_gpu)
    gb = float(re.search(r"take (\d+\.\d) GB", note.detail).group(1))
    nvidia = Path(torch.__file__).parents[1] / "nvidia"  # the NVIDIA wheels' files, measured on their own
    on_disk = sum(p.stat().st_size for p in nvidia.rglob("*") if p.is_file()) / 1e9 if nvidia.is_dir() else 0
    assert note.detail.startswith(f"CUDA {torch.version.cuda} build ({torch.__version__}) on a machine with no GPU")
    assert gb >= on_disk - 0.05 and gb > 0.3, (gb, on_disk)
    assert f"{gb:.1f} GB less" in note.advice and "--index-url https://download.pytorch.org/whl/cpu" in note.advice


def test_base_install_is_inference_only_not_an_error():
    r = run_blocked(BASE_INSTALL, "doctor")
    assert r.returncode == 0, r.stdout + r.stderr  # the prelude also asserts torch/onnx were never imported
    rows = check_lines(r.stdout)
    assert rows["base install"][0] == "✔" and rows["onnxruntime"][0] == "✔"
    assert rows["[train] extra"] == ("·", "not installed (train and export need it)")
    assert "→ pip install 'vaectl[train]'" in r.stdout
    assert not any(name.startswith("smoke") for name in rows) and "CUDA" not in rows
    assert re.search(r"\n  torch +not installed\n", r.stdout) and re.search(
        r"\n  mps +not checked \(no torch\)", r.stdout
    )
    assert "torch build" not in rows
    assert r.stdout.rstrip().endswith(
        "checks passed: ready for inference (the [train] extra is not installed: no training or export here)"
    )

    r = run_blocked(BASE_INSTALL, "doctor", "--json")
    report = json.loads(r.stdout)
    assert r.returncode == 0 and report["ok"] is True
    assert report["versions"]["torch"] is None and report["torch_build"] is None
    assert report["extras"] == {"base": True, **dict.fromkeys(ALL_EXTRAS, False)}


def test_partly_installed_extras_are_notes_not_failures():
    """An inference-only machine that happens to have playwright (the [dev] extra in part) or torch without
    onnx (the [train] extra in part): ready for inference, exit 0; the notes say what is missing."""
    base_and_playwright = {k: v for k, v in BASE_INSTALL.items() if k != "playwright"}
    r = run_blocked(base_and_playwright, "doctor")
    assert r.returncode == 0, r.stdout + r.stderr
    rows = check_lines(r.stdout)
    assert rows["[dev] extra"] == (
        "·",
        "partly installed (needed only to develop vaectl): pytest, ruff, mypy, tensorboard, nbclient, nbformat, "
        "matplotlib, ipykernel missing",
    )
    assert "✗" not in r.stdout and "ready for inference" in r.stdout

    r = run_blocked({"onnx": "missing"}, "doctor")
    assert r.returncode == 0, r.stdout + r.stderr
    rows = check_lines(r.stdout)
    assert rows["[train] extra"] == ("·", "partly installed (train and export need it): onnx missing")
    advice = r.stdout.split("onnx missing\n", 1)[1].splitlines()[0]
    assert advice.strip() == "→ pip install 'vaectl[train]'"
    assert not any(name.startswith("smoke") for name in rows)  # what the [train] extra promises needs all of it
    assert "(the [train] extra is partly installed: no training or export here)" in r.stdout


def test_missing_onnxruntime_fails_the_base_install_with_its_pip_line():
    r = run_blocked({**BASE_INSTALL, "onnxruntime": "missing"}, "doctor")
    assert r.returncode == 1, r.stdout + r.stderr
    rows = check_lines(r.stdout)
    assert rows["base install"] == ("✗", "cannot import onnxruntime (not installed)")
    assert "→ pip install --force-reinstall 'onnxruntime>=1.24.3'" in r.stdout  # vaectl's own requirement
    assert "onnxruntime" not in rows and "Traceback" not in r.stderr


def test_broken_torch_is_a_note_with_reinstall_advice():
    r = run_blocked(
        {"torch": "libcudnn.so.9: cannot open shared object file", "torchvision": "missing"}, "doctor", "--json"
    )
    assert r.returncode == 0, r.stderr  # inference works; the note says training does not
    train = {n["name"]: n for n in json.loads(r.stdout)["notes"]}["[train] extra"]
    assert train["status"] == "note" and "torch (OSError: libcudnn.so.9" in train["detail"]
    assert "reinstall torch for this machine" in train["advice"]


def test_failing_smoke_run_exits_1_with_a_reproduce_line(monkeypatch):
    import vaectl.export
    from vaectl.errors import VerificationError

    def broken_export(*args, **kwargs):
        raise VerificationError("decoder.image: max abs diff 0.5 > 0.0001")

    monkeypatch.setattr(vaectl.export, "export_model", broken_export)
    result = cli("doctor")
    assert result.exit_code == 1
    rows = check_lines(result.stdout)
    assert rows["smoke cpu"] == ("✗", "VerificationError: decoder.image: max abs diff 0.5 > 0.0001")
    assert "→ reproduce: vaectl train --device cpu --epochs 1 --out runs/check && vaectl export" in result.stdout
    assert "checks passed: ready" not in result.stdout


def test_gpu_driver_that_torch_cannot_use_fails(tmp_path, monkeypatch):
    driver = tmp_path / "version"
    driver.write_text(
        "NVRM version: NVIDIA UNIX x86_64 Kernel Module  550.54.14  Thu Feb 22 01:44:30 UTC 2024\n"
        "GCC version:  gcc version 12.2.0 (Debian 12.2.0-14)\n"
    )
    monkeypatch.setattr(probe, "NVIDIA_DRIVER_FILE", driver)
    assert probe.nvidia_driver() == "550.54.14"
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a usable GPU; the simulated failure needs one that torch cannot see")
    result = cli("doctor", "--no-smoke")
    assert result.exit_code == 1
    assert check_lines(result.stdout)["CUDA"][0] == "✗"
    if torch.version.cuda is None:
        assert "→ install a CUDA build of torch that your driver supports" in result.stdout
    else:
        assert "→ `nvidia-smi` shows the newest CUDA your driver supports" in result.stdout


def test_cuda_check_cases():
    assert doctor.check_cuda(None, "13.0", 0).status == doctor.SKIP
    assert doctor.check_cuda(None, None, 0).status == doctor.SKIP
    cpu_build = doctor.check_cuda("550.54.14", None, 0)
    assert (
        cpu_build.status == doctor.FAIL
        and "CPU-only build" in cpu_build.detail
        and "CUDA build of torch" in cpu_build.advice
    )
    old_driver = doctor.check_cuda("470.1", "13.0", 0)
    assert old_driver.status == doctor.FAIL and "nvidia-smi" in old_driver.advice
    assert doctor.check_cuda("550.54.14", "13.0", 2).status == doctor.PASS


def test_tiny_graph_is_valid_onnx_and_computes_sigmoid_of_matmul():
    onnx = pytest.importorskip("onnx")
    from onnx.reference import ReferenceEvaluator

    weights = np.arange(12, dtype=np.float32).reshape(3, 4) / 10 - 0.5
    model = onnx.load_from_string(probe.tiny_onnx_graph(weights))
    onnx.checker.check_model(model, full_check=True)
    z = np.array([[1.0, -2.0, 0.5]], dtype=np.float32)
    (got,) = ReferenceEvaluator(model).run(None, {"z": z})
    np.testing.assert_allclose(got, 1 / (1 + np.exp(-(z @ weights))), rtol=1e-6)
