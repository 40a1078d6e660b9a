"""A run directory's files: config.json, metrics.jsonl, the per-epoch grids (checkpoints: models/checkpoint.py)."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from ..errors import UserInputError
from ..files import atomic_write_bytes, prepare_out_dir, remove_stale_temp_files, save_grid, to_uint8_images

RUN_FILES = ("last.pt", "best.pt", "config.json", "metrics.jsonl")


def prepare_run_dir(out: Path, create: bool = True) -> None:
    """Check `out` (every DDP rank does, so none waits on a rank 0 that failed); create it on the main process."""
    if out.exists() and not out.is_dir():
        raise UserInputError(f"{out}: exists and is not a directory")
    if not create:
        return
    prepare_out_dir(out, parents=True, what="run")
    prepare_out_dir(out / "images", what="run's images")
    remove_stale_temp_files(out, RUN_FILES)
    remove_stale_temp_files(out / "images", ["*_epoch*.png"])


def write_config(out: Path, record: dict) -> None:
    atomic_write_bytes(out / "config.json", json.dumps(record, indent=2).encode())


def append_metrics(out: Path, record: dict) -> None:
    with open(out / "metrics.jsonl", "a") as f:
        f.write(json.dumps(record) + "\n")


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
