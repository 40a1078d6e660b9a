"""`vaectl eval` on a PyTorch checkpoint: the core's numpy scorer (vaectl/scoring.py) with torch callables."""

from __future__ import annotations

import numpy as np
import torch

from ..data import MNIST_SAMPLE, recorded_data_dir
from ..errors import UserInputError, arg
from ..models.checkpoint import load_model
from ..scoring import EvalReport, score
from .data import load_training_data


def eval_dataset(ckpt: dict, data_dir=None, dataset: str | None = None):
    """The data to score: what the user named, else what the checkpoint was trained on."""
    cfg, train = ckpt["config"], ckpt.get("train", {})
    if data_dir is None and dataset is None:
        if train.get("data"):  # a --data run: its folder, recorded as an absolute path
            data_dir = recorded_data_dir(train, ckpt.get("path", "the checkpoint"))
        else:
            dataset = train.get("dataset")
    ds = load_training_data(data_dir, dataset or MNIST_SAMPLE, None, None, train.get("cache_dir"), train.get("seed", 0))
    if tuple(ds.image_shape) != cfg.image_shape:
        raise UserInputError(
            f"dataset {ds.name!r} has images of shape {tuple(ds.image_shape)}, but the model expects {cfg.image_shape}"
        )
    return ds


def evaluate_checkpoint(
    source,
    *,
    data_dir=None,
    dataset=None,
    k: int = 1000,
    n: int | None = None,
    seed: int = 0,
    binarize: bool = False,
    last: bool = False,
    progress=None,
) -> EvalReport:
    if k < 1:
        raise UserInputError(f"{arg('k')} must be at least 1, got {k}")
    if n is not None and n < 1:
        raise UserInputError(f"{arg('n')} must be at least 1, got {n}")
    model, ckpt = load_model(source, last=last)
    cfg = ckpt["config"]
    ds = eval_dataset(ckpt, data_dir, dataset)
    images = ds.test[:n]
    labels = None
    if cfg.num_classes:
        if ds.test_labels is None:
            raise UserInputError("this conditional model needs labelled evaluation data")
        labels = ds.test_labels[:n]

    def as_label(y):
        return None if y is None else torch.from_numpy(np.asarray(y, dtype=np.int64))

    @torch.no_grad()
    def encode(x, y):
        mu, logvar = model.encoder(torch.from_numpy(x), as_label(y))
        if not cfg.row_context:
            return mu.numpy(), logvar.numpy()
        return mu.numpy(), logvar.numpy(), model.decoder.context(torch.from_numpy(x)).numpy()

    @torch.no_grad()
    def decode(z, y, context=None):
        if context is None:
            return torch.sigmoid(model.decoder(torch.from_numpy(z), as_label(y))).numpy()
        return torch.sigmoid(
            model.decoder.base_logits(torch.from_numpy(z), as_label(y)) + torch.from_numpy(context)
        ).numpy()

    report = score(
        encode,
        decode,
        images,
        labels,
        likelihood=cfg.likelihood,
        row_context=cfg.row_context,
        k=k,
        seed=seed,
        binarize=binarize,
        progress=progress,
    )
    report.dataset, report.split, report.split_size = ds.name, ds.test_split, len(ds.test)  # what was scored
    return report
