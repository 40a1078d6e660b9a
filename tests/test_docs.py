"""The docs run: every shell block in README.md and docs/*.md fenced as ```bash test is run, page by page, so a
command the docs show cannot drift from the CLI.

A page's marked blocks run in order as one bash script (set -euo pipefail) in an empty directory, so a later
block may use what an earlier one made. On tiny settings: `train` at 1 epoch (a resumed run: 2), `eval` at k = 4
on 100 images, `generate` at most 64 images; the set-up step of the first screen (venv, pip install) is dropped.
Anything else runs as written. `vaectl` in the script is a small client that hands its arguments to this test
process, which runs them through the same click entry point as the installed command (`vaectl.cli.main`) and
sends back exit code, stdout and stderr: torch is imported once, not once per command.
"""

from __future__ import annotations

import json
import os
import re
import socketserver
import subprocess
import sys
import time
import traceback
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

SHIM = """
import json, os, socket, sys

with socket.socket(socket.AF_UNIX) as conn:
    conn.connect(os.environ["VAECTL_DOCS_SOCKET"])
    conn.sendall(json.dumps({"argv": sys.argv[1:], "cwd": os.getcwd()}).encode() + b"\\n")
    reply = json.loads(conn.makefile("rb").readline())
sys.stdout.write(reply["stdout"])
sys.stderr.write(reply["stderr"])
sys.exit(reply["code"])
"""


def tiny(args: list[str]) -> list[str]:
    """The command on tiny settings (see the module's docstring)."""

    def setting(args, flag, value):
        if flag in args:
            i = args.index(flag)
            return args[: i + 1] + [value] + args[i + 2 :]
        return args + [flag, value]

    command = args[0] if args else ""
    if command == "train":
        return setting(args, "--epochs", "2" if "--resume" in args else "1")
    if command == "eval":
        return setting(setting(args, "--k", "4"), "-n", "100")
    if command == "generate" and "-n" in args and int(args[args.index("-n") + 1]) > 64:
        return setting(args, "-n", "64")
    if command == "explore" and "--site" not in args:
        raise AssertionError("`vaectl explore` without --site serves until Ctrl-C; do not mark it runnable")
    return args


def run_vaectl(argv: list[str], cwd: str) -> dict:
    """`vaectl ARGV` in `cwd` through the click entry point, as the installed script runs it."""
    from click.testing import CliRunner

    from vaectl.cli import main

    here = os.getcwd()
    os.chdir(cwd)
    try:
        result = CliRunner().invoke(main, tiny(argv), prog_name="vaectl")
    except AssertionError as e:
        return {"code": 1, "stdout": "", "stderr": f"docs test: {e}\n"}
    finally:
        os.chdir(here)
    stderr = result.stderr
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        stderr += "".join(traceback.format_exception(*result.exc_info))
    return {"code": result.exit_code, "stdout": result.stdout, "stderr": stderr}


class Handler(socketserver.StreamRequestHandler):
    def handle(self):
        request = json.loads(self.rfile.readline())
        self.wfile.write(json.dumps(run_vaectl(request["argv"], request["cwd"])).encode() + b"\n")


def blocks(page: Path) -> list[str]:
    return BLOCK.findall(page.read_text())


def script(page: Path) -> str:
    text = "\n".join(blocks(page))
    for pattern, replacement in SUBSTITUTIONS:
        text = pattern.sub(replacement, text)
    return "set -euo pipefail\nmkdir -p docs\n" + text


# Pages whose blocks train several full-size models (the default, the conditional and the quality recipes, each
# for its epoch, then exported with the prior fit): minutes, so the slow tier runs them.
LONG_PAGES = ("docs/tutorial.md", "docs/training.md")


@pytest.mark.parametrize(
    "page",
    [
        pytest.param(p, marks=[pytest.mark.slow] if str(p.relative_to(REPO)) in LONG_PAGES else [])
        for p in PAGES
        if blocks(p)
    ],
    ids=lambda p: str(p.relative_to(REPO)),
)
def test_the_pages_marked_commands_run(page, tmp_path):
    bin_dir, work = tmp_path / "bin", tmp_path / "work"
    bin_dir.mkdir()
    work.mkdir()
    shim = bin_dir / "vaectl"
    shim.write_text(f"#!{sys.executable} -S\n{SHIM}")
    shim.chmod(0o755)
    sock = tmp_path / "vaectl.sock"
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "VAECTL_DOCS_SOCKET": str(sock)}
    with socketserver.UnixStreamServer(str(sock), Handler) as server, open(tmp_path / "out", "w+") as out:
        server.timeout = 0.1
        proc = subprocess.Popen(["bash", "-c", script(page)], cwd=work, env=env, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 600
        while proc.poll() is None:  # serve the script's vaectl commands, in this (the main) thread, until it ends
            server.handle_request()
            if time.monotonic() > deadline:
                proc.kill()
                pytest.fail(f"{page.name}: the marked blocks ran for more than 10 minutes")
        out.seek(0)
        output = out.read()
    assert proc.returncode == 0, f"{page.name}: a marked block failed\n{output}"
    assert "Traceback" not in output, output


def test_every_guide_has_runnable_blocks():
    for name in GUIDES:
        assert blocks(REPO / name), f"{name} has no ```{MARK} block"


def test_tiny_settings_and_the_dropped_setup_step():
    """What the run changes from the pages: settings, and the first screen's venv step (the page keeps it)."""
    assert tiny(["train", "--out", "r"]) == ["train", "--out", "r", "--epochs", "1"]
    assert tiny(["train", "--resume", "r", "--epochs", "30"]) == ["train", "--resume", "r", "--epochs", "2"]
    assert tiny(["eval", "r", "--k", "1000"]) == ["eval", "r", "--k", "4", "-n", "100"]
    assert tiny(["generate", "-n", "100000", "--out-dir", "s"]) == ["generate", "-n", "64", "--out-dir", "s"]
    assert tiny(["info", "d.onnx"]) == ["info", "d.onnx"]
    first = blocks(REPO / "README.md")[0]
    assert first.startswith("python3 -m venv .venv && .venv/bin/pip install -e '.[train]' && .venv/bin/vaectl train")
    assert script(REPO / "README.md").splitlines()[2].startswith("vaectl train --out runs/demo && vaectl export")


def test_the_readmes_test_command_is_the_one_ci_runs():
    """The first screen's second command sets up and runs exactly the fast tier's test command of .ci/run."""
    ci = (REPO / ".ci" / "run").read_text()
    ci_test = ci.split('echo "== fast tier', 1)[1].splitlines()[1].strip()
    readme = REPO.joinpath("README.md").read_text()
    setup = re.search(r"^```bash\n(apt-get update && .*)\n```$", readme, re.M)
    assert setup is not None, "the README's test command"
    assert "pytest" in ci_test and setup.group(1).endswith(f"&& {ci_test}"), (ci_test, setup.group(1))
