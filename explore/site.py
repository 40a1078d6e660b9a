"""`vaectl explore --site OUT_DIR`: the same page as a static folder any static host can serve.

The folder mirrors the server's routes (index.html, ort/, models/, api/*.json, run/), so the page
runs unchanged. The .wasm is written uncompressed: a plain static host sends files as they are,
without Content-Encoding, and the browser must receive raw WebAssembly (hosts that compress do so
themselves). The host must send .mjs as JavaScript and .wasm as application/wasm; file:// does not work.
Image upload needs the server's image loader, so the static page turns it off and says so.
"""

from __future__ import annotations

import contextlib
import gzip
import json
from pathlib import Path

from .. import layout
from ..files import Output, atomic_write_bytes, claim_out_dir
from .model import ExploreModel, draws
from .server import STATIC, VENDOR, runtime_files

SITE_SEEDS = tuple(range(8))  # the seeds the static page offers (the server takes any)
SITE_COUNTS = (1, 16, 64)  # the page's grid sizes, and 1 for an interpolation's end or "random z"
SITE_PER_CLASS = 8  # "all classes" grids: images per class


# what the site writes, which --overwrite may remove: the page and the folders mirroring the server's routes
SITE_OUTPUT = Output("a static site", layout.SITE_FILE_PATTERNS)


def write_site(model: ExploreModel, out_dir, overwrite: bool = False) -> list[Path]:
    """Write the static site into out_dir (created if missing). A folder holding an earlier site is refused
    unless overwrite=True, which deletes that site's files first (files.claim_out_dir). Returns the files written."""
    out = Path(out_dir)
    claim_out_dir(out, SITE_OUTPUT, overwrite=overwrite, parents=True).clear()
    for sub in layout.SITE_DIRS:
        (out / sub).mkdir(parents=True, exist_ok=True)
    written = []

    def put(rel: str, data: bytes) -> None:
        atomic_write_bytes(out / rel, data, fsync=False)
        written.append(out / rel)

    for name in layout.PAGE_FILES:
        put(name, (STATIC / name).read_bytes())
    for name, entry in runtime_files().items():
        data = (VENDOR / entry["stored_as"]).read_bytes()
        put(layout.runtime_file(name), gzip.decompress(data) if entry["stored_as"].endswith(".gz") else data)
    for variant, path in model.decoders.items():
        put(layout.site_model_file("decoder", variant), path.read_bytes())
    if model.encoder:
        put(layout.site_model_file("encoder"), model.encoder.read_bytes())
    for name, path in model.run_grids.items():
        put(layout.site_grid_file(name), path.read_bytes())
    for prior in model.priors:
        for seed in SITE_SEEDS:
            put(layout.draws_file(prior.name, seed), _json(site_draws(model, prior.name, seed)))
    info = dict(model.info, upload=False, seeds=list(SITE_SEEDS))
    for rel, obj in ((layout.INFO_JSON, info), (layout.MAP_JSON, model.map), (layout.RUN_JSON, model.run)):
        put(rel, _json(obj))
    if not model.run_grids:
        with contextlib.suppress(OSError):  # only when empty: a file of the user's there stays
            (out / layout.GRIDS_DIR).rmdir()
    return written


def _json(obj) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def site_draws(model: ExploreModel, prior: str, seed: int) -> dict:
    """Every /api/draws.json answer the static page can ask for with this prior and seed, keyed "n|label"."""
    info = model.info
    if not info["num_classes"]:
        queries = [(n, "") for n in SITE_COUNTS]
    else:
        labels = ["cycle", *(str(k) for k in range(len(info["label_names"])))]
        queries = [(n, label) for n in SITE_COUNTS for label in labels]
        queries += [(SITE_PER_CLASS, "all"), (SITE_PER_CLASS, "all-same")]
    return {f"{n}|{label}": draws(model, prior, seed, n, label) for n, label in queries}
