"""The docs run: every shell block in README.md and docs/*.md fenced as ```bash test is run, page by page, so a
command the docs show cannot drift from the CLI.

A page's marked blocks run in order as one bash script (set -euo pipefail) in an empty directory, so a later
block may use what an earlier one made. On tiny settings: `vaectl` there is a shim that runs this checkout's
vaectl with `train` at 1 epoch (a resumed run: 2), `eval` at k = 4 on 100 images and `generate` at most 64
images; the set-up step of the first screen (venv, pip install) is dropped. Anything else runs as written.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
MARK = "bash test"
BLOCK = re.compile(r"^```" + MARK + r"[ \t]*\n(.*?)^```[ \t]*$", re.M | re.S)
# what a fresh machine needs first and a test run already has
SUBSTITUTIONS = [
    (re.compile(r"python3 -m venv \.venv && \.venv/bin/pip install -e '\.\[[a-z,]+\]' && "), ""),
    (re.compile(r"\.venv/bin/vaectl\b"), "vaectl"),
]
# every page a user learns a task from shows its main commands in a runnable block
GUIDES = [
    "README.md",
    "docs/training.md",
    "docs/export.md",
    "docs/inference.md",
    "docs/explore.md",
    "docs/conditional.md",
    "docs/evaluation.md",
    "docs/doctor.md",
    "docs/reliability.md",
    "docs/tutorial.md",
]

SHIM = '''
import sys


def setting(args, flag, value):
    """args with `flag` set to `value` (replaced where given, else appended)."""
    if flag in args:
        i = args.index(flag)
        return args[: i + 1] + [value] + args[i + 2 :]
    return args + [flag, value]


args = sys.argv[1:]
command = args[0] if args else ""
if command == "train":
    args = setting(args, "--epochs", "2" if "--resume" in args else "1")
elif command == "eval":
    args = setting(setting(args, "--k", "4"), "--n", "100")
elif command == "generate" and "-n" in args and int(args[args.index("-n") + 1]) > 64:
    args = setting(args, "-n", "64")
elif command == "explore" and "--site" not in args:
    sys.exit("docs test: `vaectl explore` without --site serves until Ctrl-C; do not mark it runnable")
from vaectl.cli import main

main(args, prog_name="vaectl")
'''


def blocks(page: Path) -> list[str]:
    return BLOCK.findall(page.read_text())


def script(page: Path) -> str:
    text = "\n".join(blocks(page))
    for pattern, replacement in SUBSTITUTIONS:
        text = pattern.sub(replacement, text)
    return "set -euo pipefail\nmkdir -p docs\n" + text


@pytest.mark.parametrize("page", [p for p in PAGES if blocks(p)], ids=lambda p: str(p.relative_to(REPO)))
def test_the_pages_marked_commands_run(page, tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    shim = bin_dir / "vaectl"
    shim.write_text(f"#!{sys.executable}\n{SHIM}")
    shim.chmod(0o755)
    work = tmp_path / "work"
    work.mkdir()
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "PYTHONFAULTHANDLER": "1"}
    result = subprocess.run(
        ["bash", "-c", script(page)], cwd=work, env=env, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, f"{page.name}: a marked block failed\n{result.stdout}\n{result.stderr}"
    assert "Traceback" not in result.stderr, result.stderr


def test_every_guide_has_runnable_blocks():
    for name in GUIDES:
        assert blocks(REPO / name), f"{name} has no ```{MARK} block"


def test_the_shim_makes_settings_tiny():
    """The substitutions a reader never sees: the first screen keeps its venv line in the page, not in the run."""
    first = blocks(REPO / "README.md")[0]
    assert first.startswith("python3 -m venv .venv && .venv/bin/pip install -e '.[train]' && ")
    assert "venv" not in script(REPO / "README.md").split("\n", 2)[2].splitlines()[0]
