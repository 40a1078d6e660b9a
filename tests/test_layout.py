"""The layout's rules, read from the import statements (tools/import_graph.py): three siblings over a core."""

from __future__ import annotations

import importlib.util
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("import_graph", REPO / "tools" / "import_graph.py")
import_graph = importlib.util.module_from_spec(spec)
spec.loader.exec_module(import_graph)

SIBLINGS = {"training", "export", "infer"}
CORE = {"contract", "scoring", "data", "files", "errors"}


def test_training_export_and_infer_do_not_import_each_other():
    edges = import_graph.imports(REPO)
    for part in SIBLINGS:
        assert not edges.get(part, set()) & (SIBLINGS - {part}), f"{part} imports {edges[part] & SIBLINGS}"


def test_the_core_imports_only_the_core_and_the_torch_free_model_config():
    edges = import_graph.imports(REPO)
    for part in CORE:
        assert edges.get(part, set()) <= CORE | {"models", "vaectl"}, f"{part} imports {edges[part]}"
    # where the core reaches into models/, it is the torch-free config only
    for path in [
        *(REPO / p for p in ("contract.py", "scoring.py", "files.py", "errors.py")),
        *(REPO / "data").glob("*.py"),
    ]:
        text = path.read_text()
        assert "models.vae" not in text and "models.checkpoint" not in text, path


def test_the_graph_sees_a_known_edge():
    """Guards the test above against a parser that finds nothing: export does read the contract."""
    assert "contract" in import_graph.imports(REPO)["export"]


def test_cli_imports_run_one_way():
    """cli.py registers the command modules; they share cli_common and never import cli back (no circle)."""
    edges = import_graph.imports(REPO)
    modules = ("cli_training", "cli_inference", "cli_tools")
    assert set(modules) <= edges["cli"]
    for module in (*modules, "cli_common"):
        assert "cli" not in edges.get(module, set()), f"{module} imports cli"
        if module != "cli_common":
            assert "cli_common" in edges[module], module
    assert not edges.get("cli_common", set()) & {"cli", *modules}
