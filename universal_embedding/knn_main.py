"""kNN evaluation of a trained (train_dir) or pretrained (pretrained_ckpt) model on UnED.

python -m universal_embedding.knn_main --config=universal_embedding/configs/config_knn_vit.py \
    --workdir=W --config.train_dir=T
Extracts every split the chosen kNN setups need (once each; shuffled train splits are put in
info-file order by record key, so train_knn works too), evaluates them with knn/evaluate.py
and writes W/results.{json,csv,md}, W/descriptors.npz (W/descriptors.json on request) and, with
save_neighbors=True, W/neighbours.html.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence

import jax
import ml_collections
import numpy as np
from absl import logging

from universal_embedding import app
from universal_embedding.data import info_files
from universal_embedding.knn import descriptors as knn_descriptors
from universal_embedding.knn import evaluate, extract, neighbours, report


def load_infos(info_files_dir: str, keys: Sequence[str]) -> dict[str, info_files.InfoSplit]:
    """The info file of every 'domain/split' key."""
    return {key: info_files.load_split(info_files_dir, *key.split("/", 1)) for key in keys}


def check_record_counts(
    tfds_dir: str, infos: Mapping[str, info_files.InfoSplit], info_files_dir: str = ""
) -> dict:
    """{key: count}; raises when a split's TFRecords and info file disagree (before extracting):
    record counts, and for splits stored in info-file order the record keys, row by row."""
    from universal_embedding.data import input_pipeline, record_keys

    counts = {}
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
        counts[key] = n
    return counts


def extract_descriptors(
    config: ml_collections.ConfigDict, infos: Mapping[str, info_files.InfoSplit]
) -> dict[str, np.ndarray]:
    """Load the model the config names and embed every split in `infos` (TFRecord input)."""
    from universal_embedding.data import input_pipeline
    from universal_embedding.data.normalization import normalization_name

    counts = check_record_counts(config.eval_dataset_dir, infos, config.info_files_dir)
    model, params, mconfig = extract.load_model(config)
    norm = normalization_name(mconfig.model_class, mconfig.normalization)
    batch_size = extract.global_batch_size(config.eval_batch_size)

    def batches_for(domain: str, split: str):
        return input_pipeline.eval_batches(
            config.eval_dataset_dir,
            domain,
            split,
            batch_size=batch_size,
            image_size=mconfig.image_size,
            normalization=norm,
            process_index=jax.process_index(),
            process_count=jax.process_count(),
            with_keys=extract.is_shuffled(f"{domain}/{split}"),
        )

    # Train splits are stored shuffled: their rows are put in info-file order by record key.
    by_key = {key: info.paths for key, info in infos.items() if extract.is_shuffled(key)}
    embed_fn = extract.make_embedder(model, params, config.embedd_to_eval)
    return extract.extract_splits(embed_fn, list(infos), batches_for, counts, by_key)


def image_loader(config: ml_collections.ConfigDict, infos: Mapping[str, info_files.InfoSplit]):
    """Loader for neighbours.html: original files under images_dir, else the TFRecord bytes."""
    from universal_embedding.data import image_files, record_images

    images_dir = config.get("images_dir", "") or os.path.join(
        os.path.dirname(os.path.normpath(config.info_files_dir)), "images"
    )

    def load(key: str, positions: Sequence[int]) -> dict[int, bytes | None]:
        paths = infos[key].paths
        out: dict[int, bytes | None] = {}
        for p in positions:
            full = image_files.resolve_path(images_dir, paths[p])
            if full is not None:
                with open(full, "rb") as f:
                    out[p] = f.read()
        missing = [p for p in positions if p not in out]
        if missing:
            domain, split = key.split("/", 1)
            try:
                found = record_images.read_images_by_key(
                    config.eval_dataset_dir, domain, split, [paths[p] for p in missing]
                )
            except FileNotFoundError as e:
                logging.warning("No images for %s in neighbours.html: %s", key, e)
                found = {}
            out.update({p: found.get(paths[p]) for p in missing})
        return out

    return load


def write_neighbours(config, workdir: str, found: Mapping, infos: Mapping) -> str:
    """W/neighbours.html from the evaluation's neighbour lists (every kNN setup and protocol)."""
    labels = {key: info.labels for key, info in infos.items()}
    sections = neighbours.build_sections(
        found, labels, num_queries=config.get("neighbours_queries", 8), seed=config.rng_seed
    )
    return neighbours.write_neighbours_html(
        os.path.join(workdir, "neighbours.html"),
        sections,
        image_loader(config, infos),
        {key: info.paths for key, info in infos.items()},
        k=config.top_k,
        thumb_size=config.get("neighbours_thumb_size", 128),
    )


def run_knn(config: ml_collections.ConfigDict, workdir: str) -> dict[str, float]:
    """Extract, evaluate and write every output; returns the flat results."""
    plan = evaluate.plan_from_config(config)
    extract.check_weights_source(config)  # fail on missing weights before reading any data
    extract.resolve_model_config(config)
    keys = evaluate.required_splits(plan.domains, plan.knn_names)
    infos = load_infos(config.info_files_dir, keys)
    descriptors = extract_descriptors(config, infos)
    out = evaluate.run_evaluation(
        descriptors,
        {key: info.labels for key, info in infos.items()},
        **dataclasses.asdict(plan),
        keep_neighbours=bool(config.save_neighbors),
    )
    logging.info("kNN timings (s): %s", out.timings)
    if jax.process_index() != 0:
        return out.results
    extract.save_run_config(config, workdir, "knn_config.json")
    report.write_results(workdir, out.results, plan.domains, plan.knn_names, plan.k)
    if config.save_descriptors:
        knn_descriptors.save_npz(os.path.join(workdir, "descriptors.npz"), descriptors)
    if config.get("save_json_descriptors", False):
        knn_descriptors.save_json(os.path.join(workdir, "descriptors.json"), descriptors)
    if config.save_neighbors:
        logging.info("Wrote %s", write_neighbours(config, workdir, out.neighbours, infos))
    print(report.format_table(out.results, plan.domains, plan.knn_names, plan.k), flush=True)
    return out.results


def main(config: ml_collections.ConfigDict, workdir: str) -> None:
    run_knn(config, workdir)


if __name__ == "__main__":
    app.run(main)
