"""The metrics.jsonl format: one JSON object per write, `step` plus the values written."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

from absl import logging

METRICS_FILE = "metrics.jsonl"  # every scalar (and text) written, one JSON object per write
HPARAMS_FILE = "hparams.json"  # the hyper-parameters written, next to METRICS_FILE


def append_row(path: str, step: int, values: Mapping[str, Any]) -> None:
    """Append {'step': step, **values} as one line of `path`."""
    with open(path, "a") as f:
        f.write(json.dumps({"step": int(step), **values}, sort_keys=True) + "\n")


def _parse(path: str, number: int, line: str, last: bool) -> dict | None:
    """One row; None for a torn last line (a run killed while writing it); ValueError naming
    the file and line for any other line that is not a JSON object."""
    try:
        row = json.loads(line)
    except ValueError:
        row = None
    if isinstance(row, dict):
        return row
    if last and not line.endswith("\n"):
        return None
    raise ValueError(
        f"{path}, line {number}: not a JSON object; delete or repair that line "
        "(metrics.jsonl holds one JSON object per line)."
    )


def read_metrics(workdir: str) -> list[dict]:
    """Rows of workdir/metrics.jsonl (what the trainer wrote), in order; [] when absent. A torn
    last line (no newline, not JSON: a kill while it was written) is dropped with a warning."""
    path = os.path.join(workdir, METRICS_FILE)
    if not os.path.exists(path):
        return []
    with open(path) as f:
        lines = f.readlines()
    rows = []
    for i, line in enumerate(lines):
        if line.strip():
            row = _parse(path, i + 1, line, last=i == len(lines) - 1)
            if row is None:
                logging.warning("%s: dropped its torn last line %d (%r)", path, i + 1, line[:80])
            else:
                rows.append(row)
    return rows


def drop_torn_tail(workdir: str) -> bool:
    """Cut a torn last line off workdir/metrics.jsonl (so that the next row starts on a line of
    its own); True when one was cut."""
    path = os.path.join(workdir, METRICS_FILE)
    if not os.path.exists(path):
        return False
    with open(path, "rb") as f:
        data = f.read()
    if not data or data.endswith(b"\n"):
        return False
    keep = data.rfind(b"\n") + 1
    try:
        json.loads(data[keep:])
    except ValueError:
        with open(path, "r+b") as f:
            f.truncate(keep)
        logging.warning("%s: dropped its torn last line (%r)", path, data[keep:][:80])
        return True
    with open(path, "ab") as f:  # a whole last row without its newline
        f.write(b"\n")
    return False
