"""What the explorer page needs from Python, built once at start: the graphs, info.json, the latent map,
the training run's curves, and numpy's N(0, I) draws (so a seed gives the grid `vaectl generate --seed` gives)."""

from __future__ import annotations

import base64
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .. import __version__
from ..errors import UserInputError, arg
from ..infer import Decoder, Encoder, VAEPair, describe_model
from ..infer.sessions import graph_path

# variant -> the file name in an export, and the page's URL models/NAME whatever the file is called
VARIANTS = (("fp32", "decoder.onnx"), ("fp16", "decoder.fp16.onnx"), ("int8", "decoder.int8.onnx"))
MAP_IMAGES = 500  # test images encoded for the latent map (posterior means)
MAX_DRAWS = 4096  # the most N(0, I) rows one /api/normals.json request returns
GRID_FILE = re.compile(r"samples_epoch(\d{3,6})\.png")


@dataclass
class ExploreModel:
    decoders: dict[str, Path]  # variant -> decoder path; "fp32" always present
    encoder: Path | None
    run_dir: Path | None  # a training run directory (metrics.jsonl, images/samples_epoch*.png), if any
    data_dir: Path | None = None
    info: dict = field(default_factory=dict)
    map: dict = field(default_factory=dict)
    run: dict = field(default_factory=dict)
    run_grids: dict[str, Path] = field(default_factory=dict)  # "samples_epoch001.png" -> path

    @property
    def latent_dim(self) -> int:
        return self.info["latent_dim"]


def find_graphs(source=None, decoder=None, encoder=None) -> tuple[dict[str, Path], Path | None, Path | None]:
    """(decoder variants, encoder, run directory) from an export directory, a run directory holding an
    export (directly or in a subfolder), or explicit --decoder/--encoder paths (files or export directories)."""
    if source is not None and decoder is not None:
        raise UserInputError(f"give an export directory or {arg('decoder')}, not both")
    if source is None and decoder is None:
        raise UserInputError(f"give an export directory (what `vaectl export` wrote) or {arg('decoder')} decoder.onnx")
    if decoder is not None:
        decoder = graph_path(decoder, "decoder")
        if not decoder.is_file():
            raise UserInputError(f"{decoder}: no such file")
        enc = graph_path(encoder, "encoder") if encoder is not None else None
        if enc is not None and not enc.is_file():
            raise UserInputError(f"{enc}: no such file")
        return {"fp32": decoder}, enc, None
    source = Path(source)
    if not source.exists():
        raise UserInputError(f"{source}: no such directory")
    if not source.is_dir():
        raise UserInputError(f"{source}: not a directory (give what `vaectl export --out` wrote, or {arg('decoder')})")
    export_dir = graph_path(source, "decoder").parent
    run_dir = next((d for d in (source, export_dir, export_dir.parent) if (d / "metrics.jsonl").is_file()), None)
    decoders = {v: export_dir / name for v, name in VARIANTS if (export_dir / name).is_file()}
    enc = graph_path(encoder, "encoder") if encoder is not None else export_dir / "encoder.onnx"
    return decoders, (enc if enc.is_file() else None), run_dir


def load_explore_model(source=None, decoder=None, encoder=None, data_dir=None) -> ExploreModel:
    decoders, enc, run_dir = find_graphs(source, decoder, encoder)
    model = ExploreModel(decoders, enc, run_dir, Path(data_dir) if data_dir is not None else None)
    dec = Decoder(decoders["fp32"])
    for variant, path in decoders.items():  # every variant must be the same model, or the selector lies
        other = Decoder(path) if variant != "fp32" else dec
        if (other.latent_dim, other.image_shape, other.num_classes) != (
            dec.latent_dim,
            dec.image_shape,
            dec.num_classes,
        ):
            raise UserInputError(f"{path} and {decoders['fp32']} come from different models")
    pair = VAEPair(Encoder(enc), dec) if enc is not None else None
    model.map = build_map(pair, model.data_dir)
    model.run, model.run_grids = read_run(run_dir)
    model.info = build_info(model, dec)
    return model


def _card(path: Path) -> dict:
    """describe_model (what `vaectl info` prints), with the file name instead of a local path."""
    card = describe_model(path)
    card["path"] = path.name
    return card


def build_info(model: ExploreModel, dec: Decoder) -> dict:
    cfg = dec.info.config
    card = _card(model.decoders["fp32"])
    guidance = next((t for t in card["inputs"] if t["name"] == "guidance"), None)
    order, order_by = list(range(dec.latent_dim)), "latent index"
    kl = model.map.get("kl_per_dim")
    if kl is not None:
        order_by = "KL per dimension of the encoded test images"
    elif dec.info.kl_per_dim is not None:
        kl, order_by = list(dec.info.kl_per_dim), "KL per dimension (recorded at export)"
    elif model.run.get("metrics") and model.run["metrics"][-1].get("kl_per_dim"):
        kl, order_by = model.run["metrics"][-1]["kl_per_dim"], "KL per dimension (metrics.jsonl, last epoch)"
    if kl is not None and len(kl) == dec.latent_dim:
        order = [int(i) for i in np.argsort(-np.asarray(kl, dtype=np.float64), kind="stable")]
    return {
        "vaectl_version": __version__,
        "latent_dim": dec.latent_dim,
        "image_shape": list(dec.image_shape),
        "num_classes": dec.num_classes,
        "class_names": list(dec.class_names) if dec.conditional else [],
        "likelihood": cfg.likelihood,
        "arch": cfg.arch,
        "dataset": cfg.dataset,
        "row_context": cfg.row_context,
        "guidance": {"shape": guidance["shape"], "default": guidance["default"]} if guidance else None,
        "decoder": card,
        "encoder": _card(model.encoder) if model.encoder else None,
        "variants": [
            {"variant": v, "file": f"models/{dict(VARIANTS)[v]}", "bytes": p.stat().st_size}
            for v, p in model.decoders.items()
        ],
        "encoder_file": "models/encoder.onnx" if model.encoder else None,
        "order": order,
        "order_by": order_by,
        "kl_per_dim": kl,
        "map": {k: model.map[k] for k in ("available", "reason", "method", "count", "explained") if k in model.map},
        "run": {
            "available": bool(model.run),
            "epochs": len(model.run.get("metrics", [])),
            "grids": [f"run/{name}" for name in model.run_grids],
        },
        "upload": True,  # the static site sets False: uploads need the server's image loader
        "seeds": None,  # the static site lists its precomputed seeds here
    }


def build_map(pair: VAEPair | None, data_dir) -> dict:
    """Posterior means of up to MAP_IMAGES test images, in 2-D: the latent itself when D = 2, else PCA
    (computed once here, in numpy). Also the KL per dimension that orders the sliders."""
    if pair is None:
        return {"available": False, "reason": "no encoder.onnx: the map needs the encoder to place images"}
    from ..data import MNIST_SAMPLE, load_data

    cfg = pair.decoder.info.config
    if data_dir is None and cfg.dataset != MNIST_SAMPLE:
        return {"available": False, "reason": f"trained on {cfg.dataset!r}: give --data DIR with its test images"}
    ds = load_data(data_dir)
    if tuple(ds.image_shape) != cfg.image_shape:
        return {
            "available": False,
            "reason": f"the data's images are {tuple(ds.image_shape)}, the model's {cfg.image_shape}",
        }
    images = ds.test[:MAP_IMAGES]
    labels = ds.test_labels[:MAP_IMAGES] if ds.test_labels is not None else None
    if cfg.num_classes and labels is None:
        return {"available": False, "reason": "this conditional model needs labelled test images for its map"}
    mu, logvar = pair.encoder.encode(images, label=labels if cfg.num_classes else None)
    mu64, lv64 = mu.astype(np.float64), logvar.astype(np.float64)
    kl = (0.5 * (mu64**2 + np.exp(lv64) - lv64 - 1.0)).mean(0)
    if mu.shape[1] <= 2:
        points, method, explained = mu64[:, :2], "latent", None
    else:
        points, explained = pca_2d(mu64)
        method = "pca"
    return {
        "available": True,
        "method": method,
        "count": len(mu),
        "explained": explained,
        "points": np.round(points, 5).tolist(),
        "mu": mu.tolist(),
        "labels": None if labels is None else labels.tolist(),
        "label_names": list(ds.class_names) if labels is not None else [],
        "images": base64.b64encode(np.ascontiguousarray(images, dtype=np.uint8).tobytes()).decode("ascii"),
        "kl_per_dim": [round(float(v), 5) for v in kl],
    }


def pca_2d(x: np.ndarray) -> tuple[np.ndarray, list[float]]:
    """The first two principal components of x (N, D): (N, 2) scores, explained variance ratios.
    Each component's sign makes its largest loading positive, so the picture does not flip between runs."""
    centered = x - x.mean(0)
    _, s, vt = np.linalg.svd(centered, full_matrices=False)
    vt = vt[:2] * np.sign(vt[:2][np.arange(2), np.abs(vt[:2]).argmax(1)])[:, None]
    total = float((s**2).sum()) or 1.0
    return centered @ vt.T, [round(float(v) ** 2 / total, 4) for v in s[:2]]


def read_run(run_dir: Path | None) -> tuple[dict, dict[str, Path]]:
    """metrics.jsonl records and the per-epoch sample grids of a training run."""
    if run_dir is None:
        return {}, {}
    metrics = []
    for line in (run_dir / "metrics.jsonl").read_text().splitlines():
        try:
            metrics.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # a line cut short by a crash: the rest still draws
    grids = {p.name: p for p in sorted((run_dir / "images").glob("samples_epoch*.png")) if GRID_FILE.fullmatch(p.name)}
    return {"metrics": metrics, "grids": [f"run/{name}" for name in grids]}, grids


def normals(latent_dim: int, seed: int, count: int) -> list[list[float]]:
    """The first `count` rows of np.random.default_rng(seed).standard_normal((., D)), float64, as `vaectl
    generate` draws them (the page scales by the temperature and rounds to float32 as Decoder does)."""
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise UserInputError(f"a seed is a non-negative integer, got {seed!r}")
    if not 1 <= count <= MAX_DRAWS:
        raise UserInputError(f"count must be 1..{MAX_DRAWS}, got {count}")
    return np.random.default_rng(seed).standard_normal((count, latent_dim)).tolist()
