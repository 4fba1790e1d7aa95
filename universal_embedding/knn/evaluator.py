"""The kNN evaluator: embed the splits some kNN setups need, then score them.

One `KnnEvaluator` per set of kNN setups: it reads the info files (labels, counts) once,
embeds every needed split with given params on all devices (TFRecord input; shuffled train
splits are put back in info-file order by record key) and scores them with knn/evaluate.py.
The trainer's validation and final test, `knn_main` and the demo all use it.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterable, Mapping

import jax
import numpy as np

from universal_embedding.data import info_files
from universal_embedding.distributed import mesh as mesh_lib
from universal_embedding.knn import evaluate as knn_evaluate
from universal_embedding.knn import extract, multi_embedding
from universal_embedding.loading import embedder

# Mean merged val R@1: the number that picks the best checkpoint.
BEST_METRIC = "average:common:val_knn:top_1"


@dataclasses.dataclass(frozen=True)
class EvalData:
    """Where the evaluated splits are and how their images are prepared."""

    tfds_dir: str
    info_files_dir: str
    batch_size: int  # global; rounded up to a multiple of the device count when used
    image_size: int
    normalization: str  # 'clip' | 'imagenet'


def split_batches(data: EvalData) -> Callable[[str, str], Iterable[dict]]:
    """batches_for(domain, split): this process's evaluation batches of one split."""
    from universal_embedding.data import input_pipeline  # TensorFlow only when evaluating

    batch_size = mesh_lib.global_batch_size(data.batch_size)

    def batches_for(domain: str, split: str) -> Iterable[dict]:
        return input_pipeline.eval_batches(
            data.tfds_dir,
            domain,
            split,
            batch_size=batch_size,
            image_size=data.image_size,
            normalization=data.normalization,
            process_index=jax.process_index(),
            process_count=jax.process_count(),
            with_keys=extract.is_shuffled(f"{domain}/{split}"),
        )

    return batches_for


def check_record_counts(
    tfds_dir: str, infos: Mapping[str, info_files.InfoSplit], info_files_dir: str
) -> None:
    """Raise when a split's TFRecords and info file disagree (before extracting): record
    counts, and for splits stored in info-file order the record keys, row by row."""
    from universal_embedding.data import input_pipeline, record_keys

    for key, info in infos.items():
        domain, split = key.split("/", 1)
        n = input_pipeline.num_records(tfds_dir, domain, split)
        if n != len(info):
            raise ValueError(
                f"Domain '{domain}', split '{split}': the TFRecords in {tfds_dir} hold {n} "
                f"images but its info file lists {len(info)}. Re-convert the split from the "
                "same info file."
            )
        if not extract.is_shuffled(key):
            record_keys.check_record_keys(tfds_dir, domain, split, info.paths, info_files_dir)


class KnnEvaluator:
    """Embeds the splits a kNN plan needs and evaluates them (separate and merged)."""

    def __init__(
        self,
        model,
        plan: knn_evaluate.EvalPlan,
        data: EvalData,
        embedd_to_eval: str,
        mesh=None,
    ) -> None:
        self.plan = plan
        self.data = data
        self._mesh = mesh_lib.make_mesh() if mesh is None else mesh
        # Several embeddings (UDON: 'universal_student_embedd,teacher_embedd'): knn/multi_embedding
        self.embeddings = multi_embedding.parse_embeddings(embedd_to_eval)
        self._model = model
        if multi_embedding.is_multi(self.embeddings):
            multi_embedding.check_names(model, self.embeddings)
        else:
            self._embed = embedder.cached_embed_fn(model, self.embeddings[0])
        self.keys = tuple(knn_evaluate.required_splits(plan.domains, plan.knn_names))
        self.infos = info_files.load_splits(data.info_files_dir, self.keys)
        self.labels = {k: info.labels for k, info in self.infos.items()}

    def descriptors(self, params) -> dict[str, np.ndarray]:
        """{'domain/split': [n, d] float32} for every needed split, rows in info-file order.

        `params` (without heads is enough) may be host arrays or already replicated.
        """
        params = jax.device_put(params, mesh_lib.replicated(self._mesh))
        counts = {key: len(info) for key, info in self.infos.items()}
        # Train splits are stored shuffled: their rows are put in info-file order by record key.
        by_key = {k: i.paths for k, i in self.infos.items() if extract.is_shuffled(k)}
        batches_for = split_batches(self.data)
        if multi_embedding.is_multi(self.embeddings):  # keys 'domain/split/embedding'
            return multi_embedding.extract_descriptors(
                self._model, params, self.embeddings, self.keys, batches_for, counts, by_key,
                self._mesh, self.data.image_size,
            )  # fmt: skip
        embed_fn = mesh_lib.host_embed_fn(self._embed, params, self._mesh)
        return extract.extract_splits(embed_fn, self.keys, batches_for, counts, by_key)

    def evaluate(
        self, descriptors: Mapping[str, np.ndarray], keep_neighbours: bool = False
    ) -> knn_evaluate.KnnOutput:
        """Results (docs/uned-benchmark.md §7 keys), neighbours on request, timings."""
        if multi_embedding.is_multi(self.embeddings):
            return multi_embedding.evaluate(
                descriptors, self.labels, self.plan, self.embeddings, keep_neighbours
            )
        return knn_evaluate.run_evaluation(
            descriptors,
            self.labels,
            **dataclasses.asdict(self.plan),
            keep_neighbours=keep_neighbours,
        )

    def run(self, params) -> tuple[dict[str, float], dict[str, np.ndarray]]:
        """(results, descriptors) for `params`."""
        descr = self.descriptors(params)
        return self.evaluate(descr).results, descr


def best_metric(results: Mapping[str, float]) -> float:
    """The value that ranks checkpoints (NaN when merged val R@1 was not computed)."""
    return float(results.get(BEST_METRIC, math.nan))
