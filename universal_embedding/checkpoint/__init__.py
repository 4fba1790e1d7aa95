"""Orbax checkpoints of a training workdir: the latest/best series and reading params back.

The workdir lock (lock.py) is imported eagerly and needs no orbax: commands that only write
results (descr_eval) take it without paying orbax's import. Everything else loads on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

from universal_embedding.checkpoint.lock import WorkdirLock, WorkdirLocked

# name -> module defining it, imported when the name is first used (they import orbax).
_LAZY = {
    "ModelMismatch": "universal_embedding.checkpoint.repair",
    "NoIntactCheckpoint": "universal_embedding.checkpoint.repair",
    "parse_which": "universal_embedding.checkpoint.restore",
    "restore_params": "universal_embedding.checkpoint.restore",
    "BEST": "universal_embedding.checkpoint.series",
    "LATEST": "universal_embedding.checkpoint.series",
    "Checkpoints": "universal_embedding.checkpoint.series",
    "DiskFull": "universal_embedding.checkpoint.series",
    "checkpoint_dir": "universal_embedding.checkpoint.series",
}

__all__ = ["WorkdirLock", "WorkdirLocked", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
