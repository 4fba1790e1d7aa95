"""After a NaN stop the message names a checkpoint worth resuming from; a rerun resumes there."""

from __future__ import annotations

import json
import math
import os

import numpy as np
import pytest

from universal_embedding import checkpoint, writers
from universal_embedding.train import divergence, guards

LN10 = math.log(10.0)  # the loss of a collapsed 10-class head


def test_worth_resuming_skips_collapsed_steps():
    health = {2: (2.1, 0.8), 4: (LN10, 0.0), 6: (LN10, 0.0)}
    assert divergence.worth_resuming([2, 4, 6], health) == (2, [4, 6])
    assert divergence.worth_resuming([2, 4], {1: (2.0, 0.5), 3: (1.9, 0.4)}) == (4, [])
    assert divergence.worth_resuming([4], {4: (math.nan, 1.0)}) == (None, [4])
    assert divergence.worth_resuming([4], {}) == (4, [])  # nothing logged: kept


def test_step_health_prefers_the_steps_own_metrics():
    rows = [{"step": 3, "train/loss": 2.0, "train/grad_norm": 0.5}, {"step": 3, "lr/heads": 1}]
    assert divergence.step_health(rows, {3: (LN10, 0.0), 4: (1.0, 1.0)}) == {
        3: (LN10, 0.0),
        4: (1.0, 1.0),
    }


class FakeCheckpoints:
    def __init__(self, workdir: str, steps: list[int]):
        self.workdir = workdir
        for s in steps:
            os.makedirs(os.path.join(checkpoint.checkpoint_dir(workdir), str(s)))
        self.steps = steps

    def saved_steps(self):
        return sorted(self.steps)

    def latest_step(self):
        return max(self.steps)

    def wait(self):
        pass

    def close(self):
        pass


def test_nan_stop_names_a_step_worth_resuming_and_sets_the_collapsed_ones_aside(tmp_path):
    # Summaries every 2 steps: step 2 learns, steps 4 and 6 have collapsed (loss ln 10,
    # gradient norm 0); step 7's loss is NaN. Checkpoints at 2, 4, 6.
    workdir = str(tmp_path)
    with open(os.path.join(workdir, writers.METRICS_FILE), "w") as f:
        for step, loss, norm in [(2, 2.1, 0.7), (4, LN10, 0.0), (6, LN10, 0.0)]:
            f.write(json.dumps({"step": step, "train/loss": loss, "train/grad_norm": norm}) + "\n")
    ckpts = FakeCheckpoints(workdir, [2, 4, 6])
    pending = [(0, {"loss": np.float32(math.nan), "grad_norm": np.float32(0.0)})]
    with pytest.raises(guards.NonFinite) as e:
        guards.check_finite(pending, 7, ("cars",), ckpts)
    diverged = os.path.join(workdir, "checkpoints", "diverged")
    assert str(e.value) == (
        "non-finite loss at step 7 (domain cars); last good checkpoint: step 2. Steps 4, 6 had "
        f"collapsed (gradient norm <= 1e-08 or not finite in metrics.jsonl) and were moved to "
        f"{diverged}. Lower config.lr or set config.grad_clip_norm and rerun: it resumes from "
        "step 2."
    )
    assert os.listdir(checkpoint.checkpoint_dir(workdir)) == ["2"]  # the rerun resumes there
    assert sorted(os.listdir(diverged)) == ["4", "6"]
