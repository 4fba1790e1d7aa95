"""The documentation holds together: a short README, links that resolve, no orphan page.

README.md is the front door (at most 260 lines); the rest lives in docs/*.md, each page linked
from README.md or the index docs/README.md. Relative links are checked against the files in the
repository (anchors are not checked); links inside code are not links and are skipped.
"""

from __future__ import annotations

import pathlib
import re

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"
MAX_README_LINES = 260
_FENCE = re.compile(r"^(```|~~~).*?^\1", re.MULTILINE | re.DOTALL)
_CODE = re.compile(r"`[^`\n]*`")
_LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")


def _pages() -> list[pathlib.Path]:
    """README.md and every docs/*.md page."""
    return [REPO / "README.md", *sorted(DOCS.glob("*.md"))]


def _links(page: pathlib.Path) -> list[str]:
    """The link targets of `page`, code blocks and inline code left out."""
    text = _CODE.sub("", _FENCE.sub("", page.read_text(encoding="utf-8")))
    return _LINK.findall(text)


def _local_target(page: pathlib.Path, target: str) -> pathlib.Path | None:
    """The file a relative link points to; None for a URL, a mail link or an anchor alone."""
    if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.IGNORECASE) or target.startswith("#"):
        return None
    path = target.split("#", 1)[0].split("?", 1)[0]
    return (page.parent / path).resolve()


def test_readme_is_short():
    lines = (REPO / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= MAX_README_LINES, f"README.md has {len(lines)} lines"


@pytest.mark.parametrize("page", _pages(), ids=lambda p: str(p.relative_to(REPO)))
def test_relative_links_resolve(page):
    missing = []
    for target in _links(page):
        path = _local_target(page, target)
        if path is not None and not path.exists():
            missing.append(target)
    assert not missing, f"{page.relative_to(REPO)}: links to missing files: {missing}"


def test_every_docs_page_is_linked():
    linked = set()
    for page in (REPO / "README.md", DOCS / "README.md"):
        linked |= {_local_target(page, t) for t in _links(page)}
    orphans = [p.name for p in DOCS.glob("*.md") if p.name != "README.md" and p not in linked]
    assert not orphans, f"docs pages linked from neither README.md nor docs/README.md: {orphans}"


def test_link_parser_reads_links_and_skips_code(tmp_path):
    page = tmp_path / "p.md"
    page.write_text(
        "[a](x.md#s) ![img](y.png) [u](https://e.org) [h](#top)\n"
        "`[c](in_code.md)`\n```\n[d](in_block.md)\n```\n",
        encoding="utf-8",
    )
    targets = _links(page)
    assert targets == ["x.md#s", "y.png", "https://e.org", "#top"]
    assert _local_target(page, "x.md#s") == (tmp_path / "x.md").resolve()
    assert _local_target(page, "https://e.org") is None
    assert _local_target(page, "#top") is None
