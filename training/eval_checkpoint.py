"""`vaectl eval` on a PyTorch checkpoint: the core's numpy scorer (vaectl/scoring.py) with torch callables."""

from __future__ import annotations

from ..data import warn_notes
from ..errors import UserInputError, arg
from ..models.checkpoint import Checkpoint
from ..scoring import IWAE_K, EvalReport, score


def evaluate_checkpoint(
    source,
    *,
    data_dir=None,
    dataset=None,
    k: int = IWAE_K,
    n: int | None = None,
    seed: int = 0,
    binarize: bool = False,
    last: bool = False,
    progress=None,
    prior: str | None = None,
    log=None,
) -> EvalReport:
    """Score a checkpoint's test images (the run's own data, else `data_dir` or `dataset`) under N(0, I) and
    under the prior `vaectl export` would fit to it (`prior`: export's --prior, normal, gmm or gmm:K [gmm when
    the training data is at hand]; the report names it); `log` gets a line when none could be fitted."""
    if k < 1:
        raise UserInputError(f"{arg('k')} must be at least 1, got {k}")
    if n is not None and n < 1:
        raise UserInputError(f"{arg('n')} must be at least 1, got {n}")
    ckpt = Checkpoint.load(source, last=last)
    cfg = ckpt.config
    plan = ckpt.prior_plan(prior)  # the fit export makes: the run's own training data, the same seed
    ds = ckpt.training_data(data_dir, dataset)
    warn_notes(ds)  # a resized folder, skipped files, held-out images that are copies of training images
    images = ds.test[:n]
    labels = ds.test_labels[:n] if cfg.num_classes else None
    encode = ckpt.numpy_encode()
    fitted, line = plan.fit()
    if fitted is None and log is not None:
        log(f"{line}: scoring under N(0, I) only")
    from ..prior import MixturePrior

    report = score(
        encode,
        ckpt.numpy_decode(),
        images,
        labels,
        likelihood=cfg.likelihood,
        row_context=cfg.row_context,
        k=k,
        seed=seed,
        binarize=binarize,
        progress=progress,
        prior=None if fitted is None else MixturePrior(fitted),
        log_sigma=ckpt.model().trained_config().log_sigma,
    )
    report.dataset, report.split, report.split_size = ds.name, ds.test_split, len(ds.test)  # what was scored
    return report
