"""A run directory's files: config.json, metrics.jsonl, the per-epoch grids (checkpoints: models/checkpoint.py);
whether a new run may use the directory (an earlier run there is refused, or cleared with --overwrite)."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import torch

from ..contract import ROLES, VARIANTS
from ..errors import UserInputError
from ..files import (
    append_text,
    atomic_write_bytes,
    os_error_reason,
    prepare_out_dir,
    remove_stale_temp_files,
    save_grid,
    to_uint8_images,
)
from .runtime import any_rank

RUN_FILES = ("last.pt", "best.pt", "config.json", "metrics.jsonl")
GRID_PATTERNS = ("samples_epoch*.png", "recon_epoch*.png")  # in images/
# what `vaectl export RUN --out RUN/onnx` writes: a subdirectory holding these belongs to the run
ROLES_ONNX = tuple(f"{role}.onnx" for role in ROLES)
GRAPH_FILES = (*ROLES_ONNX, *(f"decoder.{v}.onnx" for v in VARIANTS if v != "fp32"))


def previous_run(out: Path) -> list[Path]:
    """The files of an earlier run in `out` that vaectl wrote: checkpoints, config.json, metrics.jsonl, the
    epoch grids, and graphs exported into a subdirectory. Nothing else counts (and nothing else is removed)."""
    if not out.is_dir():
        return []
    found = [out / name for name in RUN_FILES if (out / name).is_file()]
    if (out / "images").is_dir():
        found += sorted(p for pattern in GRID_PATTERNS for p in (out / "images").glob(pattern) if p.is_file())
    for sub in sorted(p for p in out.iterdir() if p.is_dir() and p.name != "images"):
        if any((sub / name).is_file() for name in ROLES_ONNX):
            found += [sub / name for name in GRAPH_FILES if (sub / name).is_file()]
    return found


def _summary(out: Path, files: list[Path]) -> str:
    """'best.pt, last.pt, config.json, 4 grids in images/, onnx/': the files of a run, briefly."""
    top = [p.name for p in files if p.parent == out]
    grids = sum(p.parent == out / "images" for p in files)
    subdirs = sorted({p.parent.name + "/" for p in files if p.parent not in (out, out / "images")})
    return ", ".join(top + ([f"{grids} grid{'s' if grids > 1 else ''} in images/"] if grids else []) + subdirs)


def clear_previous_run(out: Path, files: list[Path], log) -> None:
    """--overwrite: delete exactly the run's files (and export subdirectories they leave empty); anything the
    user put there stays, and the log says so."""
    for path in files:
        try:
            path.unlink(missing_ok=True)
        except OSError as e:
            raise UserInputError(f"{path}: cannot remove it for --overwrite ({os_error_reason(e)})") from None
    for sub in {p.parent for p in files if p.parent != out}:
        remove_stale_temp_files(sub, ["*"])
        if sub != out / "images":
            with contextlib.suppress(OSError):  # rmdir only succeeds when empty: never removes the user's files
                sub.rmdir()
    kept = sorted(
        p.name + ("/" if p.is_dir() else "") for p in out.iterdir() if p.name != "images" and not p.name.startswith(".")
    )
    log(
        f"--overwrite: removed the previous run in {out} ({_summary(out, files)})"
        + (f"; kept what vaectl did not write: {', '.join(kept)}" if kept else "")
    )


def prepare_run_dir(
    out: Path, create: bool = True, *, new_run: bool = False, overwrite: bool = False, log=print
) -> None:
    """Check `out` (every DDP rank does, so none waits on a rank 0 that failed); create it on the main process.

    A new run refuses a directory that holds an earlier run (nothing is touched); overwrite=True clears
    that run's files first (on the main process). Touches nothing before every check has passed.
    """
    if out.exists() and not out.is_dir():
        raise UserInputError(f"{out}: exists and is not a directory")
    earlier = previous_run(out) if new_run else []
    if earlier and not overwrite:
        raise UserInputError(
            f"{out}: already holds a training run ({_summary(out, earlier)}); continue it with "
            f"--resume {out}, or start a new one there with --overwrite (deletes those files)"
        )
    if not create:
        return
    prepare_out_dir(out, parents=True, what="run")
    if earlier:
        clear_previous_run(out, earlier, log)
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


def check_run_dir(out: Path, procs, *, new_run: bool, overwrite: bool, log) -> None:
    """prepare_run_dir on every process; with DDP, all stop when any refused (checked before rank 0 writes)."""
    try:
        prepare_run_dir(out, create=procs.main, new_run=new_run, overwrite=overwrite, log=log)
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
