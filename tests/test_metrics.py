"""vaectl.training.read_metrics: a run's metrics.jsonl as the per-epoch records training wrote."""

from __future__ import annotations

import json

import pytest

from vaectl.errors import UserInputError
from vaectl.training import read_metrics


def test_a_runs_records_are_what_training_logged(tiny_mlp_run):
    records = read_metrics(tiny_mlp_run)
    assert [r["epoch"] for r in records] == [1, 2]
    assert records == [json.loads(line) for line in (tiny_mlp_run / "metrics.jsonl").read_text().splitlines()]
    for r in records:  # the loss the log prints is reconstruction + beta * KL
        assert r["val_loss"] == pytest.approx(r["val_recon"] + r["beta"] * r["val_kl"], rel=1e-6)
        assert len(r["kl_per_dim"]) == 4 and r["posterior_var"] > 0
    assert read_metrics(tiny_mlp_run / "metrics.jsonl") == records


def test_a_torn_last_line_and_foreign_lines_are_skipped(tmp_path):
    lines = [json.dumps({"epoch": 1, "val_loss": 3.0}), "[1, 2]", json.dumps({"epoch": 2, "val_loss": 2.5}), '{"epo']
    (tmp_path / "metrics.jsonl").write_text("\n".join(lines))
    assert read_metrics(tmp_path) == [{"epoch": 1, "val_loss": 3.0}, {"epoch": 2, "val_loss": 2.5}]


def test_a_directory_without_metrics_says_so(tmp_path):
    with pytest.raises(UserInputError, match="metrics.jsonl: no such file"):
        read_metrics(tmp_path)
