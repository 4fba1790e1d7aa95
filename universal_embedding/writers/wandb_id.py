"""The W&B run id of a workdir, kept in `<workdir>/wandb_run_id` so a resumed run logs to the
same W&B run (`wandb.init(id=..., resume="allow")`) instead of opening a new one."""

from __future__ import annotations

import os
import uuid

RUN_ID_FILE = "wandb_run_id"


def run_id(workdir: str) -> str:
    """The id stored in workdir (created on first use)."""
    path = os.path.join(workdir, RUN_ID_FILE)
    if os.path.exists(path):
        with open(path) as f:
            stored = f.read().strip()
        if stored:
            return stored
    os.makedirs(workdir, exist_ok=True)
    new = uuid.uuid4().hex[:16]
    with open(path, "w") as f:
        f.write(new + "\n")
    return new
