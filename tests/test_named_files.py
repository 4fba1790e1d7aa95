"""Docstrings and docs name only files that exist: a path like `knn/search.py`,
`docs/uned-benchmark.md` or `universal_embedding/configs/tiny.py` in a docstring, in README.md or
in a docs page must be a file (or folder) of the repository.

A path counts when its first part is a top folder of the repository (docs, universal_embedding,
tests, benchmarks) or a package of universal_embedding (knn, report, ...); it is looked up from
the repository root and from universal_embedding/. Files of the original code that the docs name
on purpose (its config paths, which our config finder still resolves) are listed in ORIGINAL.
"""

from __future__ import annotations

import ast
import pathlib
import re

REPO = pathlib.Path(__file__).resolve().parents[1]
PACKAGE = REPO / "universal_embedding"
ROOTS = {"docs", "universal_embedding", "tests", "benchmarks"} | {
    p.name for p in PACKAGE.iterdir() if p.is_dir() and not p.name.startswith("_")
}
_PATH = re.compile(r"(?<![\w./<{-])((?:[A-Za-z_][\w-]*/)+[\w.-]*\w\.(?:py|md))\b")
# The original code's own paths, named in the docs as the original README wrote them.
ORIGINAL = re.compile(r"^universal_embedding/(iccv_configs|udon_configs)/|^configs/config_\w+\.py$")


def named_paths(text: str) -> list[str]:
    """Repository-looking paths in `text` (first part a known root)."""
    return [m for m in _PATH.findall(text) if m.split("/", 1)[0] in ROOTS]


def exists(name: str) -> bool:
    return (REPO / name).exists() or (PACKAGE / name).exists()


def _docstrings(path: pathlib.Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    kinds = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)
    return [d for n in ast.walk(tree) if isinstance(n, kinds) and (d := ast.get_docstring(n))]


def _missing(texts: list[str]) -> list[str]:
    return sorted(
        {p for t in texts for p in named_paths(t) if not exists(p) and not ORIGINAL.search(p)}
    )


def test_docstrings_name_existing_files():
    bad = {}
    for top in ("universal_embedding", "tests", "benchmarks"):
        for path in sorted((REPO / top).rglob("*.py")):
            if missing := _missing(_docstrings(path)):
                bad[str(path.relative_to(REPO))] = missing
    assert not bad, bad


def test_docs_name_existing_files():
    pages = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
    bad = {}
    for page in pages:
        if missing := _missing([page.read_text(encoding="utf-8")]):
            bad[str(page.relative_to(REPO))] = missing
    assert not bad, bad


def test_the_scanner_finds_paths_and_misses():
    text = "see knn/search.py, docs/nope.md and W/results.md; `universal_embedding/api.py`"
    assert named_paths(text) == ["knn/search.py", "docs/nope.md", "universal_embedding/api.py"]
    assert _missing([text]) == ["docs/nope.md"]
