"""`vaectl eval` on a PyTorch checkpoint: the core's numpy scorer (vaectl/scoring.py) with torch callables."""

from __future__ import annotations

import numpy as np
import torch

from ..data import MNIST_SAMPLE, recorded_data_dir
from ..data.sources import load_training_data
from ..errors import UserInputError, arg
from ..models.checkpoint import load_model
from ..scoring import EvalReport, score


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
    prior: str | None = None,
    log=None,
) -> EvalReport:
    """Score a checkpoint under N(0, I) and under the prior `vaectl export` would fit to it (`prior`: export's
    --prior, normal, gmm or gmm:K [gmm when the training data is at hand]; the report names it); `log` gets a
    line when none could be fitted."""
    from ..prior.fit import parse_choice

    choice = parse_choice(prior)
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

    fitted = _fitted_prior(encode, cfg, ckpt, choice, log)
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
        prior=fitted,
        log_sigma=model.trained_config().log_sigma,
    )
    report.dataset, report.split, report.split_size = ds.name, ds.test_split, len(ds.test)  # what was scored
    return report


def _fitted_prior(encode, cfg, ckpt: dict, choice, log):
    """The mixture export would write into the decoder (the same fit: same data, same seed), or None."""
    from ..prior import MixturePrior
    from ..prior.fit import fit_prior, training_data

    if choice.kind == "normal":
        return None
    try:
        ds = training_data(ckpt)
    except UserInputError as e:
        if choice.explicit:
            raise UserInputError(f"cannot fit the prior: {e}") from None
        if log is not None:
            log(f"prior: none fitted, the training data is not at hand ({e}); scoring under N(0, I) only")
        return None
    spec, _ = fit_prior(encode, cfg, ds, choice)
    return MixturePrior(spec)
