"""The ConfigDict stops at the entry points: no library module takes or imports one.

Every module under universal_embedding/ except the entry points (the top-level modules), the
config files (configs/, iccv_configs/) and original/ (the original code's config fields) is
checked: no function has a parameter named `config` or annotated with ConfigDict, and no module
imports ml_collections.
"""

from __future__ import annotations

import ast
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[1] / "universal_embedding"
SKIPPED = {"configs", "iccv_configs", "original"}


def _checked(path: pathlib.Path) -> bool:
    rel = path.relative_to(ROOT).parts
    return len(rel) > 1 and rel[0] not in SKIPPED


def _annotation_names(node: ast.expr | None) -> str:
    return "" if node is None else ast.unparse(node)


def _violations(path: pathlib.Path) -> list[str]:
    """'<module>: <what>' for each config parameter or ml_collections import in the file."""
    name = "/".join(path.relative_to(ROOT).parts)
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [f"{name}: imports {a.name}" for a in node.names if "ml_collections" in a.name]
        elif isinstance(node, ast.ImportFrom) and "ml_collections" in (node.module or ""):
            found.append(f"{name}: imports {node.module}")
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            a = node.args
            for arg in [*a.posonlyargs, *a.args, *a.kwonlyargs, a.vararg, a.kwarg]:
                if arg is None:
                    continue
                if arg.arg == "config" or "ConfigDict" in _annotation_names(arg.annotation):
                    where = getattr(node, "name", "lambda")
                    found.append(f"{name}: {where}({arg.arg})")
    return found


def _all_violations() -> dict[str, list[str]]:
    out = {}
    for path in sorted(ROOT.rglob("*.py")):
        if _checked(path) and (v := _violations(path)):
            out["/".join(path.relative_to(ROOT).parts)] = v
    return out


def test_no_library_module_takes_a_config():
    assert _all_violations() == {}


def test_the_checker_sees_a_planted_config_parameter():
    bad = ROOT / "knn" / "_config_probe.py"
    bad.write_text(
        "import ml_collections\n\n"
        "def f(x, config):\n    return x\n\n"
        "def g(c: ml_collections.ConfigDict):\n    return c\n"
    )
    try:
        assert _violations(bad) == [
            "knn/_config_probe.py: imports ml_collections",
            "knn/_config_probe.py: f(config)",
            "knn/_config_probe.py: g(c)",
        ]
        assert _checked(bad) and not _checked(ROOT / "knn_main.py")
    finally:
        bad.unlink()
