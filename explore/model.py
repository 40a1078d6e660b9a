"""What the explorer page needs from Python, built once at start: the graphs, info.json, the latent map,
the training run's curves, and the priors' draws for a seed (so a seed gives the grid `vaectl generate --seed`
gives: the page only applies the temperature, as vaectl.prior describes)."""

from __future__ import annotations

import base64
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .. import __version__, contract, layout
from ..errors import UserInputError, arg, render
from ..infer import Decoder, Encoder, VAEPair, describe_model
from ..infer.sessions import graph_path
from ..prior import Prior, priors_of

MAP_IMAGES = 500  # test images encoded for the latent map (posterior means)
MAP_REACH = 0.99  # the sliders and the pad reach this share of the map's codes in each component
MAX_DRAWS = 4096  # the most rows one /api/draws.json request returns
AN = re.compile(r"(8|11(?!\d)|18(?!\d)|[aeiou])", re.I)  # names read with "an": an 8, an 11, an eel


@dataclass
class ExploreModel:
    decoders: dict[str, Path]  # variant -> decoder path; "fp32" always present
    encoder: Path | None
    run_dir: Path | None  # a training run directory (metrics.jsonl, images/samples_epoch*.png), if any
    info: dict = field(default_factory=dict)
    map: dict = field(default_factory=dict)
    run: dict = field(default_factory=dict)
    run_grids: dict[str, Path] = field(default_factory=dict)  # "samples_epoch001.png" -> path
    priors: list[Prior] = field(default_factory=list)  # the decoder's priors, the default first

    @property
    def latent_dim(self) -> int:
        return self.info["latent_dim"]


def find_graphs(source=None, decoder=None, encoder=None) -> tuple[dict[str, Path], Path | None, Path | None]:
    """(decoder variants, encoder, run directory) from an export directory, a run directory holding an
    export (directly or in a subfolder), or explicit --decoder/--encoder paths (files or export directories)."""
    if source is not None and decoder is not None:
        raise UserInputError(f"give an export directory or {arg('decoder')}, not both")
    if source is None and decoder is None:
        raise UserInputError(
            f"give an export directory (what `vaectl export` wrote) or {arg('decoder')} {layout.DECODER}"
        )
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
    run_dir = layout.run_dir_of(source, export_dir, export_dir.parent)
    decoders = {v: export_dir / name for v, name in layout.DECODER_VARIANTS.items() if (export_dir / name).is_file()}
    enc = graph_path(encoder, "encoder") if encoder is not None else export_dir / layout.ENCODER
    return decoders, (enc if enc.is_file() else None), run_dir


def load_explore_model(source=None, decoder=None, encoder=None, data_dir=None, flag_name=None) -> ExploreModel:
    """The graphs, the map of test images (`data_dir`'s, else the data a run directory's run trained on, read
    as it read them, else the embedded sample for a model trained on it), the run's curves, info.json.
    flag_name(parameter) -> flag: how the page's messages name parameters (the CLI's flags; else Python's)."""
    decoders, enc, run_dir = find_graphs(source, decoder, encoder)
    model = ExploreModel(decoders, enc, run_dir)
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
    model.priors = priors_of(dec.info)
    try:
        model.map = build_map(pair, map_data(dec, run_dir, data_dir) if pair is not None else None)
    except UserInputError as e:
        model.map = {"available": False, "reason": render(e.args[0], flag_name)}
    model.run, model.run_grids = read_run(run_dir)
    model.info = build_info(model, dec)
    return model


def map_data(dec: Decoder, run_dir: Path | None, data_dir=None):
    """The images to map: data_dir's at the model's shape; else the data the run trained on, with its recipe
    (data.sources.load_run_data: its size, its hold-out); else the embedded sample, for a model trained on it."""
    from ..data import MNIST_SAMPLE  # local: only a map reads datasets
    from ..data.sources import load_model_data

    cfg = dec.info.config
    if data_dir is None and run_dir is None and cfg.dataset != MNIST_SAMPLE:
        raise UserInputError(f"trained on {cfg.dataset!r}: give {arg('data_dir')} DIR with its test images")
    return load_model_data(cfg, data_dir, run_dir, dec.info.hold_out_seed)


def _card(path: Path) -> dict:
    """describe_model (what `vaectl info` prints), with the file name instead of a local path."""
    card = describe_model(path)
    card["path"] = path.name
    return card


def component_order(model: ExploreModel, dec: Decoder) -> tuple[list[float] | None, str]:
    """The KL per latent dimension that orders the components, and where it comes from: the one the export
    recorded (what `vaectl info` and `vaectl traverse` use), else the run's last epoch, else the map's images."""
    if dec.info.kl_per_dim is not None:
        return list(dec.info.kl_per_dim), "KL per dimension on the validation images (recorded at export)"
    metrics = model.run.get("metrics")
    if metrics and metrics[-1].get("kl_per_dim") and len(metrics[-1]["kl_per_dim"]) == dec.latent_dim:
        return metrics[-1]["kl_per_dim"], "KL per dimension on the validation images (metrics.jsonl, last epoch)"
    if model.map.get("kl_per_dim") is not None:
        return model.map["kl_per_dim"], "KL per dimension of the encoded test images"
    return None, "latent index (this export records no KL per dimension)"


def build_info(model: ExploreModel, dec: Decoder) -> dict:
    cfg = dec.info.config
    card = _card(model.decoders["fp32"])
    encoder_card = _card(model.encoder) if model.encoder else None
    guidance = next((t for t in card["inputs"] if t["name"] == contract.GUIDANCE), None)
    refine = next((t for t in (encoder_card or {}).get("inputs", ()) if t["name"] == contract.REFINE_STEPS), None)
    kl, order_by = component_order(model, dec)
    informative = contract.informative_dims(kl) if kl is not None else list(range(dec.latent_dim))
    order = informative + [
        d for d in np.argsort(-np.asarray(kl or [0.0] * dec.latent_dim), kind="stable").tolist() if d not in informative
    ]
    start = start_point(model, dec)
    class_names = list(dec.class_names) if dec.conditional else []
    # every value the graphs' label input takes, by index: the classes, then "none" for a model trained with
    # label dropout (its unconditional class)
    label_names = class_names + (["none"] if cfg.no_label_class else [])
    return {
        "vaectl_version": __version__,
        "latent_dim": dec.latent_dim,
        "image_shape": list(dec.image_shape),
        "num_classes": dec.num_classes,
        "class_names": class_names,
        "label_names": label_names,
        "likelihood": cfg.likelihood,
        "beta": cfg.beta,
        "arch": cfg.arch,
        "dataset": cfg.dataset,
        "row_context": cfg.row_context,
        "guidance": {"shape": guidance["shape"], "default": guidance["default"]} if guidance else None,
        # a refining encoder's steps: uploads are encoded with the model's own number
        "refine_steps": {"shape": refine["shape"], "default": refine["default"]} if refine else None,
        # the graphs' tensor names, from the contract: the page feeds and reads these, nothing else
        "tensors": {
            "z": contract.Z,
            "label": contract.LABEL,
            "guidance": contract.GUIDANCE,
            "refine_steps": contract.REFINE_STEPS,
            "image": contract.IMAGE,
            "mu": contract.MU,
            "logvar": contract.LOGVAR,
        },
        "decoder": card,
        "encoder": encoder_card,
        "variants": [
            {"variant": v, "file": layout.site_model_file("decoder", v), "bytes": p.stat().st_size}
            for v, p in model.decoders.items()
        ],
        "encoder_file": layout.site_model_file("encoder") if model.encoder else None,
        "order": order,
        "order_by": order_by,
        "kl_per_dim": kl,
        # the one rule for "informative" (vaectl info, traverse and the training log use it too)
        "informative": {
            "dims": informative if kl is not None else None,
            "threshold": contract.INFORMATIVE_KL,
            "rule": contract.INFORMATIVE_RULE,
        },
        "priors": [describe_prior(p, len(label_names)) for p in model.priors],  # the default first
        "start": start,
        "ranges": view_ranges(model, start["z"]),
        "map": {k: model.map[k] for k in ("available", "reason", "count") if k in model.map},
        "run": {
            "available": bool(model.run),
            "epochs": len(model.run.get("metrics", [])),
            "grids": [layout.site_grid_file(name) for name in model.run_grids],
        },
        "upload": True,  # the static site sets False: uploads need the server's image loader
        "seeds": None,  # the static site lists its precomputed seeds here
    }


def describe_prior(prior: Prior, label_slots: int) -> dict:
    """A prior for the page: its name, its line for users, and the mean and standard deviation of each latent
    component (Prior.moments: what `vaectl traverse` sweeps a component over, the mean +- span standard
    deviations). One row of each per label the graphs take when the prior has one mixture per class, else one."""
    labels = range(label_slots) if prior.by_label else [None]
    moments = [prior.moments(label) for label in labels]  # float64 (D,) each: JSON keeps them exactly
    return {
        "name": prior.name,
        "description": prior.description,
        "mean": [mean.tolist() for mean, _ in moments],
        "std": [std.tolist() for _, std in moments],
    }


def view_ranges(model: ExploreModel, start_z: list[float]) -> list[int]:
    """How far the sliders and the pad reach in each component, in prior units: +-3 prior standard deviations,
    widened (to a whole number) to 99 % of the encoded test images of the map (a few far-out codes do not shrink
    everyone else's view), the default prior's mean +- 3 of its standard deviations and the start point. A model
    whose codes sit far from N(0, I) (beta = 0) stays reachable."""
    reach = np.maximum(3.0, np.abs(np.asarray(start_z, np.float64)))  # (D,)
    if model.map.get("available"):
        codes = np.abs(np.asarray(model.map["mu"], np.float64))  # (N, D)
        reach = np.maximum(reach, np.quantile(codes, MAP_REACH, axis=0))
    prior = model.priors[0]
    for label in range(len(getattr(prior, "weights", ()))) if prior.by_label else [None]:
        mean, std = prior.moments(label)
        reach = np.maximum(reach, np.abs(mean) + 3 * std)
    return [int(np.ceil(r - 1e-9)) for r in reach]


def with_article(name: str) -> str:
    """'a 3', 'an 8', 'an eel': the article a class name takes (8, 11, 18, 80-89 and vowels read with 'an')."""
    return ("an " if AN.match(str(name)) else "a ") + str(name)


def start_point(model: ExploreModel, dec: Decoder) -> dict:
    """The z the page opens on: a real image's encoding (z = 0 decodes to a grey blob on some models), else
    the default prior's first draw for seed 0."""
    if model.map.get("available"):
        label = model.map["labels"][0] if model.map["labels"] is not None else None
        name = (
            f" ({with_article(model.map['label_names'][label])})"
            if label is not None and model.map["label_names"]
            else ""
        )
        return {
            "z": model.map["mu"][0],
            "label": label if dec.conditional else None,
            "what": f"the posterior mean of test image 0{name}",  # 0-based, as `vaectl data-images --index`
        }
    prior = model.priors[0]
    labels = np.zeros(1, np.int64) if dec.conditional else None
    center, offset = prior.draw_parts(1, np.random.default_rng(0), labels)
    return {
        "z": (center + offset).astype(np.float32)[0].tolist(),
        "label": 0 if dec.conditional else None,
        "what": f"a draw from the {prior.name} prior (seed 0)",
    }


def build_map(pair: VAEPair | None, ds) -> dict:
    """Posterior means (the encoder's, unrefined) of up to MAP_IMAGES test images of `ds` (an ImageDataset at the
    model's shape; the page draws two components of them, in prior units), their labels and pixels, and the KL
    per dimension of their encodings."""
    if pair is None:
        return {"available": False, "reason": "no encoder.onnx: the map needs the encoder to place images"}
    cfg = pair.decoder.info.config
    images = ds.test[:MAP_IMAGES]
    labels = ds.test_labels[:MAP_IMAGES] if ds.test_labels is not None else None
    if cfg.num_classes and labels is None:
        return {"available": False, "reason": "this conditional model needs labelled test images for its map"}
    # where the encoder puts them, unrefined, as the KL the export records: refining up to MAP_IMAGES images
    # would hold up the page's start by 40-60 ms an image at 64 px
    mu, logvar = pair.encoder.encode(images, label=labels if cfg.num_classes else None, refine_steps=0)
    mu64, lv64 = mu.astype(np.float64), logvar.astype(np.float64)
    kl = (0.5 * (mu64**2 + np.exp(lv64) - lv64 - 1.0)).mean(0)
    return {
        "available": True,
        "count": len(mu),
        "mu": mu.tolist(),
        "labels": None if labels is None else labels.tolist(),
        "label_names": list(ds.class_names) if labels is not None else [],
        "images": base64.b64encode(np.ascontiguousarray(images, dtype=np.uint8).tobytes()).decode("ascii"),
        "kl_per_dim": [round(float(v), 5) for v in kl],
    }


def read_run(run_dir: Path | None) -> tuple[dict, dict[str, Path]]:
    """metrics.jsonl records, the informative components per epoch (contract.informative_dims) and the
    per-epoch sample grids of a training run."""
    if run_dir is None:
        return {}, {}
    metrics = []
    metrics_file = run_dir / layout.METRICS
    for line in (metrics_file.read_text() if metrics_file.is_file() else "").splitlines():
        try:
            metrics.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # a line cut short by a crash: the rest still draws
    informative = [
        len(contract.informative_dims(m["kl_per_dim"])) if m.get("kl_per_dim") is not None else None for m in metrics
    ]
    grids = {
        p.name: p
        for p in sorted((run_dir / layout.IMAGES).glob(layout.GRID_PATTERNS[0]))
        if (m := layout.GRID_NAME.fullmatch(p.name)) and m.group(1) == "samples"
    }
    return {"metrics": metrics, "informative": informative, "grids": list(map(layout.site_grid_file, grids))}, grids


def draw_labels(spec: str, n: int, num_classes: int, label_slots: int) -> tuple[np.ndarray | None, int]:
    """The labels `vaectl generate` decodes n images with, and how many rows the prior draws, for the page's
    label choice: "" (an unconditional model), a label index ("--label K"), "cycle" (no --label: the classes in
    turn), "all" (--label all: n per class, class-major) or "all-same" (--label all --same-z: n draws shared by
    every class)."""
    if not num_classes:
        if spec != "":
            raise UserInputError("this model takes no label")
        return None, n
    if spec == "cycle":
        return np.arange(n, dtype=np.int64) % num_classes, n
    if spec == "all":
        return np.arange(n * num_classes, dtype=np.int64) // n, n * num_classes
    if spec == "all-same":
        return None, n
    if re.fullmatch(r"[0-9]{1,4}", spec) and int(spec) < label_slots:
        return np.full(n, int(spec), dtype=np.int64), n
    raise UserInputError(f"label must be a label index below {label_slots}, cycle, all or all-same; got {spec!r}")


def draws(model: ExploreModel, prior_name: str, seed: int, n: int, label: str) -> dict:
    """The prior's (center, offset) rows for a seed, float64 little-endian in base64: the page's latents are
    float32(center + temperature * offset), exactly those of `vaectl generate --seed` (vaectl.prior)."""
    prior = next((p for p in model.priors if p.name == prior_name), None)
    if prior is None:
        raise UserInputError(f"unknown prior {prior_name!r}; this model has {', '.join(p.name for p in model.priors)}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise UserInputError(f"a seed is a non-negative integer, got {seed!r}")
    if not 1 <= n <= MAX_DRAWS:
        raise UserInputError(f"n must be 1..{MAX_DRAWS}, got {n}")
    info = model.info
    labels, rows = draw_labels(label, n, info["num_classes"], len(info["label_names"]))
    if rows > MAX_DRAWS:
        raise UserInputError(f"at most {MAX_DRAWS} rows, asked for {rows}")
    center, offset = prior.draw_parts(rows, np.random.default_rng(seed), labels)

    def b64(a: np.ndarray) -> str:
        return base64.b64encode(np.ascontiguousarray(a, dtype="<f8").tobytes()).decode("ascii")

    return {"rows": rows, "dim": model.latent_dim, "center": b64(center), "offset": b64(offset)}
