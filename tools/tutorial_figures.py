"""Run the tutorial notebook from a clean kernel and write its figures for docs/tutorial.md.

    python tools/tutorial_figures.py                 # examples/tutorial.ipynb -> docs/tutorial/NAME.png|gif
    python tools/tutorial_figures.py --keep runs-nb  # also keep the executed notebook and its runs there

A figure is the image output of a code cell whose metadata names it ("figure": "latent-map"). The notebooks
are committed without outputs; these files are the rendered copy the docs show. tests/test_notebooks.py runs
the notebooks through `execute` below.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK = REPO / "examples" / "tutorial.ipynb"
FIGURES_DIR = REPO / "docs" / "tutorial"
IMAGE_TYPES = {"image/png": ".png", "image/gif": ".gif"}
CELL_TIMEOUT_S = 1800  # a hung cell fails; the machine may be shared, so this is no speed target


def kernel_for_this_python(directory: Path) -> dict[str, str]:
    """Environment variables under which the notebook's "python3" kernel is this interpreter (sys.executable),
    whatever kernels the user has installed: JUPYTER_PATH is searched before the user's own folders."""
    spec = directory / "kernels" / "python3"
    spec.mkdir(parents=True, exist_ok=True)
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    (spec / "kernel.json").write_text(json.dumps({"argv": argv, "display_name": "Python 3", "language": "python"}))
    return {"JUPYTER_PATH": str(directory)}


def execute(notebook: Path, workdir: Path, threads: int | None = None):
    """The notebook executed from a clean kernel with `workdir` as its current directory (where it writes runs/).
    threads: the kernel's OpenMP threads (torch's intra-op threads), None for torch's default.
    Raises nbclient's CellExecutionError on the first cell that fails."""
    import nbformat
    from nbclient import NotebookClient
    from traitlets.config import Config

    nb = nbformat.read(notebook, as_version=4)
    env = kernel_for_this_python(workdir / ".jupyter")
    if threads is not None:
        env["OMP_NUM_THREADS"] = str(threads)
    old = {key: os.environ.get(key) for key in env}
    os.environ.update(env)
    try:
        # local sockets, not TCP ports: nothing listens on the network (and ipykernel does not warn that it does)
        with tempfile.TemporaryDirectory(prefix="vaectl-kernel-") as sockets:
            config = Config({"KernelManager": {"transport": "ipc", "ip": str(Path(sockets) / "k")}})
            NotebookClient(
                nb,
                config=config,
                timeout=CELL_TIMEOUT_S,
                kernel_name="python3",
                resources={"metadata": {"path": str(workdir)}},
            ).execute()
    finally:
        for key, value in old.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    return nb


def figures(nb) -> dict[str, tuple[str, bytes]]:
    """{figure name: (file suffix, image bytes)} of the executed notebook's named figure cells."""
    found = {}
    for cell in nb.cells:
        name = cell.metadata.get("figure")
        if cell.cell_type != "code" or not name:
            continue
        for output in cell.get("outputs", []):
            for mime, suffix in IMAGE_TYPES.items():
                if mime in output.get("data", {}):
                    found[name] = (suffix, base64.b64decode(output["data"][mime]))
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--notebook", type=Path, default=NOTEBOOK)
    parser.add_argument("--out", type=Path, default=FIGURES_DIR, help="where the figures go [docs/tutorial]")
    parser.add_argument("--keep", type=Path, help="run in this folder and keep it (runs/, executed.ipynb)")
    parser.add_argument("--threads", type=int, help="the kernel's torch threads [torch's default]")
    args = parser.parse_args()
    import nbformat

    with tempfile.TemporaryDirectory(prefix="vaectl-tutorial-") as tmp:
        workdir = args.keep or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        start = time.perf_counter()
        nb = execute(args.notebook, workdir, args.threads)
        print(f"executed {args.notebook.name} in {time.perf_counter() - start:.0f} s")
        if args.keep:
            nbformat.write(nb, workdir / "executed.ipynb")
        args.out.mkdir(parents=True, exist_ok=True)
        for name, (suffix, data) in figures(nb).items():
            (args.out / f"{name}{suffix}").write_bytes(data)
            print(f"wrote {args.out / (name + suffix)} ({len(data) / 1e3:.0f} kB)")


if __name__ == "__main__":
    main()
