"""What `vaectl doctor` looks at: installed packages, the CPU, the NVIDIA driver, torch's devices, and a tiny
hand-encoded ONNX graph for onnxruntime to run (the base install has no `onnx` package). Torch-free at import."""

from __future__ import annotations

import functools
import importlib
import importlib.metadata
import os
import platform
import re
from pathlib import Path

import numpy as np

from ..errors import UserInputError
from ..threads import choose_threads, load_average

NVIDIA_DRIVER_FILE = Path("/proc/driver/nvidia/version")


def probe_module(module: str):
    """(module, None) when it imports; (None, None) when it is not installed; (None, why) when it is broken."""
    try:
        return importlib.import_module(module), None
    except ModuleNotFoundError as e:
        if e.name and e.name.split(".")[0] == module:
            return None, None
        return None, f"{type(e).__name__}: {e}"  # installed, but something it needs is missing
    except Exception as e:  # a broken install raises anything: ImportError, OSError on a missing .so, ...
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        return None, f"{type(e).__name__}: {first[:200]}"


def package_version(dist: str, module) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return str(getattr(module, "__version__", "unknown"))


def requirement(dist: str) -> str:
    """vaectl's own requirement on `dist` ("onnxruntime>=1.24.3"), quoted for a shell; the bare name if none."""
    try:
        for req in importlib.metadata.requires("vaectl") or []:
            spec = req.split(";")[0].strip()
            if re.match(rf"{re.escape(dist)}\b", spec, re.IGNORECASE):
                return f"'{spec}'"
    except importlib.metadata.PackageNotFoundError:
        pass
    return dist


def canonical(dist: str) -> str:
    return re.sub(r"[-_.]+", "-", dist).lower()


def _parse_requirements(lines) -> dict[str, list[str]]:
    """{"base": [dist, ...], extra: [dist, ...]} from requirement strings ('torch>=2.10; extra == "train"')."""
    declared: dict[str, list[str]] = {"base": []}
    for line in lines:
        spec, _, marker = line.partition(";")
        name = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", spec)
        extra = re.search(r"extra\s*==\s*[\"']([^\"']+)[\"']", marker)
        if name:
            declared.setdefault(extra.group(1) if extra else "base", []).append(name.group(1))
    return declared


def declared_packages() -> dict[str, list[str]]:
    """The packages of the base install and of each extra, as vaectl's metadata declares them (pyproject.toml's
    dependencies and optional-dependencies); from the source tree's pyproject.toml when vaectl runs without
    being installed. {} when neither can be read."""
    try:
        return _parse_requirements(importlib.metadata.requires("vaectl") or [])
    except importlib.metadata.PackageNotFoundError:
        pass
    try:
        import tomllib  # Python 3.11+

        project = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())["project"]
    except (ImportError, OSError, KeyError, ValueError):
        return {}
    lines = list(project.get("dependencies", []))
    for extra, reqs in project.get("optional-dependencies", {}).items():
        lines += [f'{r}; extra == "{extra}"' for r in reqs]
    return _parse_requirements(lines)


@functools.cache
def _modules_by_dist() -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for module, dists in importlib.metadata.packages_distributions().items():
        for dist in dists:
            found.setdefault(canonical(dist), []).append(module)
    return found


def module_of(dist: str) -> str | None:
    """The top-level module an installed distribution provides ("pillow" -> "PIL"); None when not installed."""
    modules = _modules_by_dist().get(canonical(dist))
    if not modules:
        return None
    same = dist.replace("-", "_").lower()
    named = [m for m in modules if m.lower() == same]
    return named[0] if named else sorted(m for m in modules if not m.startswith("_"))[0]


def cuda_only_bytes(torch) -> int:
    """Bytes on disk that only a CUDA build of torch brings: the NVIDIA and CUDA wheels, triton, and torch's own
    CUDA libraries. The CPU build has none of them."""
    total = 0
    for dist in importlib.metadata.distributions():
        name = canonical(dist.metadata["Name"] or "")
        if name.startswith(("nvidia-", "cuda-")) or name == "triton":
            for f in dist.files or []:
                path = Path(str(f.locate()))
                if path.is_file():
                    total += path.stat().st_size
    lib = Path(torch.__file__).parent / "lib"
    return total + sum(p.stat().st_size for p in lib.glob("*cuda*") if p.is_file())


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def nvidia_driver() -> str | None:
    """The NVIDIA kernel driver's version when one is loaded (Linux), else None."""
    try:
        text = NVIDIA_DRIVER_FILE.read_text()
    except OSError:
        return None
    found = re.search(r"Kernel Module\s+(?:for \S+\s+)?([\d.]+)", text)
    return found.group(1) if found else text.strip().splitlines()[0][:80]


def _vaectl_threads() -> int | None:
    """The threads train and the inference commands would take now (None: VAECTL_THREADS is not a number)."""
    try:
        return choose_threads()
    except UserInputError:
        return None


def collect_devices(torch) -> dict:
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    devices = {
        "cpu": {
            "name": cpu_name(),
            "logical_cores": os.cpu_count(),
            "usable_cores": usable,
            "torch_threads": torch.get_num_threads() if torch else None,
            "load_average": load_average(),
            "vaectl_threads": _vaectl_threads(),
        },
        "nvidia_driver": nvidia_driver(),
        "cuda": [],
        "mps": None,
    }
    if torch is None:
        return devices
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            p = torch.cuda.get_device_properties(i)
            devices["cuda"].append(
                {
                    "index": i,
                    "name": p.name,
                    "memory_gib": round(p.total_memory / 2**30, 1),
                    "capability": f"{p.major}.{p.minor}",
                    "bf16": p.major >= 8,
                }
            )  # bf16 tensor cores: Ampere (8.0) and newer
    mps = getattr(torch.backends, "mps", None)
    devices["mps"] = bool(mps is not None and mps.is_available())
    return devices


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        out.append((n & 0x7F) | (0x80 if n > 0x7F else 0))
        n >>= 7
        if not n:
            return bytes(out)


def _field(number: int, value) -> bytes:
    """One protobuf field: an int as a varint, bytes/str length-delimited."""
    if isinstance(value, int):
        return _varint(number << 3) + _varint(value)
    data = value.encode() if isinstance(value, str) else value
    return _varint(number << 3 | 2) + _varint(len(data)) + data


def tiny_onnx_graph(weights: np.ndarray) -> bytes:
    """ONNX bytes of image = Sigmoid(z @ weights), z float32 [N, D]; hand-encoded (field numbers from
    onnx.proto) because the base install has no `onnx` package."""
    d, p = weights.shape

    def value_info(name, width):
        dims = _field(1, _field(2, "N")) + _field(1, _field(1, width))  # Dimension: dim_param / dim_value
        return _field(1, name) + _field(2, _field(1, _field(1, 1) + _field(2, dims)))  # TypeProto.tensor_type, FLOAT

    tensor = (
        _field(1, d)
        + _field(1, p)
        + _field(2, 1)
        + _field(8, "w")  # dims, data_type FLOAT, name
        + _field(9, weights.astype("<f4").tobytes())
    )  # raw_data, little-endian
    graph = (
        _field(1, _field(1, "z") + _field(1, "w") + _field(2, "h") + _field(4, "MatMul"))
        + _field(1, _field(1, "h") + _field(2, "image") + _field(4, "Sigmoid"))
        + _field(2, "vaectl_doctor")
        + _field(5, tensor)
        + _field(11, value_info("z", d))
        + _field(12, value_info("image", p))
    )
    return _field(1, 8) + _field(2, "vaectl-doctor") + _field(7, graph) + _field(8, _field(1, "") + _field(2, 17))
