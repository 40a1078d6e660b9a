"""The bench/ scripts print figures and are not run by the suite; this checks they still import and parse."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"


@pytest.mark.parametrize("script", ["train_speed.py", "infer_speed.py", "quality.py", "conditional.py"])
def test_bench_script_imports_and_shows_help(script):
    # --help runs every top-level import (vaectl internals the scripts reach into) before argparse exits
    result = subprocess.run([sys.executable, str(BENCH / script), "--help"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage:")
