"""Print which of vaectl's parts import which: the layout's picture (docs/development.md).

    python tools/import_graph.py [REPO_DIR]
Reads the sources with `ast` (nothing is imported). A part is a subpackage (training, export, infer,
models, data, explore) or a top-level module; an edge A -> B means some module of A imports B, at the
top of a file or inside a function. `tests/test_layout.py` holds the rules these edges must keep.
"""

from __future__ import annotations

import ast
import sys
from collections import defaultdict
from pathlib import Path

SKIP = {"tests", "bench", "tools", ".venv", "build", "docs"}


def part_of(module: str) -> str:
    """vaectl.infer.sessions -> infer; vaectl.contract -> contract; vaectl -> vaectl (the package root)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "vaectl"


def is_module(repo: Path, dotted: str) -> bool:
    rel = Path(*dotted.split(".")[1:])
    return (repo / rel).with_suffix(".py").is_file() or (repo / rel / "__init__.py").is_file()


def imports(repo: Path) -> dict[str, set[str]]:
    """{part: the parts it imports}, over every .py file of the package."""
    edges: dict[str, set[str]] = defaultdict(set)
    for path in sorted(repo.rglob("*.py")):
        rel = path.relative_to(repo)
        if rel.parts[0] in SKIP:
            continue
        module = ".".join(("vaectl", *rel.with_suffix("").parts)).removesuffix(".__init__")
        package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                targets = [".".join(base + ([node.module] if node.module else []))]
                if not node.module:  # from . import x, y: modules, or names of the package itself
                    named = [".".join(base + [alias.name]) for alias in node.names]
                    targets = [t if is_module(repo, t) else ".".join(base) for t in named]
            elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("vaectl"):
                targets = [node.module]
            else:
                continue
            for target in targets:
                src, dst = part_of(module), part_of(target)
                if src != dst:
                    edges[src].add(dst)
    return edges


def main() -> None:
    repo = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).resolve().parents[1])
    edges = imports(repo)
    for src in sorted(edges):
        print(f"{src:<10} -> {', '.join(sorted(edges[src]))}")


if __name__ == "__main__":
    main()
