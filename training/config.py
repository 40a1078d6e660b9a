"""TrainConfig and the one place where a preset, the conditional defaults and explicit values meet.

Torch-free, so the CLI can show the defaults in its help without importing torch.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from ..data import MNIST_SAMPLE
from ..errors import UserInputError, arg
from ..models.config import VAEConfig
from ..models.presets import CONDITIONAL, PRESETS, for_images, resnet_recipe
from ..threads import check_threads

# Fields of VAEConfig that come from the data, never from the user: image shape, classes, dataset name.
DATA_FIELDS = ("channels", "height", "width", "num_classes", "class_names", "dataset")


@dataclass
class TrainConfig:
    out: str = "runs/vae"
    data: str | None = None  # IDX folder or image folder (stored absolute); None: `dataset`
    dataset: str | None = MNIST_SAMPLE  # None when `data` is given: a run records one data source
    cache_dir: str | None = None
    image_size: int | None = None
    channels: int | None = None
    skip_bad_images: bool = False  # leave out images that cannot be decoded (a note), instead of stopping
    conditional: bool = False
    # The default schedule: 40 epochs of batches of 256 (about 1.6x the images per second of batches of 128
    # on a CPU) at peak lr 4e-3, with beta ramped up over the first quarter of the epochs, which keeps more
    # latent components informative and the decoder sharper (docs/sample-quality.md). The tutorial and
    # conditional recipes keep their own (models/presets.py).
    epochs: int = 40
    batch_size: int = 256
    lr: float = 4e-3
    schedule: str = "onecycle"  # "onecycle": 10% linear warm-up then cosine decay; "constant"
    weight_decay: float = 0.0
    # mirror a random half of the training images left to right, another half each epoch: for images whose
    # mirror image is as likely as they are (icons, emoji, faces, photographs), never digits or text
    hflip: bool = False
    kl_warmup: float | None = None  # epochs over which beta ramps linearly from 0; None: epochs / 4
    seed: int = 0
    device: str = "auto"
    amp: bool = False  # bf16 autocast
    compile: bool = False
    grid_every: int = 1  # write sample/reconstruction PNGs every N epochs (0: never)
    tensorboard: bool = False  # also write TensorBoard event files into the run directory
    threads: int | None = None  # torch's CPU threads; None: VAECTL_THREADS, else the free cores (vaectl/threads.py)

    def __post_init__(self) -> None:
        if self.kl_warmup is None:  # a number from here on: resuming with more epochs keeps the warm-up it had
            self.kl_warmup = self.epochs / 4

    def validate(self) -> None:
        if self.epochs < 1:
            raise UserInputError(f"{arg('epochs')} must be at least 1, got {self.epochs}")
        if self.batch_size < 1:
            raise UserInputError(f"{arg('batch_size')} must be at least 1, got {self.batch_size}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise UserInputError(f"{arg('lr')} must be positive, got {self.lr}")
        if self.kl_warmup is None or self.kl_warmup < 0:
            raise UserInputError(f"{arg('kl_warmup')} must be >= 0, got {self.kl_warmup}")
        if self.schedule not in ("onecycle", "constant"):
            raise UserInputError(f"unknown {arg('schedule')} {self.schedule!r}; choose onecycle or constant")
        if self.image_size is not None and self.image_size < 1:
            raise UserInputError(f"{arg('image_size')} must be positive, got {self.image_size}")
        if self.grid_every < 0:
            raise UserInputError(f"{arg('grid_every')} must be >= 0, got {self.grid_every}")
        if self.threads is not None:
            check_threads(self.threads)
        if self.data is not None and self.dataset not in (None, MNIST_SAMPLE):
            raise UserInputError(f"give either {arg('data')} or {arg('dataset')}, not both")

    def record_data_source(self) -> None:
        """One data source, stated so that it still works from another directory: `data` as an absolute
        path and no `dataset`, or `dataset` alone."""
        if self.data is not None:
            self.data, self.dataset = str(Path(self.data).expanduser().resolve()), None


TRAIN_FIELDS = tuple(f.name for f in dataclasses.fields(TrainConfig))
MODEL_FIELDS = tuple(f.name for f in dataclasses.fields(VAEConfig) if f.name not in DATA_FIELDS)


def default(name: str):
    """The default of a TrainConfig or VAEConfig field, for help texts."""
    for cls in (TrainConfig, VAEConfig):
        for f in dataclasses.fields(cls):
            if f.name == name:
                return f.default if f.default is not dataclasses.MISSING else f.default_factory()
    raise KeyError(name)


def data_recipe(
    image_shape, preset: str | None = None, model: Mapping | None = None, tcfg: TrainConfig | None = None, **fields
):
    """(the recipe for images of this (C, H, W), the log line saying it was picked for them), or (None, None)
    when the request settles it: a preset, a conditional run, a given TrainConfig, or an --arch other than
    the pick. An --arch that is the pick keeps the recipe, but nothing was picked: no line."""
    given_model = {**dict(model or {}), **fields}
    if preset is not None or tcfg is not None or fields.get("conditional"):
        return None, None
    recipe, note = for_images(*image_shape, hflip=fields.get("hflip"))
    picked = recipe.model["arch"] if recipe else "mlp"
    arch = given_model.get("arch", picked)
    if arch == "resnet" and recipe is None:  # asked for on small grey images: its recipe, sized for them
        return resnet_recipe(*image_shape[1:]), None
    if arch != picked:
        return None, None
    return recipe, (note if "arch" not in given_model else None)


def resolve(
    preset: str | None = None,
    model: Mapping | None = None,
    tcfg: TrainConfig | None = None,
    image_shape: tuple[int, int, int] | None = None,
    **fields,
) -> tuple[dict, TrainConfig]:
    """(model fields, TrainConfig) for a new run: the conditional defaults, under the preset, under what is given.

    `fields` are TrainConfig or VAEConfig field names (the CLI passes only the flags a user typed);
    `tcfg`, when given, replaces the preset's training fields. The model stays a field mapping until the
    data is loaded, because the data decides the image shape and the classes. Given the data's image_shape
    (C, H, W), the recipe picked for it (data_recipe) goes under everything else.
    """
    picked = data_recipe(image_shape, preset, model, tcfg, **fields)[0] if image_shape else None
    return _resolve(preset, model, tcfg, picked, fields)


def resolve_for_images(
    image_shape, preset=None, model=None, tcfg=None, **fields
) -> tuple[dict, TrainConfig, str | None]:
    """resolve() once the images are known, and the line saying which recipe was picked for them (or None)."""
    picked, note = data_recipe(image_shape, preset, model, tcfg, **fields)
    return (*_resolve(preset, model, tcfg, picked, fields), note)


def _resolve(preset, model, tcfg, picked, fields) -> tuple[dict, TrainConfig]:
    if preset is not None and preset not in PRESETS:
        raise UserInputError(f"unknown preset {preset!r}; choose one of {', '.join(sorted(PRESETS))}")
    unknown = sorted(set(fields) - set(TRAIN_FIELDS) - set(MODEL_FIELDS))
    if unknown:
        raise UserInputError(f"unknown training or model setting(s): {', '.join(unknown)}")
    recipe = PRESETS[preset] if preset else None
    if picked is not None:  # a preset and the pick never both apply
        recipe = picked
    given_model = {**dict(model or {}), **{k: v for k, v in fields.items() if k in MODEL_FIELDS}}
    given_train = {k: v for k, v in fields.items() if k in TRAIN_FIELDS}
    if tcfg is not None:
        base = dataclasses.asdict(tcfg)
    else:  # the conditional schedule, under the preset's
        conditional = bool(given_train.get("conditional"))
        base = {**(CONDITIONAL.train if conditional else {}), **(recipe.train if recipe else {})}
    train_cfg = TrainConfig(**{**base, **given_train})
    model_fields = {**(recipe.model if recipe else {}), **given_model}
    if train_cfg.conditional:
        model_fields = {**CONDITIONAL.model, **(recipe.model if recipe else {}), **given_model}
    if model_fields.get("context_channels") and "refine_steps" not in given_model:
        model_fields.pop("refine_steps", None)  # refinement needs a decoder without a row context
    train_cfg.validate()
    train_cfg.record_data_source()
    return model_fields, train_cfg
