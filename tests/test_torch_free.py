"""Every inference command runs in an interpreter where importing torch, torchvision or onnx fails."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

BLOCKED = ("torch", "torchvision", "onnx")

# Runs before vaectl is imported: any import of a blocked package (or its submodules) raises.
PRELUDE = f"""
import sys, runpy
BLOCKED = {BLOCKED!r}

class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError("blocked import of " + name + " in a torch-free run")
        return None

sys.meta_path.insert(0, Block())
sys.argv = ["vaectl"] + sys.argv[1:]
try:
    runpy.run_module("vaectl.cli", run_name="__main__")
finally:
    loaded = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)
    assert not loaded, loaded
"""


def run_torch_free(*args, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", PRELUDE, *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=300
    )


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, mlp_graphs, conditional_graphs):
    d = tmp_path_factory.mktemp("torch_free")
    for i, shade in enumerate((40, 200)):
        Image.new("L", (28, 28), shade).save(d / f"img{i}.png")
    return d, mlp_graphs, conditional_graphs


COMMANDS = {
    "generate-grid": lambda d, g, c: [
        "generate",
        "--onnx",
        g / "decoder.onnx",
        "-n",
        16,
        "--seed",
        0,
        "--out",
        d / "g.png",
    ],
    "generate-dir": lambda d, g, c: [
        "generate",
        "--onnx",
        g / "decoder.onnx",
        "-n",
        5,
        "--seed",
        0,
        "--out-dir",
        d / "dir",
    ],
    "generate-fp16": lambda d, g, c: ["generate", "--onnx", g / "decoder.fp16.onnx", "-n", 4, "--out", d / "h.png"],
    "generate-label": lambda d, g, c: [
        "generate",
        "--onnx",
        c / "decoder.onnx",
        "--label",
        "all",
        "--same-z",
        "-n",
        3,
        "--out",
        d / "l.png",
    ],
    "reconstruct": lambda d, g, c: [
        "reconstruct",
        "--encoder",
        g / "encoder.onnx",
        "--decoder",
        g / "decoder.onnx",
        d / "img0.png",
        d / "img1.png",
        "--out",
        d / "r.png",
    ],
    "interpolate-images": lambda d, g, c: [
        "interpolate",
        "--encoder",
        g / "encoder.onnx",
        "--decoder",
        g / "decoder.onnx",
        d / "img0.png",
        d / "img1.png",
        "--steps",
        5,
        "--out",
        d / "i.png",
    ],
    "interpolate-seeds": lambda d, g, c: [
        "interpolate",
        "--decoder",
        g / "decoder.onnx",
        "--seed-a",
        1,
        "--seed-b",
        2,
        "--out",
        d / "s.png",
    ],
    "traverse": lambda d, g, c: [
        "traverse",
        "--onnx",
        g / "decoder.onnx",
        "--dim",
        1,
        "--seed",
        0,
        "--out",
        d / "t.png",
    ],
    "traverse-all-label": lambda d, g, c: [
        "traverse",
        "--onnx",
        c / "decoder.onnx",
        "--all",
        "--label",
        3,
        "--out",
        d / "ta.png",
    ],
    "traverse-image": lambda d, g, c: [
        "traverse",
        "--onnx",
        g / "decoder.onnx",
        "--encoder",
        g / "encoder.onnx",
        "--image",
        d / "img0.png",
        "--dim",
        0,
        "--steps",
        5,
        "--out",
        d / "ti.png",
    ],
    "data-images-grid": lambda d, g, c: ["data-images", "--label", 8, "-n", 8, "--out", d / "di.png"],
    "data-images-dir": lambda d, g, c: ["data-images", "--split", "train", "-n", 5, "--out-dir", d / "di_dir"],
    "info": lambda d, g, c: ["info", g / "decoder.onnx"],
    "generate-demo": lambda d, g, c: [
        "generate",
        "--demo",
        "-n",
        10,
        "--seed",
        0,
        "--scale",
        2,
        "--out",
        d / "demo.png",
    ],
    "traverse-gif": lambda d, g, c: [
        "traverse",
        "--onnx",
        g / "decoder.onnx",
        "--all",
        "--steps",
        3,
        "--out",
        d / "t.gif",
    ],
    "encode": lambda d, g, c: ["encode", "--encoder", g / "encoder.onnx", d / "img0.png", "--out", d / "z.npy"],
    "encode-data-demo": lambda d, g, c: ["encode", "--demo", "--logvar", "--out", d / "zd.csv"],
    "explore-site": lambda d, g, c: ["explore", g, "--site", d / "site"],
}


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_command_runs_without_torch_torchvision_or_onnx(name, inputs):
    d, graphs, conditional = inputs
    args = COMMANDS[name](d, graphs, conditional)
    if name == "generate-fp16" and not (graphs / "decoder.fp16.onnx").exists():
        pytest.skip("this export has no fp16 variant")
    r = run_torch_free(*args)
    assert r.returncode == 0, r.stderr
    assert "blocked import" not in r.stderr
    if "--out" in args and name.startswith("encode"):
        assert Path(args[args.index("--out") + 1]).stat().st_size > 0
    elif "--out" in args:
        out = Path(args[args.index("--out") + 1])
        assert out.is_file() and Image.open(out).size[0] > 28
    elif "--site" in args:  # explore: the map was encoded, the page written
        assert (Path(args[args.index("--site") + 1]) / "api" / "map.json").stat().st_size > 10_000
    elif "--out-dir" in args:
        assert len(list(Path(args[args.index("--out-dir") + 1]).glob("*.png"))) == 5
    else:
        assert "role        decoder" in r.stdout


def test_the_blocker_really_blocks(tmp_path):
    """The prelude must make a torch import fail, or the tests above prove nothing."""
    r = run_torch_free("train", "--out", tmp_path / "run", "--epochs", 1)
    assert r.returncode != 0
    assert "blocked import of torch" in r.stderr or "needs torch" in r.stderr


def test_inference_modules_import_without_the_training_stack():
    probe = PRELUDE.split("sys.argv")[0] + (
        "import vaectl.infer, vaectl.infer.sessions, vaectl.scoring, vaectl.contract, vaectl.infer.safe_load, vaectl.files, "
        "vaectl.data, vaectl.data.images, vaectl.cli, vaectl.models, vaectl.models.presets, vaectl.training, "
        "vaectl.training.config, vaectl.infer.evaluate, vaectl.demo, vaectl.explore\n"
        f"print(sorted(m for m in sys.modules if m.split('.')[0] in {BLOCKED!r}))\n"
    )
    r = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"


# What `vaectl generate` must not import: it is the command run most often, and every module costs start-up
# time (bench/generate_overhead.py times the whole process against a bare onnxruntime script). The other
# commands' modules, the datasets and image-file readers, the Jupyter display, `vaectl info`'s describer, and
# Pillow's plugins other than PNG's (saving with format="PNG" makes Pillow load five, JPEG's with subprocess).
NOT_IMPORTED_BY_GENERATE = (
    "torch",
    "onnx",
    "vaectl.cli_training",
    "vaectl.cli_tools",
    "vaectl.training",
    "vaectl.export",
    "vaectl.explore",
    "vaectl.data",
    "vaectl.infer.inputs",
    "vaectl.infer.display",
    "vaectl.infer.describe",
    "vaectl.infer.evaluate",
    "PIL.JpegImagePlugin",
    "PIL.GifImagePlugin",
    "PIL.BmpImagePlugin",
)

# Runs the CLI, then prints every module the process imported, one a line.
LIST_MODULES = """
import sys, runpy
sys.argv = ["vaectl"] + sys.argv[1:]
try:
    runpy.run_module("vaectl.cli", run_name="__main__")
finally:
    print(*sorted(sys.modules), sep="\\n")
"""


@pytest.mark.parametrize("model", ["export", "demo"])
def test_generate_imports_nothing_only_other_commands_use(model, request, tmp_path):
    """A fitted-prior export (the default path: a mixture draw) and the shipped conditional demo."""
    source = ["--demo"] if model == "demo" else ["--decoder", request.getfixturevalue("mlp_graphs")]
    out = tmp_path / "grid.png"
    r = subprocess.run(
        [sys.executable, "-c", LIST_MODULES, "generate", *map(str, source), "-n", "64", "--seed", "0", "--out", out],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    assert out.is_file()
    loaded = set(r.stdout.split())
    assert {"vaectl.infer.commands", "vaectl.infer.sessions", "PIL.PngImagePlugin"} <= loaded  # the probe sees them
    unwanted = sorted(m for m in loaded if any(m == u or m.startswith(u + ".") for u in NOT_IMPORTED_BY_GENERATE))
    assert not unwanted, f"vaectl generate imported {unwanted}"
