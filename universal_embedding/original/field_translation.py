"""Apply the original UnED code's field names (the rules of config_fields.RULES) to a config.

`split_argv` takes the original names out of the command line (ml_collections' config_flags
would reject them as unknown fields) and `translate` applies them after flag parsing: each one is
mapped onto our field with one logged line, accepted with a line saying it has no effect, or
refused with a one-line error naming it and what to use instead. `universal_embedding.app`
calls both for every config-driven program.
"""

from __future__ import annotations

import ast
from collections.abc import Sequence
from typing import Any

import ml_collections

from universal_embedding.original.config_fields import RULES, SHARED_NAMES, Rule


def _has(c: ml_collections.ConfigDict, path: str) -> bool:
    *parents, leaf = path.split(".")
    for p in parents:
        if p not in c or not isinstance(c[p], ml_collections.ConfigDict):
            return False
        c = c[p]
    return leaf in c


def _parent(c: ml_collections.ConfigDict, path: str) -> tuple[ml_collections.ConfigDict, str]:
    *parents, leaf = path.split(".")
    for p in parents:
        c = c[p]
    return c, leaf


def _plain(value: Any) -> Any:
    return value.to_dict() if isinstance(value, ml_collections.ConfigDict) else value


def parse_value(text: str) -> Any:
    """A command-line value: Python literal (7, 1e-3, None, True, [..]) or else the string."""
    low = text.strip().lower()
    if low in ("true", "false"):
        return low == "true"
    try:
        return ast.literal_eval(text.strip())
    except (ValueError, SyntaxError):
        return text


def split_argv(argv: Sequence[str]) -> tuple[list[str], dict[str, Any]]:
    """argv without `--config.<original field>` overrides, and those overrides parsed.

    Forms: `--config.F=V`, `--config.F V`, and for booleans `--config.F` / `--config.noF`.
    """
    out: list[str] = []
    found: dict[str, Any] = {}
    i = 0
    while i < len(argv):
        item = argv[i]
        name, sep, text = item[len("--config.") :].partition("=")
        no_name = name[2:] if name.startswith("no") else ""
        if not item.startswith("--config.") or (name not in RULES and no_name not in RULES):
            out.append(item)
        elif name in SHARED_NAMES or (name not in RULES and no_name in SHARED_NAMES):
            out.append(item)
        elif name not in RULES:
            found[no_name] = False
        elif sep:
            found[name] = parse_value(text)
        elif i + 1 < len(argv) and not argv[i + 1].startswith("-"):
            found[name] = parse_value(argv[i + 1])
            i += 1
        else:
            found[name] = True
        i += 1
    return out, found


def _take(c: ml_collections.ConfigDict, path: str, rule: Rule) -> tuple[bool, Any]:
    """Remove the original field `path` from `c` when present there; (found, value)."""
    if not _has(c, path) or (rule.target == path and rule.applies is None):
        return False, None
    parent, leaf = _parent(c, path)
    value = _plain(parent[leaf])
    if rule.applies is not None and not rule.applies(value):
        return False, None
    with parent.unlocked():
        del parent[leaf]
    return True, value


def _refuse(path: str, value: Any, why: str) -> ValueError:
    return ValueError(f"config.{path}={value!r} (a field of the original UnED code): {why}.")


def _assign(c: ml_collections.ConfigDict, path: str, rule: Rule, value: Any) -> str:
    """Apply one original field; the line to log."""
    if rule.target is None:
        if value == {}:  # an emptied container (optimizer_configs, lr_configs, ...)
            return ""
        if rule.accept_any or value in rule.accept:
            return f"config: {path}={value!r} has no effect here ({rule.advice})"
        raise _refuse(path, value, f"not supported; {rule.advice}")
    same = rule.target == path  # e.g. specialist_top_steps, a list there and a string here
    if not same and not _has(c, rule.target):
        return f"config: {path} has no effect in this program (it has no config.{rule.target})"
    try:
        new = rule.convert(value, c) if rule.convert else value
        parent, leaf = _parent(c, rule.target)
        with parent.unlocked():
            parent[leaf] = new
    except (TypeError, ValueError) as e:
        raise _refuse(path, value, f"cannot set config.{rule.target}: {e}") from None
    return f"config: {path} -> {rule.target} (original field name; {rule.target}={new!r})"


def complete(config: ml_collections.ConfigDict, defaults: ml_collections.ConfigDict) -> None:
    """Add to `config` (in place, nested too) every field of `defaults` it lacks."""
    with config.unlocked():
        for key, value in defaults.items():
            if key not in config:
                config[key] = value
            elif isinstance(value, ml_collections.ConfigDict) and isinstance(
                config[key], ml_collections.ConfigDict
            ):
                complete(config[key], value)


def translate(
    config: ml_collections.ConfigDict,
    overrides: dict[str, Any] | None = None,
    defaults: ml_collections.ConfigDict | None = None,
) -> list[str]:
    """Move every original field of `config` (then of `overrides`) onto ours, in place.

    A config with original fields of its own (a config file of the original code) first gets
    every field of `defaults` (the program's default config) it lacks. Returns one line per
    original field (mapped or without effect); raises ValueError naming a field whose value is
    not supported and what to use instead.
    """
    found: dict[str, Any] = {}
    for path, rule in RULES.items():
        present, value = _take(config, path, rule)
        if present:
            found[path] = value
    if found and defaults is not None:
        complete(config, defaults)
    found.update(overrides or {})
    lines = [_assign(config, path, RULES[path], found[path]) for path in RULES if path in found]
    return [line for line in lines if line]
