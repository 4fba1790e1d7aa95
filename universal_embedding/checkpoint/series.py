"""Orbax checkpoints under <workdir>/checkpoints/{latest,best}.

latest: the whole train state plus a small JSON dict (rng, best metric, ...), every
config.checkpoint_steps, keeping config.max_checkpoints_to_keep. best: params only plus
{'step', 'metric'}, replaced whenever the metric (mean merged val R@1) improves.
Orbax writes into a temporary directory and renames it when complete, so a save cut
short (crash, SIGKILL) is never listed as a step.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Mapping
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp
from absl import logging as absl_logging

from universal_embedding.checkpoint.full_disk import (
    DiskFull,
    failed_save,
    no_space,
    quiet_full_disk_records,
    remove_partial_saves,
)

LATEST = "latest"
BEST = "best"


def checkpoint_dir(workdir: str, which: str = LATEST) -> str:
    """<workdir>/checkpoints/<latest|best>."""
    return os.path.join(os.path.abspath(workdir), "checkpoints", which)


def step_folders(folder: str) -> list[int]:
    """The steps saved in a series folder (its all-digit entries), ascending; [] when the
    folder does not exist."""
    if not os.path.isdir(folder):
        return []
    return sorted(int(n) for n in os.listdir(folder) if n.isdigit())


def _jsonable(value: Any) -> Any:
    """numpy scalars/arrays and tuples -> plain JSON types."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (np.ndarray, jax.Array)):
        return np.asarray(value).tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


def _manager(path: str, max_to_keep: int, async_save: bool, items: tuple, policy=None):
    options = ocp.CheckpointManagerOptions(
        max_to_keep=max_to_keep,
        enable_async_checkpointing=async_save,
        create=True,
        save_decision_policy=policy,
    )
    return ocp.CheckpointManager(path, options=options, item_names=items)


def _save_policy(interval: int, steps: tuple[int, ...]):
    """Orbax decides: every `interval` steps, at `steps`, and at a multi-host preemption point."""
    policies = ocp.checkpoint_managers
    return policies.AnySavePolicy(
        [
            policies.FixedIntervalPolicy(interval),
            policies.SpecificStepsPolicy(frozenset(steps)),
            policies.PreemptionCheckpointingPolicy(),
        ]
    )


class Checkpoints:
    """The two checkpoint series of one training run (all processes must call the same methods)."""

    def __init__(
        self,
        workdir: str,
        *,
        checkpoint_steps: int,
        max_to_keep: int,
        async_save: bool = True,
        save_on_steps: tuple[int, ...] = (),
    ) -> None:
        if checkpoint_steps <= 0 or max_to_keep <= 0:
            raise ValueError(
                f"checkpoint_steps ({checkpoint_steps}) and max_checkpoints_to_keep "
                f"({max_to_keep}) must be positive."
            )
        self._workdir = workdir
        quiet_full_disk_records()
        policy = _save_policy(int(checkpoint_steps), tuple(save_on_steps))
        latest_dir = checkpoint_dir(workdir, LATEST)
        self._latest = _manager(latest_dir, max_to_keep, async_save, ("state", "extra"), policy)
        self._best = _manager(checkpoint_dir(workdir, BEST), 1, async_save, ("params", "extra"))
        best_step = self._best.latest_step()
        self._best_metric: float | None = None
        if best_step is not None:
            self._best_metric = self._read_best_metric(best_step)

    def _read_best_metric(self, step: int) -> float | None:
        """The metric of best step `step`; a best checkpoint that cannot say (its extra/ gone
        or damaged) is moved to checkpoints/corrupt/ with a warning: it blocks no resume, and
        the next validation saves a new best."""
        from universal_embedding.checkpoint import repair

        try:
            info = self._best.restore(step, args=ocp.args.Composite(extra=ocp.args.JsonRestore()))
            return float(info["extra"]["metric"])
        except Exception as e:  # noqa: BLE001 - whatever the reader raises, the step is unusable
            target = repair.set_aside(self._best, self._workdir, [step])
            absl_logging.warning(
                "Best checkpoint step %d under %s is damaged (%s); moved it to %s.",
                step, self._best.directory, repair.reason(e), target,
            )  # fmt: skip
            return None

    @property
    def workdir(self) -> str:
        return self._workdir

    # ---- latest ----
    def saved_steps(self) -> list[int]:
        """Steps of the complete latest checkpoints, oldest first."""
        return sorted(self._latest.all_steps())

    def latest_step(self) -> int | None:
        """Step of the newest complete latest checkpoint, or None."""
        return self._latest.latest_step()

    def should_save(self, step: int) -> bool:
        """The manager's decision: a multiple of checkpoint_steps, a `save_on_steps` step or a
        multi-host preemption point, newer than the latest checkpoint. Call it every step."""
        return self._latest.should_save(step)

    def reached_preemption(self, step: int) -> bool:
        """True at the step where all processes of a preempted multi-host run save and stop."""
        return self._latest.reached_preemption(step)

    def save_latest(
        self, step: int, state: Any, extra: Mapping[str, Any] | None = None, force: bool = False
    ) -> bool:
        """Save state + extra as step `step` when the manager says so (or `force`, e.g. on a
        signal); True if a save started. Never saves a step at or before the latest one.

        Asynchronous: arrays are copied to host before this returns, so the caller may
        donate `state` to the next train step right away; the files land in the background.
        """
        latest = self.latest_step()
        if latest is not None and step <= latest:
            return False
        args = ocp.args.Composite(
            state=ocp.args.PyTreeSave(state), extra=ocp.args.JsonSave(_jsonable(extra or {}))
        )
        with self._storage(f"step {step}"):
            self._one_save_in_flight(self._best)
            return self._latest.save(step, args=args, force=force)

    def restore_latest(self, template: Any, step: int | None = None) -> tuple[Any, dict]:
        """(state, extra) of the newest intact (or `step`) checkpoint, laid out like `template`.

        `template` holds jax.Arrays or jax.ShapeDtypeStructs with shardings (e.g. a freshly
        created TrainState); restored arrays get the template's shardings and dtypes. Steps
        that cannot be read are skipped with a warning and moved to checkpoints/corrupt/
        (see `repair.restore_newest_intact`).
        """
        from universal_embedding.checkpoint import repair

        def restore(s: int) -> tuple[Any, dict]:
            repair.check_params_shapes(self._latest, s, template)
            restore_args = ocp.checkpoint_utils.construct_restore_args(template)
            args = ocp.args.Composite(
                state=ocp.args.PyTreeRestore(item=template, restore_args=restore_args),
                extra=ocp.args.JsonRestore(),
            )
            out = self._latest.restore(s, args=args)
            return out["state"], dict(out["extra"] or {})

        steps = sorted(self._latest.all_steps(), reverse=True) if step is None else [step]
        if not steps:
            raise FileNotFoundError(f"No complete checkpoint under {self._latest.directory}.")
        return repair.restore_newest_intact(self._latest, self._workdir, steps, restore)

    # ---- best ----
    @property
    def best_metric(self) -> float | None:
        """Metric of the saved best checkpoint (None before the first)."""
        return self._best_metric

    def save_best_if_better(
        self, step: int, params: Any, metric: float, extra: Mapping[str, Any] | None = None
    ) -> bool:
        """Save params as the best checkpoint when `metric` beats the best so far (higher wins)."""
        metric = float(metric)
        if math.isnan(metric):
            return False
        if self._best_metric is not None and metric <= self._best_metric:
            return False
        info = {**_jsonable(extra or {}), "step": int(step), "metric": metric}
        if step in self._best.all_steps():  # re-evaluated after a resume: replace it
            self._best.delete(step)
        args = ocp.args.Composite(params=ocp.args.PyTreeSave(params), extra=ocp.args.JsonSave(info))
        with self._storage(f"the best checkpoint (step {step})"):
            self._one_save_in_flight(self._latest)
            self._best.save(step, args=args, force=True)
        self._best_metric = metric
        return True

    def best_step(self) -> int | None:
        """Step of the best checkpoint, or None."""
        return self._best.latest_step()

    # ---- lifetime ----
    def wait(self) -> None:
        """Block until pending asynchronous saves are on disk; DiskFull (one line) when the
        disk filled up during one."""
        with self._storage("a checkpoint"):
            self._latest.wait_until_finished()
            self._best.wait_until_finished()

    @staticmethod
    def _one_save_in_flight(other: ocp.CheckpointManager) -> None:
        """With several processes, let the other series' pending save finish first: two
        managers committing at once let the processes' commit barriers cross (one process then
        finalises a step before the other wrote its part, and the other waits forever)."""
        if jax.process_count() > 1:
            other.wait_until_finished()

    @contextlib.contextmanager
    def _storage(self, what: str):
        """Turn a full disk during a save into DiskFull, removing the partial save so that the
        newest intact step stays the one a rerun resumes from."""
        try:
            yield
        except Exception as e:
            if not no_space(e):
                raise
            folders = (str(self._latest.directory), str(self._best.directory))
            what = failed_save(*folders, what)
            if jax.process_index() == 0:
                remove_partial_saves(folders)
            steps = step_folders(folders[0])
            last = f"step {steps[-1]}" if steps else "none (a rerun starts from step 0)"
            raise DiskFull(
                f"No space left on device while saving {what} under {os.path.dirname(folders[0])}"
                f" (the partial save was removed; last intact checkpoint: {last}). Free space "
                "or lower config.max_checkpoints_to_keep, then rerun the same command."
            ) from None

    def close(self) -> None:
        """Finish pending saves and release resources."""
        self.wait()
        self._latest.close()
        self._best.close()
