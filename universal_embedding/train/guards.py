"""Stop a diverged run before it writes a non-finite checkpoint.

Train-step metrics stay on device; `check_finite` reads the loss and gradient norm of the
steps since the last check only where the trainer syncs anyway (the summary interval) or
must be sure (before every validation and checkpoint save). Saved states are therefore
always finite, and the error names the first bad step, its domain and the last good save.
"""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging

from universal_embedding import checkpoint, writers
from universal_embedding.train import divergence


class ConfigChanged(ValueError):
    """A resume whose config changes what the resumed run computes."""


def check_unchanged(changes, allowed: bool, workdir: str, step: int) -> None:
    """ConfigChanged naming `changes` (resume_check.py) unless `allowed`, then a warning."""
    if not changes:
        return
    listed = "; ".join(changes)
    if not allowed:
        raise ConfigChanged(
            f"{workdir} resumes from step {step} with a config that changes what it computes "
            f"({listed}): use a new workdir, or rerun with the workdir's config.json values, or "
            "add --config.resume_changed_config=True to continue anyway."
        )
    logging.warning(
        "resuming step %d with config changes (resume_changed_config): %s", step, listed
    )


class NonFinite(SystemExit):
    """The loss or gradient norm became NaN/inf; the run stops without saving."""


@jax.jit
def _all_finite(tree) -> jax.Array:
    leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)]
    return jnp.all(jnp.stack(leaves)) if leaves else jnp.bool_(True)


def first_non_finite(pending: list, last_step: int) -> tuple[int, int, str] | None:
    """(step, domain index, what) of the first pending (domain, metrics) with NaN/inf.

    `pending` holds the steps last_step - len(pending) + 1 .. last_step in order.
    """
    host = jax.device_get([(m["loss"], m["grad_norm"]) for _, m in pending])
    first = last_step - len(pending) + 1
    for i, ((d, _), (loss, grad_norm)) in enumerate(zip(pending, host, strict=True)):
        if not np.isfinite(loss):
            return first + i, d, "loss"
        if not np.isfinite(grad_norm):
            return first + i, d, "gradient norm"
    return None


def check_finite(pending: list, step: int, domains, ckpts, params=None, on_stop=None) -> None:
    """NonFinite (after `on_stop()` and closing `ckpts`) when a pending step's loss/grad norm,
    or `params`, is not finite; nothing otherwise."""
    bad = first_non_finite(pending, step) if pending else None
    if bad is None and params is not None and not bool(_all_finite(params)):
        bad = (step, pending[-1][0] if pending else None, "parameters")
    if bad is None:
        return
    at, d, what = bad
    if on_stop is not None:
        on_stop()
    ckpts.wait()
    last, collapsed = _resumable(ckpts, pending, step)
    ckpts.close()
    note = _set_aside(ckpts.workdir, collapsed)
    domain = domains[d] if d is not None else "?"
    raise NonFinite(
        f"non-finite {what} at step {at} (domain {domain}); last good checkpoint: "
        + (f"step {last}" if last is not None else "none (rerunning starts from step 0)")
        + f".{note} Lower config.lr or set config.grad_clip_norm and rerun"
        + (f": it resumes from step {last}." if last is not None else ".")
    )


def _resumable(ckpts, pending: list, step: int) -> tuple[int | None, list[int]]:
    """(the saved step worth resuming from, the newer saved steps that had collapsed:
    train/divergence.py), judged by the pending steps' metrics and metrics.jsonl."""
    saved = ckpts.saved_steps()
    if not saved:
        return None, []
    first = step - len(pending) + 1
    host = jax.device_get([(m["loss"], m["grad_norm"]) for _, m in pending])
    per_step = {first + i: (float(a), float(b)) for i, (a, b) in enumerate(host)}
    health = divergence.step_health(writers.read_metrics(ckpts.workdir), per_step)
    return divergence.worth_resuming(saved, health)


def _set_aside(workdir: str, collapsed: list[int]) -> str:
    """Move the collapsed steps to W/checkpoints/diverged/ (process 0); the sentence saying so."""
    if not collapsed:
        return ""
    where = os.path.join(os.path.dirname(checkpoint.checkpoint_dir(workdir)), divergence.DIVERGED)
    if jax.process_index() == 0:
        where = divergence.set_aside(checkpoint.checkpoint_dir(workdir), collapsed)
    steps = ", ".join(map(str, collapsed))
    return (
        f" Steps {steps} had collapsed (gradient norm <= {divergence.COLLAPSED_GRAD_NORM:g} or "
        f"not finite in metrics.jsonl) and were moved to {where}."
    )
