"""`--helpconfig`: every field of a config with its type, default and a one-line description.

The descriptions are the config files' own comments (universal_embedding/configs/*.py): the
comment at the end of the line that sets a field, else the comment lines right above it.
A field set in several files takes the description of the file that adds it (base.py first,
then the files adding fields of their own, then the others).
"""

from __future__ import annotations

import ast
import functools
import io
import os
import tokenize
from collections.abc import Iterator, Mapping

import ml_collections

from universal_embedding.configs import _locate

# Files read for descriptions, in order of precedence (the rest follow, sorted by name).
FIRST = (
    "base.py",
    "config_train_vit.py",
    "config_knn_vit.py",
    "config_train_udon.py",
    "config_knn_descr_eval.py",
    "config_extract_dir_descriptors.py",
)


def _comments(source: str) -> tuple[dict[int, str], dict[int, str]]:
    """({line: trailing comment}, {line: comment alone on its line}) of Python source."""
    trailing, alone = {}, {}
    lines = source.splitlines()
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type != tokenize.COMMENT:
            continue
        row, col = tok.start
        text = tok.string.lstrip("#").strip()
        (alone if not lines[row - 1][:col].strip() else trailing)[row] = text
    return trailing, alone


def _dotted(target: ast.expr) -> str | None:
    """'model.output_dim' for the target `c.model.output_dim` (any root name), else None."""
    parts = []
    while isinstance(target, ast.Attribute):
        parts.append(target.attr)
        target = target.value
    return ".".join(reversed(parts)) if parts and isinstance(target, ast.Name) else None


def _targets(node: ast.Assign) -> Iterator[str]:
    for target in node.targets:
        items = target.elts if isinstance(target, ast.Tuple) else [target]
        yield from (name for name in map(_dotted, items) if name)


def _is_header(text: str) -> bool:
    """A section header such as '---- data ----'."""
    return text.startswith("--")


def _above(alone: Mapping[int, str], line: int) -> str:
    """The comment lines right above `line`, joined (section headers left out)."""
    block = []
    while line - 1 in alone:
        line -= 1
        block.insert(0, alone[line])
    return " ".join(text for text in block if text and not _is_header(text))


def field_comments(source: str) -> dict[str, str]:
    """{dotted field name: description} of every `c.<field> = ...` line in a config file."""
    trailing, alone = _comments(source)
    out: dict[str, str] = {}
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Assign):
            continue
        lines = range(node.lineno, (node.end_lineno or node.lineno) + 1)
        text = next((trailing[n] for n in lines if n in trailing), "") or _above(alone, node.lineno)
        for name in _targets(node):
            if text and name not in out:
                out[name] = text
    return out


def _config_files(config_dir: str) -> list[str]:
    names = sorted(f for f in os.listdir(config_dir) if f.endswith(".py"))
    return [*(f for f in FIRST if f in names), *(f for f in names if f not in FIRST)]


@functools.cache
def descriptions(config_dir: str = _locate.CONFIG_DIR) -> dict[str, str]:
    """{dotted field name: description} from every config file (first file in FIRST wins)."""
    out: dict[str, str] = {}
    for name in _config_files(config_dir):
        with open(os.path.join(config_dir, name), encoding="utf-8") as f:
            for field, text in field_comments(f.read()).items():
                out.setdefault(field, text)
    return out


def leaves(config: ml_collections.ConfigDict, prefix: str = "") -> Iterator[tuple[str, str]]:
    """(dotted name, type name) of every leaf field, in the config's order."""
    for key in config.keys():
        value = config[key]
        name = f"{prefix}{key}"
        if isinstance(value, ml_collections.ConfigDict):
            yield from leaves(value, f"{name}.")
            continue
        kind = config.get_type(key)
        kind_name = getattr(kind, "__name__", str(kind))
        yield name, kind_name if value is not None else f"{kind_name} | None"


def describe(name: str, known: Mapping[str, str]) -> str:
    """The description of `name`, else of its closest described parent ('' when none)."""
    parts = name.split(".")
    for end in range(len(parts), 0, -1):
        text = known.get(".".join(parts[:end]))
        if text:
            return text
    return ""


def _value(config: ml_collections.ConfigDict, name: str):
    for part in name.split("."):
        config = config[part]
    return config


def help_lines(config: ml_collections.ConfigDict, source: str = "") -> list[str]:
    """The --helpconfig text: a header, then one line per field:
    `  <name> (<type>, default <repr>): <description>`."""
    known = descriptions()
    head = f"Fields of {source}" if source else "Fields of the config"
    lines = [f"{head} (set one with --config.<name>=VALUE):"]
    for name, kind in leaves(config):
        text = describe(name, known) or "(no description)"
        lines.append(f"  {name} ({kind}, default {_value(config, name)!r}): {text}")
    return lines
