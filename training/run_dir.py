"""A run directory's files: config.json, metrics.jsonl, the per-epoch grids (checkpoints: models/checkpoint.py;
the names: layout.py); whether a new run may use the directory (files.claim_out_dir: an earlier run there is
refused, or cleared with overwrite), checked before anything is loaded and created only once the run is ready
to write."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import numpy as np
import torch

from .. import layout
from ..errors import UserInputError, arg
from ..files import (
    Claim,
    Output,
    append_text,
    atomic_write_bytes,
    claim_out_dir,
    make_grid,
    make_out_dir,
    remove_stale_temp_files,
    save_png,
    to_uint8_images,
)
from .metrics import epoch_records
from .runtime import any_rank

# A run's files (layout.py names them); graphs exported into a subdirectory of it (RUN/onnx, where
# `vaectl export RUN` writes them) belong to the run too.
RUN_OUTPUT = Output("a training run", layout.RUN_FILE_PATTERNS)


def make_run_dir(out: Path, claim: Claim | None) -> list[Path]:
    """Create `out` (main process, once the data and the model are ready: a run that fails before leaves no
    directory behind), clear the earlier run's files (overwrite), sweep temp files a crash left.
    Returns the directories it created, for remove_if_empty."""
    created = [p for p in (*reversed(out.parents), out) if not p.exists()]
    make_out_dir(out, parents=True, what="run")
    if claim is not None:
        claim.clear()
    images = out / layout.IMAGES
    created += [images] if not images.exists() else []
    make_out_dir(images, what="run's images")
    remove_stale_temp_files(out, layout.RUN_FILES)
    remove_stale_temp_files(images, ["*_epoch*.png"])
    return created


def remove_if_empty(directories: list[Path]) -> None:
    """Remove the directories a failed run created, deepest first, where they are still empty."""
    for d in sorted(directories, key=lambda p: len(p.parts), reverse=True):
        with contextlib.suppress(OSError):  # rmdir only succeeds when empty: never removes anything else
            d.rmdir()


class SavedCheckpoint:
    """Which last.pt is on disk, for the one line a failed write ends with."""

    def __init__(self):
        self.out, self.when = None, None

    def last_pt(self, out: Path, progress) -> None:
        self.out = out
        if progress.step_in_epoch:
            self.when = f"at epoch {progress.epoch + 1}, step {progress.step_in_epoch}"
        else:
            self.when = f"from epoch {progress.epoch}" if progress.epoch else "from before the first epoch"

    def survivor(self) -> str:
        if self.out is None:
            return f"no checkpoint was saved yet; free space and start the run again with {arg('overwrite', True)}"
        return f"last.pt {self.when} is intact; free space, then: vaectl train --resume {self.out}"


def claim_run_dir(out: Path, procs, *, new_run: bool, overwrite: bool) -> Claim | None:
    """Whether a run may write into `out`, decided on every process before rank 0 writes; touches nothing. A new
    run claims the directory under the one overwrite rule (files.claim_out_dir): one that holds an earlier run is
    refused unless overwrite=True, and the claim's clear() removes that run's files later (make_run_dir).
    --resume (new_run=False) uses its own run. With DDP, all processes stop when any refused."""
    try:
        claim = _claim(out, new_run, overwrite)
        refused = None
    except UserInputError as e:
        claim, refused = None, e
    if procs.ddp:
        (any_refused,) = any_rank([refused is not None], procs.device)
        if any_refused and refused is None:
            raise UserInputError(f"{out}: another process refused the run directory")
    if refused is not None:
        raise refused
    return claim


def _claim(out: Path, new_run: bool, overwrite: bool) -> Claim | None:
    if not new_run:
        if out.exists() and not out.is_dir():
            raise UserInputError(f"{out}: exists and is not a directory")
        return None
    return claim_out_dir(
        out,
        RUN_OUTPUT,
        overwrite=overwrite,
        param="out",
        instead=f"continue it with {arg('resume', out)}",
        create=False,
    )


def write_config(out: Path, record: dict) -> None:
    atomic_write_bytes(out / layout.CONFIG, json.dumps(record, indent=2).encode())


def append_metrics(out: Path, record: dict) -> None:
    append_text(out / layout.METRICS, json.dumps(record) + "\n")


def trim_metrics(path: Path, epochs_done: int) -> None:
    """On resume: keep the records of the epochs the checkpoint holds, drop a torn last line or records of a
    redone epoch (a crash between appending the record and saving last.pt)."""
    if not path.is_file():
        return
    kept = [line + "\n" for line, record in epoch_records(path) if record["epoch"] <= epochs_done]
    atomic_write_bytes(path, "".join(kept).encode())


def sample_grid_labels(num_classes: int, n: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Which latents and classes the sample grid of a conditional model decodes: one row per class, every class
    shown, the same latents in each column (so a column is one style across the classes). Up to 8 columns, fewer
    when there are many classes (the grid stays about 256 images). Returns (latent index, class, columns)."""
    cols = max(1, min(8, n, 256 // num_classes))
    z_index = np.tile(np.arange(cols), num_classes)  # (classes * cols,)
    labels = np.repeat(np.arange(num_classes), cols)  # (classes * cols,): row r is class r
    return z_index, labels, cols


@torch.no_grad()
def grid_images(model, x_val: torch.Tensor, y_val, z_fixed: torch.Tensor) -> dict[str, np.ndarray]:
    """The per-epoch grids as uint8 images, by kind: "samples" (64 draws from z_fixed, 8 a row; for a
    conditional model one row per class, sample_grid_labels) and "recon" (8 validation images above their
    reconstructions through the encoder's mu). One copy to the host.

    The reconstructions skip the refinement that export and `reconstruct` add: it is an inference step, not
    part of what trains, and its 20 decoder passes with gradients took about 5 % of a 64 px resnet's epoch."""
    cfg = model.config
    y_samples, z, cols = None, z_fixed, 8
    if cfg.conditional:
        z_index, labels, cols = sample_grid_labels(cfg.num_classes, len(z_fixed))
        z = z_fixed[torch.from_numpy(z_index).to(z_fixed.device)]  # (classes * cols, D)
        y_samples = torch.from_numpy(labels).to(z_fixed.device)
    guidance = torch.tensor([cfg.guidance], device=z_fixed.device) if cfg.guided else None  # the default weight
    samples = torch.sigmoid(model.decoder(z, y_samples, guidance=guidance)).float()  # (N, C, H, W)
    x = x_val[:8].float() / 255
    recon = model.reconstruct(x, None if y_val is None else y_val[:8], refine_steps=0).float()  # (8, C, H, W)
    both = torch.cat([samples, x, recon]).cpu().numpy()  # (N + 16, C, H, W): samples, originals, reconstructions
    return {
        "samples": make_grid(to_uint8_images(both[: len(samples)]), nrow=cols),
        "recon": make_grid(to_uint8_images(both[len(samples) :]), nrow=len(x)),  # originals above reconstructions
    }


def write_grids(out: Path, epoch: int, grids: dict[str, np.ndarray]) -> None:
    """images/samples_epochNNN.png and images/recon_epochNNN.png."""
    for kind, image in grids.items():
        save_png(out / layout.IMAGES / layout.grid_name(kind, epoch), image)
