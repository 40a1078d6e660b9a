"""The tutorial notebooks (examples/): committed without outputs, the same code in English and in Chinese, only
vaectl's public API, and each runs from a clean kernel to its last cell on the CPU, showing every figure."""

from __future__ import annotations

import ast
import importlib
import importlib.util
import os
import re
from pathlib import Path

import pytest


def needed(module: str):
    """The module, or a skip where it is not installed. Where the CI variable is set (CI services set it), a
    missing module fails instead: in CI the notebooks cannot pass unexecuted."""
    if os.environ.get("CI"):
        return importlib.import_module(module)
    return pytest.importorskip(module)


nbformat = needed("nbformat")  # the [dev] extra

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = {"en": REPO / "examples" / "tutorial.ipynb", "zh-CN": REPO / "examples" / "tutorial.zh-CN.ipynb"}
CJK = re.compile(r"[\u4e00-\u9fff]")

spec = importlib.util.spec_from_file_location("tutorial_figures", REPO / "tools" / "tutorial_figures.py")
tutorial_figures = importlib.util.module_from_spec(spec)
spec.loader.exec_module(tutorial_figures)


def read(lang: str):
    nb = nbformat.read(NOTEBOOKS[lang], as_version=4)
    nbformat.validate(nb)
    return nb


def code_cells(nb) -> list:
    return [cell for cell in nb.cells if cell.cell_type == "code"]


def code_without_prose(source: str) -> ast.Module:
    """The code as Python sees it, without comments and docstrings (the parts written in the reader's language)."""
    tree = ast.parse(source)
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        first = body[0] if isinstance(body, list) and body else None
        if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
            body.pop(0)
    return tree


def strings(tree: ast.AST) -> list[str]:
    return [n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)]


def without_strings(tree: ast.AST) -> str:
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            node.value = ""
    return ast.dump(tree)


def is_font_setup(statement: ast.stmt) -> bool:
    return "font" in ast.unparse(statement)


@pytest.mark.parametrize("lang", NOTEBOOKS)
def test_committed_without_outputs(lang):
    """Outputs are made by running the notebook (CI, tools/tutorial_figures.py), never committed: they would go
    stale against the code, and a diff of base64 images reviews nothing."""
    for cell in code_cells(read(lang)):
        assert cell.outputs == [] and cell.execution_count is None, cell.source[:60]


def test_both_languages_have_the_same_cells_and_code():
    """The same code, but for what a reader sees: comments, docstrings and the labels in figures are
    translated, and the Chinese edition's first cell picks a font that can draw them."""
    en, zh = read("en"), read("zh-CN")
    assert [c.cell_type for c in en.cells] == [c.cell_type for c in zh.cells]
    assert [c.get("id") for c in en.cells] == [c.get("id") for c in zh.cells]
    for i, (a, b) in enumerate(zip(code_cells(en), code_cells(zh))):
        ta, tb = code_without_prose(a.source), code_without_prose(b.source)
        if i == 0:  # the Chinese cell alone sets up a font for its labels
            assert any("font.family" in ast.unparse(s) for s in tb.body), "the Chinese notebook picks no font"
            ta.body = [s for s in ta.body if not is_font_setup(s)]
            tb.body = [s for s in tb.body if not is_font_setup(s)]
        sa, sb = strings(ta), strings(tb)
        assert len(sa) == len(sb), a.source[:60]
        for x, y in zip(sa, sb):  # the same string, or its translation
            assert x == y or CJK.search(y), (x, y)
        assert without_strings(ta) == without_strings(tb), a.source[:60]
        assert a.metadata.get("figure") == b.metadata.get("figure")


def test_the_chinese_notebook_is_written_in_chinese():
    zh, en = read("zh-CN"), read("en")
    for a, b in zip(en.cells, zh.cells):
        if b.cell_type == "markdown" or a.source != b.source:  # prose, or code whose comments are translated
            assert CJK.search(b.source), b.source[:80]
    assert not any(CJK.search(c.source) for c in en.cells)


@pytest.mark.parametrize("lang", NOTEBOOKS)
def test_only_public_api(lang):
    """The notebooks show how to use vaectl: no private module, function or attribute."""
    for cell in code_cells(read(lang)):
        for node in ast.walk(ast.parse(cell.source)):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [alias.name for alias in node.names] + [getattr(node, "module", None) or ""]
                assert not any(part.startswith("_") for name in names for part in name.split(".")), cell.source
            if isinstance(node, ast.Attribute):
                assert not node.attr.startswith("_"), cell.source


def test_every_figure_is_on_the_docs_page():
    page = (REPO / "docs" / "tutorial.md").read_text()
    names = [c.metadata["figure"] for c in code_cells(read("en")) if c.metadata.get("figure")]
    shown = set(re.findall(r"\]\(tutorial/([\w-]+)\.(?:png|gif)\)", page))
    assert shown <= set(names), shown - set(names)  # the page shows the notebook's figures, nothing else
    for name in shown:
        assert list((REPO / "docs" / "tutorial").glob(f"{name}.*")), name


def vaectl_calls(nb) -> list[tuple[object, ast.Call]]:
    """(the vaectl object, the call) for each call in the notebook of a name it imports from vaectl."""
    imported = {}
    calls = []
    for cell in code_cells(nb):
        tree = ast.parse(cell.source)
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "vaectl":
                module = importlib.import_module(node.module)
                for alias in node.names:
                    assert hasattr(module, alias.name), f"{node.module} has no {alias.name}"
                    imported[alias.asname or alias.name] = getattr(module, alias.name)
        calls += [
            (imported[node.func.id], node)
            for node in ast.walk(tree)
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in imported
        ]
    return calls


@pytest.mark.parametrize("lang", NOTEBOOKS)
def test_every_vaectl_call_matches_its_signature(lang):
    """What the slow test below runs, checked in a second: each name the notebook imports from vaectl exists,
    each call of one binds to its signature, and train() gets only known settings and presets."""
    needed("torch")  # vaectl.training and vaectl.pytorch
    import inspect

    from vaectl.models.presets import PRESETS
    from vaectl.training.config import MODEL_FIELDS, TRAIN_FIELDS

    calls = vaectl_calls(read(lang))
    assert {getattr(f, "__name__", None) for f, _ in calls} >= {"train", "checkpoint_pair", "show", "export_model"}
    for function, call in calls:
        keywords = {k.arg: k.value for k in call.keywords}
        inspect.signature(function).bind(*call.args, **keywords)  # TypeError on an unknown or missing argument
        if function.__name__ == "train":
            assert set(keywords) - {"preset", "overwrite"} <= set(TRAIN_FIELDS) | set(MODEL_FIELDS), keywords
            if "preset" in keywords:
                assert ast.literal_eval(keywords["preset"]) in PRESETS


@pytest.mark.slow  # minutes: it trains the tutorial's models (the test above checks the calls in a second)
@pytest.mark.parametrize("lang", NOTEBOOKS)
def test_runs_from_a_clean_kernel_and_shows_every_figure(lang, tmp_path):
    needed("nbclient")
    needed("torch")
    # One torch thread: where other processes share the CPUs (CI machines, a test run beside other work), two
    # threads that wait on each other trained the tutorial's MLP several times slower than one (docs/tutorial.md).
    nb = tutorial_figures.execute(NOTEBOOKS[lang], tmp_path, threads=1)  # raises on the first cell that fails
    figures = [c.metadata["figure"] for c in code_cells(nb) if c.metadata.get("figure")]
    assert sorted(tutorial_figures.figures(nb)) == sorted(figures)  # each named cell showed its picture
    for cell in code_cells(nb):
        for output in cell.outputs:
            assert output.output_type != "error"
            if output.output_type == "stream" and output.name == "stderr":  # nothing a learner reads as a fault
                assert "Warning" not in output.text and "Traceback" not in output.text, output.text
    assert (tmp_path / "runs" / "tutorial" / "onnx" / "decoder.onnx").is_file()  # where the notebook says
    last = code_cells(nb)[-1].outputs[-1]
    assert last["data"]["text/plain"] == "'[]\\n'"  # importing vaectl.infer loaded none of torch, torchvision, onnx
