"""Training arithmetic from the info files actually present: sizes, classes, steps, schedule.

Pure bookkeeping (no TensorFlow, no devices), so it is the same on every process and
cheap to test: the real UnED and the synthetic mini-UnED differ only in what the info
files say.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from universal_embedding.data import info_files
from universal_embedding.train import optimizers, samplers


@dataclasses.dataclass(frozen=True)
class PlanSettings:
    """What the plan is computed from: the config's domains, sizes and intervals."""

    domains: tuple[str, ...]  # registered training domains, in config order (dataset_name)
    info_files_dir: str  # <dir>/<domain>/train.json give the sizes and classes
    batch_size: int  # global
    num_epochs: float  # over the summed training sets
    num_training_steps: int  # > 0 overrides num_epochs
    classifier: str  # 'separate' | 'joint'
    frozen_epochs: float  # -1: frozen for all of training
    log_eval_steps: int  # intervals: N > 0 steps, -N: N times per epoch (see every_steps)
    checkpoint_steps: int
    log_summary_steps: int


@dataclasses.dataclass(frozen=True)
class SamplingSettings:
    """How the domain of every step is drawn (train/samplers.py)."""

    strategy: str  # one of samplers.STRATEGIES
    shares: tuple[float, ...] | None  # specialist_top_steps only: one share per domain
    seed: int  # rng_seed


@dataclasses.dataclass(frozen=True)
class TrainPlan:
    """Everything the loop needs to know about step counts and label spaces."""

    domains: tuple[str, ...]  # training domains, in config order
    train_sizes: tuple[int, ...]  # records per domain's train split
    num_classes: tuple[int, ...]  # classes per domain (max train label + 1)
    batch_size: int  # global
    steps_per_epoch: int
    total_steps: int
    frozen_steps: int  # backbone + projection frozen for steps [0, frozen_steps)
    log_eval_steps: int
    checkpoint_steps: int
    joint: bool
    log_summary_steps: int = 1

    @property
    def label_offsets(self) -> tuple[int, ...]:
        """Joint head: each domain's labels shifted by the preceding domains' class counts."""
        if not self.joint:
            return (0,) * len(self.domains)
        return tuple(int(x) for x in np.cumsum((0,) + self.num_classes[:-1]))

    @property
    def classes_per_head(self) -> dict[str, int]:
        """{domain: classes} for separate heads, {'joint': total} for one joint head."""
        if self.joint:
            return {"joint": sum(self.num_classes)}
        return dict(zip(self.domains, self.num_classes, strict=True))

    def head_of(self, domain: str) -> str:
        """Name of the head a domain's batches train."""
        return "joint" if self.joint else domain


def _epochs_to_steps(epochs: float, steps_per_epoch: int) -> int:
    return int(round(float(epochs) * steps_per_epoch))


def every_steps(value: int, steps_per_epoch: int, zero: int) -> int:
    """Period in steps of a config interval: N > 0 steps; -N: N times per epoch
    (steps_per_epoch // N, at least 1, as the original's `*_frequency` fields); 0: `zero`."""
    if value > 0:
        return int(value)
    if value < 0:
        return max(1, steps_per_epoch // -int(value))
    return zero


def make_plan(
    ps: PlanSettings,
    train_sizes: dict[str, int] | None = None,
    num_classes: dict[str, int] | None = None,
) -> TrainPlan:
    """The TrainPlan of `ps`; sizes/classes are read from the info files unless given."""
    domains = ps.domains
    if ps.classifier not in ("separate", "joint"):
        raise ValueError(f"config.classifier must be 'separate' or 'joint', not {ps.classifier!r}.")
    sizes, classes = [], []
    for d in domains:
        if train_sizes is None or num_classes is None:
            split = info_files.load_split(ps.info_files_dir, d, "train")
            if not len(split):
                raise ValueError(f"Training split of '{d}' in {ps.info_files_dir} is empty.")
            sizes.append(len(split))
            classes.append(int(split.labels.values.max()) + 1)
        else:
            sizes.append(int(train_sizes[d]))
            classes.append(int(num_classes[d]))
    batch_size = ps.batch_size
    steps_per_epoch = sum(sizes) // batch_size
    if steps_per_epoch < 1:
        raise ValueError(
            f"batch_size {batch_size} is larger than all training sets together ({sum(sizes)} "
            f"images in {ps.info_files_dir}): lower config.batch_size."
        )
    if ps.num_training_steps > 0:
        total = ps.num_training_steps
    else:
        total = _epochs_to_steps(ps.num_epochs, steps_per_epoch)
    if total < 1:
        raise ValueError(
            "No training steps: set config.num_epochs or config.num_training_steps > 0."
        )
    frozen = optimizers.frozen_steps(ps.frozen_epochs, steps_per_epoch, total)
    log_eval = every_steps(ps.log_eval_steps, steps_per_epoch, zero=steps_per_epoch)
    ckpt = every_steps(ps.checkpoint_steps, steps_per_epoch, zero=steps_per_epoch)
    return TrainPlan(
        domains=domains,
        train_sizes=tuple(sizes),
        num_classes=tuple(classes),
        batch_size=batch_size,
        steps_per_epoch=steps_per_epoch,
        total_steps=total,
        frozen_steps=min(frozen, total),
        log_eval_steps=log_eval,
        checkpoint_steps=ckpt,
        joint=ps.classifier == "joint",
        log_summary_steps=every_steps(ps.log_summary_steps, steps_per_epoch, zero=1),
    )


def domain_schedule(sampling: SamplingSettings, plan: TrainPlan) -> np.ndarray:
    """Domain position (index into plan.domains) of every step, fixed by the sampling seed."""
    return np.asarray(
        samplers.domain_schedule(
            sampling.strategy,
            plan.domains,
            plan.train_sizes,
            plan.total_steps,
            sampling.seed,
            shares=sampling.shares,
        )
    )
