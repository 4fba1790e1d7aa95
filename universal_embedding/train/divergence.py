"""After a NaN stop: which saved step is worth resuming from (finite and not collapsed).

A run that diverges often collapses first: its loss sits at ln(classes) and its gradient norm
at 0 for a while, still finite, and checkpoints of those steps are saved. Resuming from one
diverges again at once. `worth_resuming` picks the newest saved step whose logged loss and
gradient norm (the step's own metrics when known, else the last summary row of
metrics.jsonl at or before it) are finite with a gradient norm above COLLAPSED_GRAD_NORM;
`set_aside` moves the newer steps to W/checkpoints/diverged/ so that a rerun resumes there.
"""

from __future__ import annotations

import math
import os
import shutil
from collections.abc import Iterable, Mapping

COLLAPSED_GRAD_NORM = 1e-8  # a training step with a smaller global gradient norm learns nothing
DIVERGED = "diverged"  # W/checkpoints/diverged/<step>: steps set aside after a NaN stop


def healthy(loss: float, grad_norm: float) -> bool:
    """Finite loss and gradient norm, and a gradient norm above COLLAPSED_GRAD_NORM."""
    return math.isfinite(loss) and math.isfinite(grad_norm) and grad_norm > COLLAPSED_GRAD_NORM


def step_health(
    rows: Iterable[Mapping], per_step: Mapping[int, tuple[float, float]]
) -> dict[int, tuple[float, float]]:
    """{step: (loss, grad_norm)} from metrics.jsonl summary rows (train/loss, train/grad_norm)
    and, overriding them, the per-step metrics still in memory (`per_step`)."""
    out = {
        int(r["step"]): (float(r["train/loss"]), float(r["train/grad_norm"]))
        for r in rows
        if "train/loss" in r and "train/grad_norm" in r
    }
    out.update(per_step)
    return out


def worth_resuming(
    saved: Iterable[int], health: Mapping[int, tuple[float, float]]
) -> tuple[int | None, list[int]]:
    """(newest saved step worth resuming from or None, newer saved steps that are not): a step
    is judged by the metrics of the newest logged step at or before it (kept when none is)."""
    known = sorted(health)
    bad: list[int] = []
    for step in sorted(saved, reverse=True):
        before = [s for s in known if s <= step]
        if not before or healthy(*health[before[-1]]):
            return step, sorted(bad)
        bad.append(step)
    return None, sorted(bad)


def set_aside(latest_dir: str, steps: Iterable[int]) -> str:
    """Move latest_dir/<step> folders to <latest_dir>/../diverged/; returns that folder."""
    target = os.path.join(os.path.dirname(os.path.abspath(latest_dir)), DIVERGED)
    for step in steps:
        os.makedirs(target, exist_ok=True)
        dest, n = os.path.join(target, str(step)), 1
        while os.path.exists(dest):
            dest, n = os.path.join(target, f"{step}.{n}"), n + 1
        shutil.move(os.path.join(latest_dir, str(step)), dest)
    return target
