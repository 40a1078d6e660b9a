"""TensorBoard event files for `vaectl train --tensorboard` (needs the tensorboard package).

The main process writes them into the run directory itself, so `tensorboard --logdir runs/` lists each run
under its directory's name. The step axis counts epochs. Per epoch: every number of the metrics.jsonl record
as a scalar, the KL of each latent dimension as a scalar (and all of them as a histogram), and the epoch's
sample and reconstruction grids as images. A resumed run appends to the same directory: its writer starts
at the first epoch it trains and hides what an interrupted run had logged from there on (purge_step), so no
epoch appears twice.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .. import layout
from ..contract import INFORMATIVE_RULE
from ..errors import UserInputError, arg
from ..scoring import ACTIVE_UNIT_THRESHOLD

INSTALL = "pip install tensorboard"

# metrics.jsonl field -> TensorBoard tag (the group before the slash is the dashboard's section)
TAGS = {
    "train_loss": "loss/train_loss",
    "val_loss": "loss/val_loss",
    "train_recon": "loss/train_recon",
    "val_recon": "loss/val_recon",
    "train_kl": "loss/train_kl",
    "val_kl": "loss/val_kl",
    "train_weighted_kl": "loss/train_weighted_kl",
    "val_weighted_kl": "loss/val_weighted_kl",
    "val_bits_per_dim": "loss/val_bits_per_dim",
    "informative_dims": "latent/informative_dims",
    "active_units": "latent/active_units",
    "posterior_var": "latent/posterior_var",
    "lr": "schedule/lr",
    "beta": "schedule/beta",
    "step": "schedule/step",
    "images_per_sec": "speed/images_per_sec",
    "seconds": "speed/seconds",
}

ABOUT = f"""\
Written by `vaectl train --tensorboard`; the step axis counts epochs. The numbers are those of the run's
metrics.jsonl (docs/training.md describes each field).

| tag | what it is |
|---|---|
| loss/*_loss | negative ELBO per image: recon + weighted KL |
| loss/*_recon | reconstruction term, -log p(x given z) |
| loss/*_kl | KL(q(z given x) to N(0, I)), unweighted |
| loss/*_weighted_kl | beta x KL, the KL term as it enters the loss (train: the warm-up's beta of each step) |
| loss/val_bits_per_dim | the validation negative ELBO (beta 1) in bits per dimension (docs/evaluation.md) |
| latent/informative_dims | informative latent dimensions: {INFORMATIVE_RULE} |
| latent/active_units | Burda et al.'s active units: dimensions whose posterior mean varies over the validation images (variance above {ACTIVE_UNIT_THRESHOLD:g}) |
| latent/posterior_var | mean variance of q(z given x): collapses towards 0 when beta = 0 |
| kl_per_dim/zNN | mean KL of latent dimension NN on the validation images |
| schedule/lr, schedule/beta | learning rate and KL weight at the epoch's last step |
| speed/* | the epoch's training seconds and images per second |
| grids/samples, grids/recon | samples from 64 fixed latents; validation images above their reconstructions |
"""


def require_tensorboard() -> None:
    """One clear line (exit 2) before any work when the tensorboard package is missing."""
    try:
        import tensorboard  # noqa: F401
        from torch.utils.tensorboard import SummaryWriter  # noqa: F401
    except ImportError:
        raise UserInputError(
            f"{arg('tensorboard', True)} needs the tensorboard package: {INSTALL} (or pip install 'vaectl[tensorboard]')"
        ) from None


class TensorBoard:
    """The run's event writer on the main process when `on`; does nothing otherwise."""

    def __init__(self, out: Path, on: bool, first_epoch: int, resumed: bool):
        self.writer = None
        if on:
            from torch.utils.tensorboard import SummaryWriter

            first_file = not any(Path(out).glob(layout.TENSORBOARD_EVENTS))
            # purge_step: a resumed run hides events an interrupted one wrote at or after its first epoch
            self.writer = SummaryWriter(str(out), purge_step=first_epoch if resumed else None)
            if first_file:
                self.writer.add_text("about", ABOUT, 0)

    def log_epoch(self, record: dict, grids: dict[str, np.ndarray] | None) -> None:
        """Scalars, KL per dimension, and the grids (uint8 (H, W) or (H, W, 3)) of one epoch's record."""
        if self.writer is None:
            return
        epoch = record["epoch"]
        for field, value in record.items():
            if field != "epoch" and isinstance(value, (int, float)) and not isinstance(value, bool):
                self.writer.add_scalar(TAGS.get(field, f"metrics/{field}"), value, epoch)
        kl = record["kl_per_dim"]
        width = len(str(len(kl) - 1))
        for dim, value in enumerate(kl):
            self.writer.add_scalar(f"kl_per_dim/z{dim:0{width}d}", value, epoch)
        self.writer.add_histogram("latent/kl_per_dim", np.asarray(kl, dtype=np.float64), epoch)
        for kind, image in (grids or {}).items():
            self.writer.add_image(f"grids/{kind}", image, epoch, dataformats="HW" if image.ndim == 2 else "HWC")
        self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
