"""Read and validate UnED info files (`<info_files_dir>/<domain>/<split>.json`); no TensorFlow."""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Sequence
from typing import Any

from universal_embedding.data import registry
from universal_embedding.data.columns import LabelSets, PackedStrings
from universal_embedding.errors import limits


@dataclasses.dataclass(frozen=True)
class InfoSplit:
    """One split of one domain: image paths and label sets, in info-file order, as arrays
    (columns.py: item i of `paths` is a str, of `labels` a tuple of ints)."""

    domain: str
    split: str
    paths: Sequence[str]  # PackedStrings when read from an info file
    labels: LabelSets

    def __len__(self) -> int:
        return len(self.paths)


INT64_MAX = 2**63 - 1  # TFRecord labels are int64


def _entry_error(path: str, index: int, entry: Any, what: str) -> ValueError:
    name = entry.get("path") if isinstance(entry, dict) else None
    where = f"path {name!r}" if isinstance(name, str) else str(entry)[:120]
    return ValueError(
        f"Info file {path}: entry {index} ({where}) {what}. Each entry must be "
        '{"path": "<relative image path>", "class_id": <int> or [<int>, ...]}.'
    )


def _validate_entry(path: str, index: int, entry: Any) -> dict:
    if not isinstance(entry, dict) or "path" not in entry or "class_id" not in entry:
        raise _entry_error(path, index, entry, "lacks 'path' or 'class_id'")
    if not isinstance(entry["path"], str) or not entry["path"]:
        raise _entry_error(path, index, entry, "has no non-empty string 'path'")
    label = entry["class_id"]
    labels = label if isinstance(label, list) else [label]
    if not labels or any(isinstance(x, bool) or not isinstance(x, int) or x < 0 for x in labels):
        bad = repr(label)[:40]
        raise _entry_error(path, index, entry, f"has class_id {bad}, not a non-negative int")
    if max(labels) > INT64_MAX:
        raise _entry_error(
            path, index, entry, f"has class_id {max(labels)}, past the int64 maximum {INT64_MAX}"
        )
    return {"path": entry["path"], "class_id": label}


def read_info_file(path: str) -> list[dict]:
    """The validated entries of one info file: [{'path': str, 'class_id': int | list[int]}]."""
    try:  # a FIFO or device is refused before it is read (it would block or never end)
        with limits.open_regular(path, "Info file", mode="r") as f:
            data = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as e:
        why = "nested too deeply" if isinstance(e, RecursionError) else limits.short(e, 160)
        raise ValueError(f"Info file {limits.short(path)} is not valid JSON: {why}") from None
    if not isinstance(data, list):
        raise ValueError(f"Info file {path} must hold a JSON list, found {type(data).__name__}.")
    return [_validate_entry(path, i, entry) for i, entry in enumerate(data)]


def label_tuple(class_id: int | list[int]) -> tuple[int, ...]:
    """An info entry's class_id as a tuple of ints (one or several labels)."""
    return tuple(class_id) if isinstance(class_id, list) else (class_id,)


def load_split(info_files_dir: str, domain: str, split: str) -> InfoSplit:
    """The InfoSplit of `domain`/`split` read from `<info_files_dir>/<domain>/<split>.json`."""
    registry.get_domain(domain)
    path = registry.info_file_path(info_files_dir, domain, split)
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"No info file for domain '{domain}', split '{split}': {path} does not exist. "
            "Point info_files_dir at a directory holding <domain>/<split>.json files "
            "(for test data: python -m universal_embedding.data.synthetic --data_dir DIR)."
        )
    entries = read_info_file(path)
    return InfoSplit(
        domain=domain,
        split=split,
        paths=PackedStrings.from_strings(e["path"] for e in entries),
        labels=LabelSets.from_sets([label_tuple(e["class_id"]) for e in entries]),
    )


def num_classes(info_files_dir: str, domain: str, split: str = "train") -> int:
    """Number of classes of a split: its largest label + 1."""
    info = load_split(info_files_dir, domain, split)
    if not len(info):
        raise ValueError(f"Info file of domain '{domain}', split '{split}' has no entries.")
    return int(info.labels.values.max()) + 1


def available_splits(info_files_dir: str, domain: str) -> tuple[str, ...]:
    """Splits of `domain` whose info file exists, in the registry's split order."""
    dom = registry.get_domain(domain)
    return tuple(
        s for s in dom.splits if os.path.isfile(registry.info_file_path(info_files_dir, domain, s))
    )


def load_splits(info_files_dir: str, keys: Sequence[str]) -> dict[str, InfoSplit]:
    """The info file of every 'domain/split' key (FileNotFoundError if one is missing)."""
    return {key: load_split(info_files_dir, *key.split("/", 1)) for key in keys}
