"""Evaluate saved descriptors on UnED kNN setups -> workdir/results.{json,csv,md,html} (+ the
original's results_original.json) and a printed table.

    python -m universal_embedding.descr_eval \
        --config=universal_embedding/configs/config_knn_descr_eval.py --workdir=W \
        --config.descr_path=P --config.info_files_dir=I [--config.knn_eval_names=cars,sop]

P: .npz, or JSON in the original or UDON layout (the original's descriptors_step_<step>.pkl
files are JSON and are read as such; nothing is ever unpickled). With
--config.save_descriptors=True the descriptors are written again in descriptor_format
('npz': W/descriptors.npz; 'original': W/descriptors/descriptors_step_<step>.pkl): a converter.
Imports neither TensorFlow, the models nor orbax: descriptors and info files are all it reads.
Holds the workdir's lock (W/train.lock) like every command that writes into a workdir.
"""

from __future__ import annotations

import os
import re

from absl import logging

from universal_embedding import runner, settings
from universal_embedding.checkpoint.lock import WorkdirLock
from universal_embedding.errors import command
from universal_embedding.knn.descriptors import descriptor_file, load_descriptors
from universal_embedding.knn.evaluate import evaluate_with_info_files
from universal_embedding.report import results_files, table

MODEL_OUTPUTS = ("projected", "backbone_out")  # embedd_to_eval values that name no file entry


def embedding_choice(config) -> str | None:
    """Which embedding of a several-embedding (UDON) file: descr_embedding, else the first name
    in embedd_to_eval unless that is a model output; None: the file's default."""
    if config.get("descr_embedding"):
        return config.descr_embedding
    names = [n.strip() for n in (config.get("embedd_to_eval") or "").split(",") if n.strip()]
    if names and names[0] not in MODEL_OUTPUTS:
        return names[0]
    return None


def input_step(path: str) -> int:
    """The step of an original descriptors_step_<step> file name; -1 (best) for other names."""
    found = re.fullmatch(r"descriptors_step_(-?\d+)\.\w+", os.path.basename(path))
    return int(found.group(1)) if found else -1


def descr_eval(config, workdir: str) -> dict[str, float]:
    """evaluate_descriptors holding the workdir's lock (checkpoint/lock.py): a training or
    another command writing into the same workdir refuses to start, and this one refuses while
    one runs (the lock needs no orbax: this command stays light)."""
    with WorkdirLock(workdir):
        return evaluate_descriptors(config, workdir)


def evaluate_descriptors(config, workdir: str) -> dict[str, float]:
    """Load config.descr_path and evaluate it with the config's kNN plan; write results."""
    if not config.descr_path:
        raise ValueError(
            "--config.descr_path is required (a .npz, .json or original .pkl descriptor file)."
        )
    settings.register_domains(config)
    plan = settings.eval_plan(config)
    output = settings.descriptor_output(config)
    out_path = descriptor_file(output, workdir, input_step(config.descr_path))
    descriptors = load_descriptors(config.descr_path, embedding_choice(config))
    out = evaluate_with_info_files(descriptors, plan, config.info_files_dir)
    saved = descriptors if output.save else None
    run = {"model": f"saved descriptors {os.path.basename(config.descr_path)}"}
    paths = results_files.write_outputs(workdir, out.results, plan, saved, out_path, run)
    logging.info(
        "kNN evaluation: validate %.1fs, search %.1fs, metrics %.1fs",
        out.timings["validate"],
        out.timings["search"],
        out.timings["metrics"],
    )
    print(table.titled_table(out.results, plan.domains, plan.knn_names, plan.k), flush=True)
    command.print_written(paths.values())
    return out.results


def cli() -> None:
    """The `ue-descr-eval` command."""
    runner.run(descr_eval, defaults="config_knn_descr_eval")


if __name__ == "__main__":
    cli()
