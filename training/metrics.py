"""Reading a run's metrics.jsonl (torch-free): one record per finished epoch, as the training log printed it."""

from __future__ import annotations

import json
from pathlib import Path

from .. import layout
from ..errors import UserInputError


def read_metrics(run) -> list[dict]:
    """The per-epoch records of a run directory (or of a metrics.jsonl path), in epoch order.

    Keys (docs/training.md describes each): epoch, step, lr, beta, train_loss/recon/kl/weighted_kl,
    val_loss/recon/kl/weighted_kl (nats per image), kl_per_dim, informative_dims, active_units, posterior_var
    (mean sigma^2 of q(z|x) on the validation images), seconds, images_per_sec.
    A torn last line (a run killed while writing it) is skipped, as a resumed run drops it."""
    path = Path(run)
    if path.is_dir():
        path = path / layout.METRICS
    if not path.is_file():
        raise UserInputError(f"{path}: no such file (a training run writes it after its first epoch)")
    return [record for _, record in epoch_records(path)]


def epoch_records(path: Path) -> list[tuple[str, dict]]:
    """(line, record) of each epoch record in a metrics.jsonl file; a torn or foreign line is skipped."""
    records = []
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict) and isinstance(record.get("epoch"), int):
            records.append((line, record))
    return records
