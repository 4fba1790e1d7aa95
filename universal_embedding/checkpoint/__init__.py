"""Orbax checkpoints of a training workdir: the latest/best series and reading params back."""

from universal_embedding.checkpoint.lock import WorkdirLock, WorkdirLocked
from universal_embedding.checkpoint.repair import ModelMismatch, NoIntactCheckpoint
from universal_embedding.checkpoint.restore import parse_which, restore_params
from universal_embedding.checkpoint.series import (
    BEST,
    LATEST,
    Checkpoints,
    DiskFull,
    checkpoint_dir,
)

__all__ = [
    "BEST",
    "LATEST",
    "Checkpoints",
    "DiskFull",
    "ModelMismatch",
    "NoIntactCheckpoint",
    "WorkdirLock",
    "WorkdirLocked",
    "checkpoint_dir",
    "parse_which",
    "restore_params",
]
