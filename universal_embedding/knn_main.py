"""kNN evaluation of a trained (train_dir) or pretrained (pretrained_ckpt) model on UnED.

python -m universal_embedding.knn_main --config=universal_embedding/configs/config_knn_vit.py \
    --workdir=W --config.train_dir=T
Extracts every split the chosen kNN setups need (once each; shuffled train splits are put in
info-file order by record key, so train_knn works too), evaluates them with knn/evaluate.py
and writes W/results.{json,csv,md,html}, W/results_original.json (the original's layout),
W/descriptors.npz (with --config.descriptor_format=original instead the original's
<descr_save_path or train_dir>/descriptors/descriptors_step_<step>.pkl; W/descriptors.json on
request) and, with save_neighbors=True, W/neighbours.html (+ neighbours_2.html, ...).
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import jax
import ml_collections
from absl import logging

from universal_embedding import loading, runner, settings, writers
from universal_embedding.checkpoint.lock import WorkdirLock
from universal_embedding.checkpoint.restore import parse_which
from universal_embedding.checkpoint.series import BEST, LATEST, checkpoint_dir, step_folders
from universal_embedding.errors import command
from universal_embedding.knn import descriptors as knn_descriptors
from universal_embedding.knn import evaluator
from universal_embedding.report import gallery_images, results_files, table


def write_neighbours(
    config: ml_collections.ConfigDict, workdir: str, found: Mapping, infos: Mapping
) -> list[str]:
    """W/neighbours.html (+ _2, ...) with the config's gallery settings: images are the bytes
    stored in eval_dataset_dir's TFRecords; images_dir ('' = <info_files_dir>/../images) only
    gives the links to the originals."""
    return gallery_images.write_neighbours(
        workdir,
        found,
        infos,
        images_dir=images_dir(config),
        tfds_dir=config.eval_dataset_dir,
        num_queries=config.neighbours_queries,
        seed=config.rng_seed,
        k=config.top_k,
        thumb_size=config.neighbours_thumb_size,
        per_page=config.neighbours_per_page,
    )


def images_dir(config: ml_collections.ConfigDict) -> str:
    """config.images_dir, or <info_files_dir>/../images when it is ''."""
    return config.images_dir or gallery_images.default_images_dir(config.info_files_dir)


def descriptor_step(config: ml_collections.ConfigDict, restored: int | None = None) -> int:
    """The step in the original's descriptor file name: -1 for the best checkpoint, the step
    `restored` (what load_model read: an older step when the newest was unreadable) or else N
    for step N and the newest saved step for 'latest', 0 for pretrained or random weights (as
    the original named its test_pretrained_features run)."""
    if not config.train_dir:
        return 0
    series, step = parse_which(config.checkpoint)
    if series == BEST:
        return -1
    if restored is not None:
        return restored
    if step is not None:
        return step
    return max(step_folders(checkpoint_dir(config.train_dir, LATEST)), default=0)


def checkpoint_label(config: ml_collections.ConfigDict, restored: int | None = None) -> str:
    """What was evaluated, for results.html: '<train_dir name> best checkpoint, step N' (or
    latest, or '<name>, step N'), 'pretrained <file name>', or 'random initialisation'.
    N is `restored` (the step load_model read) when given."""
    if not config.train_dir:
        if config.pretrained_ckpt:
            return f"pretrained {os.path.basename(config.pretrained_ckpt)}"
        return "random initialisation"
    step = descriptor_step(config, restored)
    if step == -1:  # the best checkpoint: its step is the folder name inside best/
        step = (
            restored
            if restored is not None
            else max(step_folders(checkpoint_dir(config.train_dir, BEST)), default=-1)
        )
    where = os.path.basename(os.path.normpath(config.train_dir))
    if not str(config.checkpoint).isdigit():
        where += f" {config.checkpoint} checkpoint"
    return f"{where}, step {step}" if step >= 0 else where


def run_knn(config: ml_collections.ConfigDict, workdir: str) -> dict[str, float]:
    """Extract, evaluate and write every output; returns the flat results."""
    settings.register_domains(config)
    plan = settings.eval_plan(config)
    spec, source = settings.model_and_weights(config)  # missing weights fail before any data
    output = settings.descriptor_output(config)
    knn_descriptors.descriptor_format(output.format)  # a bad format fails before any work
    data = settings.eval_data(config, spec)
    loaded = loading.load_model(spec, source)
    step = descriptor_step(config, loaded.step)  # the step read, not the newest on disk
    descriptor_path = knn_descriptors.descriptor_file(output, workdir, step)
    knn = evaluator.KnnEvaluator(loaded.model, plan, data, config.embedd_to_eval)
    evaluator.check_record_counts(data.tfds_dir, knn.infos, data.info_files_dir)
    descriptors = knn.descriptors(loaded.params)
    out = knn.evaluate(descriptors, keep_neighbours=config.save_neighbors)
    logging.info("kNN timings (s): %s", out.timings)
    if jax.process_index() != 0:
        return out.results
    written = [os.path.join(workdir, "knn_config.json")]
    writers.write_config_json(config.to_dict(), written[0])
    saved = descriptors if output.save else None
    model = f"{loaded.spec.model_class} {loaded.spec.model_type}"
    run = {"model": model, "checkpoint": checkpoint_label(config, loaded.step)}
    written += results_files.write_outputs(
        workdir, out.results, plan, saved, descriptor_path, run
    ).values()
    if output.save_json:
        written.append(os.path.join(workdir, "descriptors.json"))
        knn_descriptors.save_json(written[-1], descriptors)
    if config.save_neighbors:
        written += write_neighbours(config, workdir, out.neighbours, knn.infos)
    print(table.titled_table(out.results, plan.domains, plan.knn_names, plan.k), flush=True)
    command.print_written(written)
    return out.results


def main(config: ml_collections.ConfigDict, workdir: str) -> None:
    """run_knn holding the workdir's lock (checkpoint/lock.py): a training or another command
    writing into the same workdir refuses to start, and this one refuses while one runs."""
    with WorkdirLock(workdir, enabled=jax.process_index() == 0):
        run_knn(config, workdir)


def cli() -> None:
    """The `ue-knn` command."""
    runner.run(main, defaults="config_knn_vit")


if __name__ == "__main__":
    cli()
