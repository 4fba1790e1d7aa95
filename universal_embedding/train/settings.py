"""`TrainSettings`: the typed values the trainer takes, built once by the entry point
(universal_embedding/train_settings.py:train_settings) from the config."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from universal_embedding.knn.descriptors import DescriptorOutput
from universal_embedding.knn.evaluate import EvalPlan
from universal_embedding.knn.evaluator import EvalData
from universal_embedding.loading import WeightSource
from universal_embedding.models.spec import ModelSpec
from universal_embedding.train.method import MethodSettings
from universal_embedding.train.optimizers import OptimizerSettings
from universal_embedding.train.plan import PlanSettings


@dataclasses.dataclass(frozen=True)
class TrainData:
    """Where and how the training batches are read (data/train_stream.py)."""

    tfds_dir: str  # train_dataset_dir
    image_size: int
    resize_size: int  # resize to this square, then random crop image_size
    shuffle_buffer_size: int
    reduced_decode: bool  # reduced_jpeg_decode
    threads: int  # input_threads (0: all usable cores)
    seed: int  # rng_seed: domain d's stream is seeded seed * 1000 + d's registry id


@dataclasses.dataclass(frozen=True)
class RunSettings:
    """Checkpointing, logging and the end of the run."""

    max_checkpoints_to_keep: int
    wandb: Mapping[str, Any]  # config.wandb as a dict (enabled, project, group, entity, name)
    stop_after_steps: int  # debug: leave the loop after this step, as if killed; 0 = off
    do_final_testing: bool  # test kNN on the best checkpoint at the end
    # fields whose change against the workdir's config.json alters a resumed run
    # (resume_check.py, set by the entry point); a resume with any stops unless allowed
    config_changes: tuple[str, ...] = ()
    resume_changed_config: bool = False


@dataclasses.dataclass(frozen=True)
class TrainSettings:
    """Everything the trainer reads: the model, its starting weights, the plan's inputs, the
    optimiser, the method (losses, sampling), the training data, the evaluation data and plans,
    the descriptor output, the run's checkpoint/logging settings, and the config as a plain dict
    (written as config.json and logged as hparams, never read)."""

    model: ModelSpec
    weights: WeightSource
    plan: PlanSettings
    optimizer: OptimizerSettings
    method: MethodSettings
    data: TrainData
    eval_data: EvalData
    validation_plan: EvalPlan | None
    test_plan: EvalPlan
    descriptors: DescriptorOutput
    run: RunSettings
    config_dict: Mapping[str, Any]
