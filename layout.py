"""The files of a run directory, an export directory and the explorer's site: the one place that names them.

Torch-free, beside contract.py: the contract says what is inside a graph, this module what the files are
called and where they sit. Training writes a run directory, export writes an export directory, and the
explorer, `encode`, `eval` and the demo find things by these names. The explorer's server answers the
site's paths as URLs and `vaectl explore --site` writes them as files, so the page finds the same things
under either (its JavaScript, explore/static/*.mjs, spells them too: tests/test_explore.py checks they agree).

  RUN_DIR/                          vaectl train --out RUN_DIR
    last.pt, best.pt                checkpoints (models/checkpoint.py)
    config.json                     the model and training settings, the data the run trained on
    metrics.jsonl                   one record per epoch
    events.out.tfevents.*           TensorBoard event files (--tensorboard)
    images/samples_epochNNN.png     64 samples from fixed latents, per epoch
    images/recon_epochNNN.png       8 validation images above their reconstructions, per epoch
    onnx/                           the export directory `vaectl export RUN_DIR` writes (without --out)
  EXPORT_DIR/                       vaectl export RUN_DIR --out EXPORT_DIR
    encoder.onnx, decoder.onnx      the float32 graphs
    decoder.fp16.onnx               --fp16
    decoder.int8.onnx               --int8
  SITE_DIR/                         vaectl explore --site SITE_DIR; the server's URLs are the same paths
    index.html, style.css, *.mjs    the page (explore/static)
    ort/                            onnxruntime-web (explore/vendor)
    models/decoder.onnx, ...        the export's graphs, under their names in the export directory
    api/info.json, map.json         the model, the latent map
    api/run.json                    the training run's curves
    run/samples_epochNNN.png        its sample grids
    api/draws/PRIOR-SEED.json       a prior's draws for a seed (the server answers api/draws.json?prior=&seed=...)
    api/upload                      the server's only: an image file POSTed, returned as the model's input
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from .contract import ROLES, VARIANTS

# ---------------------------------------------------------------------------------------- run directory

LAST_CHECKPOINT = "last.pt"
BEST_CHECKPOINT = "best.pt"
CONFIG = "config.json"
METRICS = "metrics.jsonl"
IMAGES = "images"  # the per-epoch grids, in this subdirectory
TENSORBOARD_EVENTS = "events.out.tfevents.*"  # what torch.utils.tensorboard's event files are called
RUN_FILES = (LAST_CHECKPOINT, BEST_CHECKPOINT, CONFIG, METRICS)
GRID_KINDS = ("samples", "recon")
GRID_PATTERNS = tuple(f"{kind}_epoch*.png" for kind in GRID_KINDS)
GRID_NAME = re.compile(r"(samples|recon)_epoch(\d{3,6})\.png")


def grid_name(kind: str, epoch: int) -> str:
    """'samples_epoch003.png': a per-epoch grid's file name in images/."""
    if kind not in GRID_KINDS:
        raise ValueError(f"grid kind must be one of {GRID_KINDS}, got {kind!r}")
    return f"{kind}_epoch{epoch:03d}.png"


def checkpoint_name(last: bool) -> str:
    return LAST_CHECKPOINT if last else BEST_CHECKPOINT


# ------------------------------------------------------------------------------------- export directory


def graph_name(role: str, variant: str = "fp32") -> str:
    """'decoder.onnx', 'decoder.fp16.onnx', 'encoder.onnx': the file of a graph in an export directory."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {ROLES}, got {role!r}")
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
    return f"{role}.onnx" if variant == "fp32" else f"{role}.{variant}.onnx"


ENCODER = graph_name("encoder")
DECODER = graph_name("decoder")
DECODER_VARIANTS = {variant: graph_name("decoder", variant) for variant in VARIANTS}  # fp32 first
GRAPH_FILES = (ENCODER, *DECODER_VARIANTS.values())  # everything `vaectl export` writes

# Everything `vaectl train` writes into a run directory, as regular expressions over paths relative to it (the
# overwrite rule, files.Output): what --overwrite may remove and nothing else. Graphs exported into a
# subdirectory (RUN/onnx, where `vaectl export RUN` writes them) belong to the run too.
RUN_FILE_PATTERNS = (
    *(re.escape(name) for name in RUN_FILES),
    re.escape(TENSORBOARD_EVENTS[:-1]) + r"[^/]+",
    re.escape(IMAGES) + "/" + GRID_NAME.pattern,
    *(r"[^/]+/" + re.escape(name) for name in GRAPH_FILES),
)


def export_dirs_in(path, name: str = DECODER) -> list[Path]:
    """The export directories at `path` holding `name`: [path] itself when it does, else its subdirectories
    that do (a run directory exported into RUN/onnx), sorted."""
    path = Path(path)
    if (path / name).is_file():
        return [path]
    return sorted(p.parent for p in path.glob(f"*/{name}"))


RUN_EXPORT_DIR = "onnx"  # where `vaectl export RUN` writes the graphs when --out does not say


def default_export_dir(model) -> Path | None:
    """Where `vaectl export MODEL` writes without --out: RUN/onnx for a run directory or a checkpoint in one;
    None for a checkpoint anywhere else (the user names the directory)."""
    model = Path(model)
    run = run_dir_of(model) if model.is_dir() else run_dir_of(model.parent)
    return None if run is None else run / RUN_EXPORT_DIR


def run_dir_of(*candidates) -> Path | None:
    """The first of `candidates` that is a training run directory (it holds metrics.jsonl or config.json)."""
    for d in map(Path, candidates):
        if (d / METRICS).is_file() or (d / CONFIG).is_file():
            return d
    return None


def run_dir_of_graph(graph) -> Path | None:
    """The training run an exported graph file was written into (RUN/onnx/ROLE.onnx, or RUN/ROLE.onnx), if any."""
    graph = Path(graph)
    return run_dir_of(graph.parent, graph.parent.parent) if graph.is_file() else None


def run_config(run_dir) -> dict:
    """A run directory's config.json as a dict ({} when missing or unreadable)."""
    try:
        config = json.loads((Path(run_dir) / CONFIG).read_text())
    except (OSError, ValueError):
        return {}
    return config if isinstance(config, dict) else {}


# ---------------------------------------------------------------------------------- the explorer's site

INDEX = "index.html"
PAGE_FILES = (  # the page itself (explore/static), at the top of the site
    INDEX,
    "style.css",
    "app.mjs",
    "runtime.mjs",
    "latent.mjs",
    "draw.mjs",
    "views.mjs",
    "panels.mjs",
    "charts.mjs",
    "axes.mjs",
    "plane.mjs",
)
RUNTIME_DIR = "ort"  # onnxruntime-web's files
MODELS_DIR = "models"  # the graphs
API_DIR = "api"  # what the page reads from Python
DRAWS_DIR = f"{API_DIR}/draws"  # the static site's draws, per prior and seed
GRIDS_DIR = "run"  # the training run's sample grids
SITE_DIRS = (RUNTIME_DIR, MODELS_DIR, API_DIR, DRAWS_DIR, GRIDS_DIR)
INFO_JSON = f"{API_DIR}/info.json"
MAP_JSON = f"{API_DIR}/map.json"
RUN_JSON = f"{API_DIR}/run.json"
DRAWS_JSON = f"{API_DIR}/draws.json"  # the server's draws for any seed: ?prior=&seed=&n=&label=
UPLOAD = f"{API_DIR}/upload"  # the server's one POST: an image file in, the model's input out


def site_model_file(role: str, variant: str = "fp32") -> str:
    """'models/decoder.fp16.onnx': where the page finds a graph (its name in the export directory)."""
    return f"{MODELS_DIR}/{graph_name(role, variant)}"


def runtime_file(name: str) -> str:
    """'ort/ort.wasm.min.mjs': where the page finds one of onnxruntime-web's files."""
    return f"{RUNTIME_DIR}/{name}"


def site_grid_file(name: str) -> str:
    """'run/samples_epoch003.png': where the page finds one of the run's sample grids."""
    return f"{GRIDS_DIR}/{name}"


def draws_file(prior: str, seed) -> str:
    """'api/draws/gmm-3.json': the static site's draws of a prior for a seed (explore.site.site_draws)."""
    return f"{DRAWS_DIR}/{prior}-{seed}.json"


# Everything `vaectl explore --site` writes, as regular expressions over paths relative to the site (the overwrite
# rule, files.Output)
SITE_FILE_PATTERNS = (
    *(re.escape(name) for name in PAGE_FILES),
    "(" + "|".join(re.escape(d) for d in (RUNTIME_DIR, MODELS_DIR, API_DIR, GRIDS_DIR)) + ")/[^/]+",
    re.escape(DRAWS_DIR) + "/[^/]+",
)
