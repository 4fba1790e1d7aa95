"""Package dependencies point one way: every import in the package, inside functions too.

data | models (+ pretrained) -> checkpoint / distributed / writers -> original (the original
code's files and field names; it may read configs) -> loading -> knn -> report -> train -> entry
points (the top-level modules). A package imports only packages to its left.
"""

from __future__ import annotations

import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1] / "universal_embedding"
ALLOWED = {
    "errors": set(),
    "serve": set(),  # the light install's side: imports nothing of the package
    "configs": set(),
    "data": set(),
    "models": set(),
    "pretrained": {"models"},
    "checkpoint": set(),
    "distributed": set(),
    "writers": set(),
    "original": {"configs", "data", "models", "pretrained", "checkpoint", "distributed"},
    "loading": {"data", "models", "pretrained", "checkpoint", "distributed", "original"},
    "knn": {
        "data",
        "models",
        "pretrained",
        "checkpoint",
        "distributed",
        "writers",
        "loading",
        "original",
    },
    "report": {
        "data",
        "models",
        "pretrained",
        "checkpoint",
        "distributed",
        "writers",
        "loading",
        "original",
        "knn",
    },
    "train": {
        "data",
        "models",
        "pretrained",
        "checkpoint",
        "distributed",
        "writers",
        "loading",
        "knn",
        "original",
        "report",
    },
}
ENTRY_POINTS = {
    "convert",
    "runner",
    "config_help",
    "main",
    "knn_main",
    "descr_eval",
    "extract_dir_descriptors",
    "demo",
    "api",
    "export",
    "index",
    "download_models",
    "commands",
    "settings",
    "train_settings",
    "config_checks",
    "resume_check",
}


def _owner(path: pathlib.Path) -> str:
    """'knn' for a module in universal_embedding/knn/; 'knn_main' for knn_main.py."""
    rel = path.relative_to(ROOT).parts
    return rel[0] if len(rel) > 1 else path.stem


def _imported_packages(path: pathlib.Path) -> set[str]:
    """First component under universal_embedding of every import in the file (any depth)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module] if node.level == 0 else []
            if node.module == "universal_embedding":
                names = [f"universal_embedding.{a.name}" for a in node.names]
        for name in names:
            parts = name.split(".")
            if parts[0] == "universal_embedding" and len(parts) > 1:
                found.add(parts[1])
    return found


def _violations(path: pathlib.Path) -> list[str]:
    owner = _owner(path)
    if owner in ENTRY_POINTS or owner == "__init__":
        return []
    allowed = ALLOWED[owner] | {owner, "errors"}  # errors/: one-line exits, for every program
    return [f"{path.relative_to(ROOT)} imports {p}" for p in _imported_packages(path) - allowed]


def test_every_module_is_in_a_known_layer():
    owners = {_owner(p) for p in ROOT.rglob("*.py")}
    assert owners <= set(ALLOWED) | ENTRY_POINTS | {"__init__"}, owners - set(ALLOWED)


def test_imports_point_one_way():
    problems = [v for p in sorted(ROOT.rglob("*.py")) for v in _violations(p)]
    assert problems == []


def test_the_checker_sees_imports_inside_functions(tmp_path):
    bad = ROOT / "knn" / "_layer_probe.py"
    bad.write_text("def f():\n    from universal_embedding.train import steps\n")
    try:
        assert _violations(bad) == ["knn/_layer_probe.py imports train"]
    finally:
        bad.unlink()


def _imported_modules(path: pathlib.Path) -> set[str]:
    """'pkg/mod' of every universal_embedding.pkg.mod the file imports (any depth)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
        else:
            continue
        for parts in (n.split(".") for n in names):
            if parts[0] == "universal_embedding" and len(parts) > 2:
                if (ROOT / parts[1] / f"{parts[2]}.py").is_file():
                    found.add(f"{parts[1]}/{parts[2]}")
    return found


def test_no_import_circle_between_modules():
    """No module reaches itself through imports (function-level ones too)."""
    graph = {
        f"{p.parent.name}/{p.stem}": _imported_modules(p)
        for p in ROOT.glob("*/*.py")
        if p.stem != "__init__"
    }

    def reaches(start: str) -> set[str]:
        seen, todo = set(), list(graph.get(start, ()))
        while todo:
            m = todo.pop()
            if m not in seen:
                seen.add(m)
                todo.extend(graph.get(m, ()))
        return seen

    assert sorted(m for m in graph if m in reaches(m)) == []


@pytest.mark.parametrize("package", ["data", "models", "pretrained"])
def test_base_packages_import_neither_knn_nor_train(package):
    for path in (ROOT / package).rglob("*.py"):
        assert not _imported_packages(path) & {"knn", "train", "loading"}, path


def test_the_original_codes_files_live_in_original():
    """Its field names, ICCV configs, checkpoints and descriptor files: one package."""
    assert not (ROOT / "configs" / "_legacy.py").exists()
    assert not (ROOT / "iccv_configs").exists()
    assert (ROOT / "original" / "iccv_configs" / "_common.py").is_file()
