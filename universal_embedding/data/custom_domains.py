"""Domains of your own, declared in a small JSON file and merged with the built-in registry.

    {"domains": [{"name": "toys",
                  "splits": ["train", "val", "test"],
                  "knn": {"val_knn": ["val", "val"], "test_knn": ["test", "test"]},
                  "train_shards": 2}]}

`splits` is a list of split names (or {name: size or null}); `knn` maps kNN setup names
(train_knn, val_knn, test_knn) to [query split, index split]; `train_shards` (default 1) and
`num_train_classes` (default 0: unknown, the info files tell) are optional. A file holding one
domain object (without the "domains" list) works too.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from universal_embedding.data import registry

REQUIRED = ("name", "splits", "knn")
OPTIONAL = ("train_shards", "num_train_classes", "id")
_ID_BASE = 1000  # user domain ids (seeds) never collide with the 8 built-in ones


def _fail(source: str, what: str) -> ValueError:
    return ValueError(f"{source}: {what}")


def _default_id(name: str) -> int:
    return _ID_BASE + int.from_bytes(hashlib.sha256(name.encode()).digest()[:3], "big")


def _splits(spec: Any, where: str) -> Mapping[str, int | None]:
    if isinstance(spec, list) and spec and all(isinstance(s, str) and s for s in spec):
        return MappingProxyType(dict.fromkeys(spec))
    if (
        isinstance(spec, dict)
        and spec
        and all(v is None or isinstance(v, int) for v in spec.values())
    ):
        return MappingProxyType(dict(spec))
    raise _fail(where, "'splits' must be a non-empty list of split names (or {name: size}).")


def _knn(spec: Any, splits: Mapping, where: str) -> Mapping[str, registry.KnnSetup]:
    if not isinstance(spec, dict) or not spec:
        raise _fail(where, "'knn' must map setup names to [query split, index split].")
    out = {}
    for name, pair in spec.items():
        if name not in registry.KNN_NAMES:
            raise _fail(
                where, f"unknown kNN setup '{name}' (valid: {', '.join(registry.KNN_NAMES)})."
            )
        if not (isinstance(pair, list) and len(pair) == 2):
            raise _fail(where, f"kNN setup '{name}' must be [query split, index split].")
        for split in pair:
            if split not in splits:
                raise _fail(where, f"kNN setup '{name}' uses split '{split}', which is not in "
                            f"'splits' ({', '.join(splits)}).")  # fmt: skip
        out[name] = registry.KnnSetup(*pair)
    return MappingProxyType(out)


def domain_from_dict(spec: Any, source: str = "domain") -> registry.Domain:
    """A Domain from its JSON object; errors name the file, the domain and what is missing."""
    if not isinstance(spec, dict):
        raise _fail(source, "each domain must be a JSON object.")
    name = spec.get("name")
    where = f"{source}: domain '{name}'" if name else source
    missing = [k for k in REQUIRED if k not in spec]
    if missing:
        names = ", ".join(repr(m) for m in missing)
        raise _fail(where, f"missing {names} (required: {', '.join(REQUIRED)}; "
                    f"optional: {', '.join(OPTIONAL[:2])}).")  # fmt: skip
    unknown = sorted(set(spec) - set(REQUIRED) - set(OPTIONAL))
    if unknown:
        raise _fail(where, f"unknown field(s) {', '.join(unknown)}.")
    if not isinstance(name, str) or not name or "/" in name or name.strip() != name:
        raise _fail(source, f"bad domain name {name!r}: a non-empty name without '/'.")
    splits = _splits(spec["splits"], where)
    shards = spec.get("train_shards", 1)
    if not isinstance(shards, int) or shards < 1:
        raise _fail(where, "'train_shards' must be a positive integer.")
    return registry.Domain(
        name=name,
        id=int(spec.get("id", _default_id(name))),
        num_train_classes=int(spec.get("num_train_classes", 0)),
        split_sizes=splits,
        knn=_knn(spec["knn"], splits, where),
        train_shards=shards,
    )


def load_domains_file(path: str) -> tuple[registry.Domain, ...]:
    """Read a domains JSON file and register every domain in it (idempotent)."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Domains file {path} does not exist.")
    with open(path, encoding="utf-8") as f:
        try:
            data = json.load(f)
        except json.JSONDecodeError as e:
            raise _fail(path, f"not valid JSON ({e}).") from e
    specs = data.get("domains") if isinstance(data, dict) and "domains" in data else [data]
    if not isinstance(specs, list) or not specs:
        raise _fail(path, 'expected {"domains": [{...}, ...]} or one domain object.')
    return tuple(registry.register(domain_from_dict(s, path)) for s in specs)
