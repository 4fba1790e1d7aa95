"""Side files of a TFRecord conversion: its summary and the list of skipped images.

They live in a `_meta/` folder beside the shards, so that `<prefix>*` (the original code's
reader, user scripts) matches the shards alone. Earlier versions wrote them as
`<prefix>.summary.json` / `<prefix>.skipped.txt`: shard listings ignore those, a new conversion
removes them, and `prepare` moves them into `_meta/`.
"""

from __future__ import annotations

import os

META_DIR = "_meta"
SUMMARY_SUFFIX = ".summary.json"
SKIPPED_SUFFIX = ".skipped.txt"


def side_file(prefix: str, suffix: str) -> str:
    """<folder>/_meta/<base><suffix>: a side file of the shards of `prefix`."""
    folder, base = os.path.split(prefix)
    return os.path.join(folder, META_DIR, base + suffix)


def summary_path(prefix: str) -> str:
    """Where the conversion summary of `prefix` is written."""
    return side_file(prefix, SUMMARY_SUFFIX)


def skipped_path(prefix: str) -> str:
    """Where the list of images left out by --skip_bad_images is written."""
    return side_file(prefix, SKIPPED_SUFFIX)


def move_legacy_side_files(prefix: str) -> list[str]:
    """Move `<prefix>.summary.json` / `.skipped.txt` of earlier versions into `_meta/`."""
    moved = []
    for suffix in (SUMMARY_SUFFIX, SKIPPED_SUFFIX):
        old, new = prefix + suffix, side_file(prefix, suffix)
        if os.path.isfile(old):
            os.makedirs(os.path.dirname(new), exist_ok=True)
            os.replace(old, new)
            moved.append(old)
    return moved
