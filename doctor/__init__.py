"""`vaectl doctor`: what this machine can do with vaectl (versions, devices, a smoke run per device).

Torch-free at import, like the rest of the base install: torch, torchvision and onnx are imported
inside the functions that need them, and only when they are installed (the smoke run itself, which
needs torch, is doctor/smoke.py). Checks are what the install promises: the base install, onnxruntime, the
demo model, and where the [train] extra is complete, what it promises (torch sees the GPU, the smoke runs).
The optional extras (every package of every extra, as pyproject.toml lists them: read back from vaectl's
installed metadata) and the torch build are notes, never a failed check: on an inference-only machine a partly
installed [train] or [dev] extra (a playwright some other project brought) is not an error.

    from vaectl.doctor import run_doctor, format_report
    report = run_doctor(smoke=True)
    print(format_report(report)); exit(0 if report.ok else 1)
"""

from __future__ import annotations

import os
import platform
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from .. import __version__, layout
from ..threads import ENV as THREADS_ENV
from .probe import (
    collect_devices,
    cuda_only_bytes,
    declared_packages,
    module_of,
    package_version,
    probe_module,
    requirement,
    tiny_onnx_graph,
)

PASS, FAIL, SKIP, NOTE = "pass", "fail", "skip", "note"
MARKS = {PASS: "✔", FAIL: "✗", SKIP: "–", NOTE: "·"}
TORCH_INSTALL_HELP = "https://pytorch.org/get-started/locally/"
TORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"  # PyTorch's own index of CPU-only wheels
DEMO_IMAGES = 16


@dataclass
class Check:
    name: str
    status: str  # PASS, FAIL, SKIP (does not apply here) or NOTE (an optional extra); only FAIL fails the report
    detail: str
    advice: str = ""  # one line, for a failed check or a note with something to do
    seconds: float | None = None


@dataclass
class Report:
    versions: dict = field(default_factory=dict)  # name -> version string, None when not installed
    python_executable: str = ""
    onnxruntime_providers: list = field(default_factory=list)
    torch_build: dict | None = None  # {"version": "2.14.1+cu130", "cuda": "13.0" | None, "cudnn": int | None}
    extras: dict = field(default_factory=dict)  # base and each extra -> installed (every package imports)
    devices: dict = field(default_factory=dict)
    checks: list = field(default_factory=list)
    notes: list = field(default_factory=list)  # Check(status=NOTE): each optional extra, the torch build

    @property
    def ok(self) -> bool:
        return all(c.status != FAIL for c in self.checks)

    def to_dict(self) -> dict:
        return {"ok": self.ok, "vaectl": __version__, **asdict(self)}


# ----------------------------------------------------------------------------- checks


def check_onnxruntime() -> Check:
    """onnxruntime runs a small decoder-shaped graph through vaectl's session setup and matches numpy."""
    from ..infer.safe_load import check_model_bytes, create_session

    t0 = time.perf_counter()
    weights = np.linspace(-1, 1, 4 * 16, dtype=np.float32).reshape(4, 16)
    z = np.random.default_rng(0).standard_normal((3, 4)).astype(np.float32)
    try:
        data = tiny_onnx_graph(weights)
        check_model_bytes(data, "tiny graph")
        (got,) = create_session(data, "tiny graph").run(["image"], {"z": z})
    except Exception as e:  # any failure of the runtime is this check's finding, not a crash of the report
        return Check(
            "onnxruntime",
            FAIL,
            f"cannot run a tiny graph: {str(e).splitlines()[0][:200]}",
            f"reinstall it: pip install --force-reinstall {requirement('onnxruntime')}",
        )
    diff = float(np.abs(got - 1 / (1 + np.exp(-(z.astype(np.float64) @ weights)))).max())
    ok = diff < 1e-5
    return Check(
        "onnxruntime",
        PASS if ok else FAIL,
        f"a tiny graph runs on the CPU provider (max diff vs numpy {diff:.1e})",
        "" if ok else f"onnxruntime computes wrong results: pip install --force-reinstall {requirement('onnxruntime')}",
        round(time.perf_counter() - t0, 2),
    )


def check_demo() -> Check:
    """Generate from the demo model shipped in the package, when this vaectl has one."""
    try:
        from ..demo import demo_dir
    except ImportError:
        return Check("demo model", SKIP, "this vaectl ships no demo model")
    from ..infer import Decoder

    t0 = time.perf_counter()
    try:
        graphs = sorted(Path(demo_dir()).glob("decoder*.onnx"), key=lambda p: p.name != layout.DECODER)
        decoder = graphs[0] if graphs else None
        if decoder is None:
            return Check("demo model", SKIP, f"no decoder graph in {demo_dir()}")
        dec = Decoder(decoder)
        labels = np.arange(DEMO_IMAGES) % dec.num_classes if dec.conditional else None  # every class in turn
        images = dec.decode(dec.latents(DEMO_IMAGES, seed=0), labels)
    except Exception as e:
        return Check(
            "demo model",
            FAIL,
            f"generating from the demo model failed: {str(e).splitlines()[0][:200]}",
            "reinstall vaectl: pip install --force-reinstall vaectl",
        )
    return Check(
        "demo model",
        PASS,
        f"{len(images)} images generated from {decoder.name}",
        seconds=round(time.perf_counter() - t0, 2),
    )


EXTRA_USE = {
    "train": "train and export need it",
    "tensorboard": "train --tensorboard needs it",
    "notebook": "the tutorial notebooks need it",
    "dev": "needed only to develop vaectl",
}


def check_extra(name: str, mods: list[str], found: dict, problems: dict) -> Check:
    """A note on an optional extra: complete, not installed, partly installed or broken (never a failed check)."""
    broken = [f"{d} ({problems[d]})" for d in mods if problems.get(d)]
    missing = [d for d in mods if found.get(d) is None and not problems.get(d)]
    label, use = f"[{name}] extra", EXTRA_USE.get(name, "optional")
    if broken:
        advice = f"reinstall: pip install --force-reinstall 'vaectl[{name}]'"
        if problems.get("torch") and name == "train":  # a torch wheel that does not fit the machine
            advice = f"reinstall torch for this machine ({TORCH_INSTALL_HELP}), then pip install 'vaectl[train]'"
        return Check(label, NOTE, f"installed but broken ({use}): {'; '.join(broken)}", advice)
    if len(missing) == len(mods):
        return Check(label, NOTE, f"not installed ({use})", f"pip install 'vaectl[{name}]'")
    if missing:
        return Check(
            label, NOTE, f"partly installed ({use}): {', '.join(missing)} missing", f"pip install 'vaectl[{name}]'"
        )
    return Check(label, NOTE, "complete: " + ", ".join(f"{d} {found[d]}" for d in mods))


def check_cuda(driver: str | None, torch_cuda_build: str | None, cuda_devices: int) -> Check:
    """Does torch see the NVIDIA GPU this machine has? Applies only where a driver is loaded or torch sees one."""
    if cuda_devices:
        return Check(
            "CUDA",
            PASS,
            f"torch (CUDA {torch_cuda_build} build) sees {cuda_devices} device(s)"
            + (f"; driver {driver}" if driver else ""),
        )
    if driver is None:
        return Check("CUDA", SKIP, "no NVIDIA GPU driver loaded: training runs on the CPU")
    if torch_cuda_build is None:
        return Check(
            "CUDA",
            FAIL,
            f"NVIDIA driver {driver} is loaded, but this torch is a CPU-only build",
            f"install a CUDA build of torch that your driver supports ({TORCH_INSTALL_HELP})",
        )
    return Check(
        "CUDA",
        FAIL,
        f"NVIDIA driver {driver} is loaded, but torch (CUDA {torch_cuda_build} build) sees no device",
        f"`nvidia-smi` shows the newest CUDA your driver supports: install the torch build for it "
        f"({TORCH_INSTALL_HELP}) or update the driver",
    )


def check_torch_build(torch, devices: dict) -> Check:
    """Which torch this is (a CUDA, ROCm or CPU build) and whether it has a GPU to use here; on a machine with
    no GPU and no GPU driver, what the CPU build would save."""
    version, cuda, hip = torch.__version__, torch.version.cuda, getattr(torch.version, "hip", None)
    if cuda is None and hip is None:
        return Check("torch build", NOTE, f"CPU build ({version}): trains on the CPU")
    build = f"CUDA {cuda}" if cuda else f"ROCm {hip}"
    if devices["cuda"]:
        return Check("torch build", NOTE, f"{build} build ({version}): trains on {devices['cuda'][0]['name']}")
    if devices["nvidia_driver"]:  # a GPU torch cannot use: the CUDA check says why
        return Check("torch build", NOTE, f"{build} build ({version}): sees no GPU, trains on the CPU")
    gb = cuda_only_bytes(torch) / 1e9
    return Check(
        "torch build",
        NOTE,
        f"{build} build ({version}) on a machine with no GPU: trains on the CPU; its GPU libraries take {gb:.1f} GB",
        f"the CPU build trains the same here in {gb:.1f} GB less; in a new venv: pip install torch torchvision "
        f"--index-url {TORCH_CPU_INDEX}, then pip install 'vaectl[train]' (uninstalling torch leaves its GPU "
        "libraries behind)",
    )


# ----------------------------------------------------------------------------- the report


def run_doctor(smoke: bool = True, progress=None) -> Report:
    """Versions, devices and checks; smoke runs on every available device unless smoke=False.
    `progress(message)` is told when a slow step starts."""
    say = progress or (lambda message: None)
    report = Report()
    report.versions["python"] = platform.python_version()
    report.python_executable = sys.executable
    report.versions["vaectl"] = __version__
    declared = declared_packages()  # pyproject's lists, read from vaectl's metadata
    base = declared.get("base", [])
    extras = {name: dists for name, dists in declared.items() if name != "base"}
    modules, problems = {}, {}
    for dist in dict.fromkeys(base + [d for dists in extras.values() for d in dists]):  # each once, in order
        module = module_of(dist)  # None: not installed
        modules[dist], problems[dist] = probe_module(module) if module else (None, None)
        report.versions[dist] = package_version(dist, modules[dist]) if modules[dist] is not None else None
    found = report.versions
    ort, torch = modules.get("onnxruntime"), modules.get("torch")
    if ort is not None:
        report.onnxruntime_providers = list(ort.get_available_providers())
    if torch is not None:
        cudnn = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
        report.torch_build = {"version": torch.__version__, "cuda": torch.version.cuda, "cudnn": cudnn}
    report.extras = {
        "base": bool(base) and all(found[d] for d in base),
        **{name: all(found[d] for d in dists) for name, dists in extras.items()},
    }
    report.devices = collect_devices(torch)

    base_broken = [d for d in base if found[d] is None]
    if not base:
        report.checks.append(
            Check(
                "base install",
                FAIL,
                "vaectl's requirements cannot be read: it runs from a source tree without being installed",
                "pip install -e . in that tree",
            )
        )
    elif base_broken:
        why = ", ".join(f"{d} ({problems[d] or 'not installed'})" for d in base_broken)
        report.checks.append(
            Check(
                "base install",
                FAIL,
                f"cannot import {why}",
                f"pip install --force-reinstall {' '.join(map(requirement, base_broken))}",
            )
        )
    else:
        report.checks.append(Check("base install", PASS, ", ".join(f"{d} {found[d]}" for d in base)))
    if ort is not None:
        report.checks.append(check_onnxruntime())
        report.checks.append(check_demo())  # torch-free and quick: --no-smoke keeps it
    report.notes = [check_extra(name, dists, found, problems) for name, dists in extras.items()]
    if torch is not None:
        report.notes.append(check_torch_build(torch, report.devices))
    if not report.extras.get("train"):  # what only the [train] extra promises is not checked without it
        return report
    report.checks.append(check_cuda(report.devices["nvidia_driver"], torch.version.cuda, len(report.devices["cuda"])))
    if not smoke:
        return report
    targets = [("cpu", False)]
    if report.devices["cuda"]:
        targets.append(("cuda:0", report.devices["cuda"][0]["bf16"]))
    if report.devices["mps"]:
        targets.append(("mps", False))
    from .smoke import smoke_run

    with tempfile.TemporaryDirectory(prefix="vaectl-doctor-") as tmp:
        for device, amp in targets:
            say(f"smoke run on {device}: train 1 epoch, export, generate ...")
            report.checks.append(smoke_run(device, amp, Path(tmp)))
    return report


def format_report(report: Report) -> str:
    v, dev = report.versions, report.devices
    w = max(13, *(len(name) + 2 for name in v))  # the column of the values
    lines = ["versions"]
    for name, version in v.items():
        extra = ""
        if name == "onnxruntime" and report.onnxruntime_providers:
            extra = f"  (providers: {', '.join(report.onnxruntime_providers)})"
        if name == "torch" and report.torch_build:
            build = report.torch_build
            extra = f"  ({'CUDA ' + build['cuda'] if build['cuda'] else 'CPU-only'} build" + (
                f", cuDNN {build['cudnn']})" if build["cudnn"] else ")"
            )
        if name == "python":
            extra = f"  ({report.python_executable})"
        lines.append(f"  {name:<{w}}{version or 'not installed'}{extra}")
    lines.append(f"  {'extras':<{w}}" + "  ".join(f"[{k}] {'✔' if on else '–'}" for k, on in report.extras.items()))
    cpu = dev["cpu"]
    lines += [
        "devices",
        f"  {'cpu':<{w}}{cpu['name']}: {cpu['usable_cores']} usable of {cpu['logical_cores']} logical cores"
        + (f", torch's default {cpu['torch_threads']} threads" if cpu["torch_threads"] else ""),
        f"  {'threads':<{w}}train and inference take {cpu['vaectl_threads'] or '?'} now ("
        + (f"{THREADS_ENV}={os.environ[THREADS_ENV]}" if os.environ.get(THREADS_ENV, "").strip() else "the free cores")
        + (f"; load average {cpu['load_average']:.1f}" if cpu["load_average"] is not None else "")
        + ")",
    ]
    for c in dev["cuda"]:
        lines.append(
            f"  {'cuda:' + str(c['index']):<{w}}{c['name']}, {c['memory_gib']} GiB, compute capability "
            f"{c['capability']}, bf16 {'yes' if c['bf16'] else 'no'}"
        )
    if not dev["cuda"]:
        lines.append(
            f"  {'cuda':<{w}}"
            + ("none visible to torch" if report.torch_build else "not checked (no torch)")
            + (f"; NVIDIA driver {dev['nvidia_driver']}" if dev["nvidia_driver"] else "")
        )
    lines.append(
        f"  {'mps':<{w}}" + {None: "not checked (no torch)", True: "available", False: "not available"}[dev["mps"]]
    )
    width = max(len(c.name) for c in report.checks + report.notes)
    for title, rows in (("checks", report.checks), ("notes (never a failed check)", report.notes)):
        lines.append(title)
        for c in rows:
            lines.append(f"  {MARKS[c.status]} {c.name:<{width}}  {c.detail}")
            if c.advice:
                lines.append(f"    {'':<{width}}→ {c.advice}")
    failed = sum(c.status == FAIL for c in report.checks)
    applied = sum(c.status != SKIP for c in report.checks)
    mode = ""
    if not report.extras.get("train"):
        train = next((n.detail.split(" (")[0] for n in report.notes if n.name == "[train] extra"), "not installed")
        mode = f" for inference (the [train] extra is {train}: no training or export here)"
    lines.append(f"{applied - failed} of {applied} checks passed" + ("" if failed else ": ready") + mode)
    return "\n".join(lines)
