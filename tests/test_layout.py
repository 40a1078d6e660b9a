"""The package's layout rules: its parts and their imports (read from the import statements by
tools/import_graph.py: three siblings over a core), the size of its functions, and layout.py as the one
place that names the files of a run directory and an export directory, and the explorer's URLs."""

from __future__ import annotations

import ast
import importlib.util
from pathlib import Path

from vaectl import layout

REPO = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("import_graph", REPO / "tools" / "import_graph.py")
import_graph = importlib.util.module_from_spec(spec)
spec.loader.exec_module(import_graph)

SIBLINGS = {"training", "export", "infer"}
CORE = {"contract", "layout", "scoring", "data", "files", "errors", "prior", "threads"}
MAX_FUNCTION_LINES = 100
# the explorer's URL folders: a path in one of them is spelled in layout.py only
SITE_PREFIXES = tuple(f"{d}/" for d in (layout.RUNTIME_DIR, layout.MODELS_DIR, layout.API_DIR, layout.GRIDS_DIR))


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
        *(REPO / p for p in ("contract.py", "layout.py", "scoring.py", "files.py", "errors.py", "threads.py")),
        *(REPO / "data").glob("*.py"),
        *(REPO / "prior").glob("*.py"),
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
    assert not edges["cli"] & set(modules)  # cli.py loads a command's module when the command runs
    for module in (*modules, "cli_common"):
        assert "cli" not in edges.get(module, set()), f"{module} imports cli"
        if module != "cli_common":
            assert "cli_common" in edges[module], module
    assert not edges.get("cli_common", set()) & {"cli", *modules}


def test_every_command_is_registered_under_the_module_that_defines_it():
    from vaectl import cli, cli_inference, cli_tools, cli_training

    defined = {
        c.name: m.__name__.rsplit(".", 1)[1] for m in (cli_training, cli_inference, cli_tools) for c in m.COMMANDS
    }
    assert defined == cli.COMMAND_MODULES
    assert cli.main.list_commands(None) == list(defined)


def package_files() -> list[Path]:
    """Every .py file of the installed package (what tools/import_graph.py reads: no tests, bench or tools)."""
    return [
        p
        for p in sorted(REPO.rglob("*.py"))
        if p.relative_to(REPO).parts[0] not in import_graph.SKIP and not p.name.startswith(".")
    ]


def test_package_files_are_found():
    names = {str(p.relative_to(REPO)) for p in package_files()}
    assert {"cli.py", "layout.py", "training/loop.py", "infer/commands.py", "explore/model.py"} <= names
    assert not any(n.startswith(("tests/", "bench/")) for n in names)


def test_no_function_in_the_package_is_over_100_lines():
    """nanoGPT-sized functions: a function's own lines, from `def` to its last line (decorators apart)."""
    long = [
        f"{p.relative_to(REPO)}:{node.lineno} {node.name} ({node.end_lineno - node.lineno + 1} lines)"
        for p in package_files()
        for node in ast.walk(ast.parse(p.read_text(), str(p)))
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
        and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES
    ]
    assert not long, long


def _docstrings_and_help(tree: ast.AST) -> set[int]:
    """ids of the string constants that are documentation: docstrings and click's help= texts."""
    skip = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                skip.add(id(first.value))
        if isinstance(node, ast.keyword) and node.arg == "help":
            skip |= {id(n) for n in ast.walk(node.value)}
    return skip


def restated_names(path: Path) -> list[str]:
    """Where a file spells out a name layout.py owns: a run or export file name, a grid's name, a graph's
    file name built from its role or variant (f"{role}.onnx", f"decoder.{variant}.onnx"), or an explorer URL
    ("api/info.json", f"/models/{name}": an f-string's text parts are constants too)."""
    names = {*layout.RUN_FILES, *layout.GRAPH_FILES, *layout.GRID_PATTERNS, layout.TENSORBOARD_EVENTS}
    tree = ast.parse(path.read_text(), str(path))
    docs = _docstrings_and_help(tree)
    where = path.relative_to(REPO) if path.is_relative_to(REPO) else path.name
    found = []
    for node in ast.walk(tree):
        if id(node) in docs:
            continue
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            site = node.value.lstrip("/").startswith(SITE_PREFIXES)
            if node.value in names or "samples_epoch" in node.value or "recon_epoch" in node.value or site:
                found.append(f"{where}:{node.lineno} {node.value!r}")
        elif isinstance(node, ast.JoinedStr) and any(isinstance(v, ast.FormattedValue) for v in node.values):
            tail = node.values[-1]
            if isinstance(tail, ast.Constant) and str(tail.value).endswith((".onnx", ".pt")):
                found.append(f"{where}:{node.lineno} f-string ending {tail.value!r}")
    return found


def test_layout_names_the_files_and_nothing_else_restates_them():
    assert layout.graph_name("decoder", "fp16") == "decoder.fp16.onnx"
    assert layout.grid_name("samples", 3) == "samples_epoch003.png"
    restated = [hit for p in package_files() if p.name != "layout.py" for hit in restated_names(p)]
    assert not restated, restated


def test_the_restatement_check_finds_a_restatement(tmp_path):
    """Guards the test above: the forms it looks for are found."""
    sample = tmp_path / "sample.py"
    sample.write_text(
        'p = out / "metrics.jsonl"\nq = f"{role}.onnx"\n"""decoder.onnx in a docstring is fine"""\n'
        'r = "api/info.json"\ns = f"/models/{name}"\n'
    )
    assert len(restated_names(sample)) == 4
