"""README.zh-CN.md, the front door in Chinese: the README's commands exactly, reachable from the README's top,
and every link it gives leads to a file of the repository."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
README, README_ZH = REPO / "README.md", REPO / "README.zh-CN.md"
FENCE = re.compile(r"^```(?:bash|sh|shell|console)(?:[ \t][^\n]*)?\n(.*?)^```", re.S | re.M)  # also ```bash test
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")


def shell_commands(markdown: str) -> list[str]:
    """The commands in a Markdown text's shell blocks: one per line, continuations joined, comments dropped."""
    commands = []
    for block in FENCE.findall(markdown):
        for line in block.replace("\\\n", " ").splitlines():
            line = re.sub(r"\s+#.*$", "", line).strip()
            if line and not line.startswith("#"):
                commands.append(" ".join(line.split()))
    return commands


def test_the_chinese_readme_gives_the_readmes_commands():
    zh, en = shell_commands(README_ZH.read_text()), shell_commands(README.read_text())
    assert zh, "README.zh-CN.md has no shell block"
    assert sorted(zh) == sorted(en)


def test_the_readme_links_it_at_the_top():
    top = README.read_text().split("\n## ")[0].splitlines()[:5]
    assert any("](README.zh-CN.md)" in line for line in top), top
    assert "](README.md" in README_ZH.read_text().split("\n## ")[0]


def test_every_link_of_the_chinese_readme_resolves():
    targets = [t for t in LINK.findall(README_ZH.read_text()) if "://" not in t]
    assert "examples/tutorial.zh-CN.ipynb" in targets
    for target in targets:
        assert (REPO / target).exists(), target


def test_the_command_extraction_sees_what_a_reader_runs():
    text = "x\n```bash\nvaectl a  # note\n# only a comment\nvaectl b \\\n    --flag\n```\n```\nnot shell\n```\n"
    assert shell_commands(text) == ["vaectl a", "vaectl b --flag"]
    assert shell_commands("```bash test\nvaectl c\n```\n```bashful\nno\n```\n") == ["vaectl c"]


def test_the_two_readmes_have_the_same_sections_and_links():
    """The same front door in both languages: as many sections, in the same order of their links (a section one
    of them lacks, or a page only one of them links, shows here)."""
    en, zh = README.read_text(), README_ZH.read_text()
    assert en.count("\n## ") == zh.count("\n## ")

    def links(text: str) -> list[str]:
        return [t for t in LINK.findall(text) if "://" not in t and not t.startswith("README")]

    assert links(en) == links(zh)
