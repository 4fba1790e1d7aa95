"""kNN evaluation inside training: val splits every log_eval_steps, test splits at the end.

One `KnnEvaluator` per set of kNN setups: it reads the info files (labels, counts) once,
embeds every needed split with the current params on all devices, and scores them with
knn/evaluate.py, the same code knn_main and descr_eval use.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping

import jax
import ml_collections
import numpy as np
from absl import logging

from universal_embedding.data import info_files, registry
from universal_embedding.knn import descriptors as knn_descriptors
from universal_embedding.knn import evaluate as knn_evaluate
from universal_embedding.knn import extract as knn_extract
from universal_embedding.knn import report
from universal_embedding.train import steps

# Mean merged val R@1: the number that picks the best checkpoint.
BEST_METRIC = "average:common:val_knn:top_1"


class KnnEvaluator:
    """Embeds the splits some kNN setups need and evaluates them (separate and merged)."""

    def __init__(
        self,
        config: ml_collections.ConfigDict,
        model,
        mesh,
        plan: knn_evaluate.EvalPlan,
        normalization: str,
    ) -> None:
        self.plan = plan
        self._config = config
        self._mesh = mesh
        self._norm = normalization
        self._embed = steps.make_embed_fn(model, config.embedd_to_eval)
        self.keys = tuple(knn_evaluate.required_splits(plan.domains, plan.knn_names))
        infos = {
            k: info_files.load_split(config.info_files_dir, *k.split("/", 1)) for k in self.keys
        }
        self.labels = {k: info.labels for k, info in infos.items()}
        # Train splits are stored shuffled: their rows are put in info-file order by record key.
        self._by_key = {k: i.paths for k, i in infos.items() if knn_extract.is_shuffled(k)}
        n_dev = jax.device_count()
        self._batch = -(-int(config.eval_batch_size) // n_dev) * n_dev  # divisible by devices

    def descriptors(self, params) -> dict[str, np.ndarray]:
        """{'domain/split': [n, d] float32} for every needed split, rows in info-file order."""
        from universal_embedding.data import input_pipeline  # TensorFlow only when evaluating

        embed_fn = steps.host_embed_fn(self._embed, params, self._mesh)

        def batches_for(domain: str, split: str):
            return input_pipeline.eval_batches(
                self._config.eval_dataset_dir,
                domain,
                split,
                batch_size=self._batch,
                image_size=int(self._config.image_size),
                normalization=self._norm,
                process_index=jax.process_index(),
                process_count=jax.process_count(),
                with_keys=knn_extract.is_shuffled(f"{domain}/{split}"),
            )

        counts = {key: len(labels) for key, labels in self.labels.items()}
        return knn_extract.extract_splits(embed_fn, self.keys, batches_for, counts, self._by_key)

    def evaluate(self, descriptors: Mapping[str, np.ndarray]) -> dict[str, float]:
        """Flat results (UNED_SPEC section 7 keys) of these descriptors."""
        p = self.plan
        return knn_evaluate.evaluate(
            descriptors,
            self.labels,
            domains=p.domains,
            separate_knns=p.separate_knns,
            merged_knns=p.merged_knns,
            k=p.k,
            backend=p.backend,
        )

    def run(self, params) -> tuple[dict[str, float], dict[str, np.ndarray]]:
        """(results, descriptors) for `params`."""
        descr = self.descriptors(params)
        return self.evaluate(descr), descr


def validation_evaluator(config, model, mesh, normalization: str) -> KnnEvaluator | None:
    """Evaluator of config.eval_knns minus the disabled ones (None when nothing is left)."""
    if not registry.parse_knn_names(config.eval_knns):
        return None
    plan = knn_evaluate.plan_from_config(config)
    return KnnEvaluator(config, model, mesh, plan, normalization)


def test_evaluator(config, model, mesh, normalization: str) -> KnnEvaluator:
    """Evaluator of the final test: test_knn, separate and merged (the official protocol)."""
    plan = knn_evaluate.EvalPlan(
        domains=tuple(d.name for d in registry.parse_domains(config.knn_eval_names)),
        separate_knns=("test_knn",),
        merged_knns=("test_knn",),
        k=int(config.top_k),
        backend=str(config.knn_search),
    )
    return KnnEvaluator(config, model, mesh, plan, normalization)


def summary_scalars(results: Mapping[str, float]) -> dict[str, float]:
    """Results as TensorBoard scalars (knn/..., mp/..., map/..., skipped/... when non-zero)."""
    return report.summary_scalars(results)


def best_metric(results: Mapping[str, float]) -> float:
    """The value that ranks checkpoints (NaN when merged val R@1 was not computed)."""
    value = results.get(BEST_METRIC, math.nan)
    return float(value)


def write_test_outputs(
    workdir: str,
    evaluator: KnnEvaluator,
    results: Mapping[str, float],
    descriptors: Mapping[str, np.ndarray] | None,
) -> None:
    """W/results.{json,csv,md,html} (+ W/descriptors.npz with descriptors); process 0 only."""
    if jax.process_index() != 0:
        return
    p = evaluator.plan
    report.write_results(workdir, dict(results), p.domains, p.knn_names, p.k)
    if descriptors is not None:
        path = os.path.join(workdir, "descriptors.npz")
        knn_descriptors.save_npz(path, dict(descriptors))
        logging.info("Wrote %s", path)
