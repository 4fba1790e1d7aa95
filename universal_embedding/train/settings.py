"""`TrainSettings`: the typed values the trainer takes, built once by the entry point
(universal_embedding.settings.train_settings) from the config."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from universal_embedding.knn.descriptors import DescriptorOutput
from universal_embedding.knn.evaluate import EvalPlan
from universal_embedding.knn.evaluator import EvalData
from universal_embedding.loading import WeightSource
from universal_embedding.models.spec import ModelSpec


@dataclasses.dataclass(frozen=True)
class TrainSettings:
    """The model, its starting weights, the evaluation data and plans, the descriptor output and
    the config as a plain dict (written as config.json and logged as hparams)."""

    model: ModelSpec
    weights: WeightSource
    eval_data: EvalData
    validation_plan: EvalPlan | None
    test_plan: EvalPlan
    descriptors: DescriptorOutput
    config_dict: Mapping[str, Any]
