"""Every relative Markdown link in README.md and docs/*.md resolves to a file inside the
repository (anchors are not checked, only the file they are in); a link that points at
nothing, or outside the repository (a clone has no ../shared), fails."""

from __future__ import annotations

import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]

# [text](target) and [text](target "title"); images too. Code spans are removed first.
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
REF = re.compile(r"^\s*\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+.*)?$", re.M)
FENCE = re.compile(r"^(```|~~~).*?^\1", re.M | re.S)
CODE = re.compile(r"`[^`\n]*`")
EXTERNAL = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")  # http:, https:, mailto:, ...


def documents(root: pathlib.Path):
    return [root / "README.md", *sorted((root / "docs").glob("*.md"))]


def links(text: str):
    text = CODE.sub("", FENCE.sub("", text))
    return LINK.findall(text) + REF.findall(text)


def broken_links(root: pathlib.Path):
    """[(document, target, why)] for every relative link that does not resolve inside root."""
    root = root.resolve()
    bad = []
    for doc in documents(root):
        if not doc.exists():
            continue
        for target in links(doc.read_text()):
            if EXTERNAL.match(target) or target.startswith("#"):
                continue
            path = target.split("#", 1)[0].split("?", 1)[0]
            if not path:
                continue
            resolved = (root / path.lstrip("/")) if path.startswith("/") else (doc.parent / path)
            resolved = resolved.resolve()
            if resolved != root and root not in resolved.parents:
                bad.append((doc.relative_to(root).as_posix(), target, "outside the repository"))
            elif not resolved.exists():
                bad.append((doc.relative_to(root).as_posix(), target, "no such file"))
    return bad


def test_every_link_in_the_readme_and_docs_resolves():
    assert broken_links(ROOT) == []


def test_the_readme_and_docs_are_found():
    docs = documents(ROOT)
    assert ROOT / "README.md" in docs and len(docs) > 5
    assert sum(len(links(d.read_text())) for d in docs) > 10


def write(root, name, text):
    path = root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


@pytest.mark.parametrize("text, why", [
    ("see [the lab](docs/nothing.md)", "no such file"),
    ("see [facts](../shared/lab-facts.md)", "outside the repository"),
    ("see [a section](docs/gone.md#somewhere)", "no such file"),
    ("[ref]: docs/missing.md", "no such file"),
])
def test_a_broken_link_fails(tmp_path, text, why):
    write(tmp_path, "README.md", f"# x\n\n{text}\n")
    write(tmp_path, "docs/ok.md", "# ok\n\n[back](../README.md) [self](#ok) [web](https://example.org)\n")
    bad = broken_links(tmp_path)
    assert len(bad) == 1 and bad[0][0] == "README.md" and bad[0][2] == why


def test_good_links_and_code_spans_pass(tmp_path):
    write(tmp_path, "README.md", "# x\n\n[docs](docs/ok.md#a) [m](mailto:a@b) `[not](a/link.md)`\n\n"
                                 "```\n[nor](this.md)\n```\n")
    write(tmp_path, "docs/ok.md", "# ok\n\n[back](../README.md) [top](#ok)\n")
    assert broken_links(tmp_path) == []


def test_a_link_from_docs_is_relative_to_docs(tmp_path):
    write(tmp_path, "README.md", "# x\n")
    write(tmp_path, "docs/a.md", "[b](docs/b.md)\n")  # docs/docs/b.md: broken
    write(tmp_path, "docs/b.md", "# b\n")
    assert broken_links(tmp_path) == [("docs/a.md", "docs/b.md", "no such file")]
