"""A run directory's files: config.json, metrics.jsonl, the per-epoch grids (checkpoints: models/checkpoint.py);
whether a new run may use the directory (files.claim_out_dir: an earlier run there is refused, or cleared with
overwrite)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch

from ..contract import GRAPH_FILES
from ..errors import UserInputError, arg
from ..files import (
    Output,
    append_text,
    atomic_write_bytes,
    claim_out_dir,
    prepare_out_dir,
    remove_stale_temp_files,
    save_grid,
    to_uint8_images,
)
from .runtime import any_rank

RUN_FILES = ("last.pt", "best.pt", "config.json", "metrics.jsonl")
GRID_PATTERNS = ("samples_epoch*.png", "recon_epoch*.png")  # in images/
# A run's files; graphs exported into a subdirectory (`vaectl export RUN --out RUN/onnx`) belong to the run too.
RUN_OUTPUT = Output(
    "a training run",
    (
        *(re.escape(name) for name in RUN_FILES),
        r"images/(samples|recon)_epoch\d+\.png",
        *(r"[^/]+/" + re.escape(name) for name in GRAPH_FILES),
    ),
)


def prepare_run_dir(out: Path, create: bool = True, *, new_run: bool = False, overwrite: bool = False) -> None:
    """Check `out` (every DDP rank does, so none waits on a rank 0 that failed); create it on the main process.

    A new run claims the directory under the one overwrite rule (files.claim_out_dir): a directory that holds
    an earlier run is refused (nothing is touched), and overwrite=True clears that run's files first (on the
    main process). Touches nothing before every check has passed.
    """
    if not new_run:  # --resume: the run's own directory
        if out.exists() and not out.is_dir():
            raise UserInputError(f"{out}: exists and is not a directory")
        claim = None
    else:
        claim = claim_out_dir(
            out,
            RUN_OUTPUT,
            overwrite=overwrite,
            param="out",
            instead=f"continue it with {arg('resume', out)}",
            parents=True,
            create=create,
        )
    if not create:
        return
    if claim is None:
        prepare_out_dir(out, parents=True, what="run")
    else:
        claim.clear()
    prepare_out_dir(out / "images", what="run's images")
    remove_stale_temp_files(out, RUN_FILES)
    remove_stale_temp_files(out / "images", ["*_epoch*.png"])


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
            return "no checkpoint was saved yet; free space and start the run again with --overwrite"
        return f"last.pt {self.when} is intact; free space, then: vaectl train --resume {self.out}"


def check_run_dir(out: Path, procs, *, new_run: bool, overwrite: bool) -> None:
    """prepare_run_dir on every process; with DDP, all stop when any refused (checked before rank 0 writes)."""
    try:
        prepare_run_dir(out, create=procs.main, new_run=new_run, overwrite=overwrite)
        refused = None
    except UserInputError as e:
        refused = e
    if procs.ddp:
        (any_refused,) = any_rank([refused is not None], procs.device)
        if any_refused and refused is None:
            raise UserInputError(f"{out}: another process refused the run directory")
    if refused is not None:
        raise refused


def write_config(out: Path, record: dict) -> None:
    atomic_write_bytes(out / "config.json", json.dumps(record, indent=2).encode())


def append_metrics(out: Path, record: dict) -> None:
    append_text(out / "metrics.jsonl", json.dumps(record) + "\n")


def trim_metrics(path: Path, epochs_done: int) -> None:
    """On resume: keep the records of the epochs the checkpoint holds, drop a torn last line or records of a
    redone epoch (a crash between appending the record and saving last.pt)."""
    if not path.is_file():
        return
    kept = []
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict) and isinstance(record.get("epoch"), int) and record["epoch"] <= epochs_done:
            kept.append(line + "\n")
    atomic_write_bytes(path, "".join(kept).encode())


@torch.no_grad()
def write_grids(model, out: Path, epoch: int, x_val: torch.Tensor, y_val, z_fixed: torch.Tensor) -> None:
    """images/samples_epochNNN.png (64 draws; one row per class for a conditional model) and
    images/recon_epochNNN.png (8 validation images above their reconstructions)."""
    cfg = model.config
    y_samples = None
    if cfg.conditional:  # one row per class (up to 8 per row)
        y_samples = torch.arange(len(z_fixed), device=z_fixed.device) // 8 % cfg.num_classes
    guidance = torch.tensor([cfg.guidance], device=z_fixed.device) if cfg.guided else None  # the default weight
    samples = torch.sigmoid(model.decoder(z_fixed, y_samples, guidance=guidance)).float().cpu().numpy()  # (64, C, H, W)
    save_grid(out / "images" / f"samples_epoch{epoch:03d}.png", to_uint8_images(samples), nrow=8)
    x = x_val[:8].float() / 255
    recon = model.reconstruct(x, None if y_val is None else y_val[:8]).float()
    both = torch.cat([x, recon]).cpu().numpy()  # originals above reconstructions
    save_grid(out / "images" / f"recon_epoch{epoch:03d}.png", to_uint8_images(both), nrow=len(x))
