"""Run mypy on the files pyproject.toml's [tool.mypy] lists, as modules of the package `vaectl`.

    python tools/typecheck.py
The repository root is the package (package-dir = {"vaectl" = "."}), so mypy would name the modules after
the checkout's folder, and a clone in a folder that is no valid package name ("vaectl-main", "ci-check")
stops it. This runs mypy in a temporary folder where the root is linked as `vaectl`.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

REPO = Path(__file__).resolve().parents[1]


def main() -> int:
    config = REPO / "pyproject.toml"
    files = tomllib.loads(config.read_text())["tool"]["mypy"]["files"]
    with tempfile.TemporaryDirectory(prefix="vaectl-typecheck-") as tmp:
        (Path(tmp) / "vaectl").symlink_to(REPO, target_is_directory=True)
        command = [sys.executable, "-m", "mypy", "--config-file", str(config), *(f"vaectl/{f}" for f in files)]
        return subprocess.call(command, cwd=tmp)


if __name__ == "__main__":
    sys.exit(main())
