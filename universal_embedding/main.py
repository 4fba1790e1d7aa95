"""Train a universal embedding: `python -m universal_embedding.main --config=... --workdir=W`.

It ends by printing the final test's results table (when the config tests) and what it wrote
in W: checkpoints/, config.json, metrics.jsonl, TensorBoard events, results.*.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping

import jax
import ml_collections

from universal_embedding import config_checks, resume_check, runner, settings
from universal_embedding.checkpoint.lock import LOCK_FILE
from universal_embedding.errors import command
from universal_embedding.knn.evaluate import EvalPlan
from universal_embedding.report import table
from universal_embedding.train import trainer


def run_outputs(workdir: str) -> list[str]:
    """The entries of a training workdir, sorted (its lock file and hidden files left out)."""
    if not os.path.isdir(workdir):
        return []
    names = [n for n in sorted(os.listdir(workdir)) if n != LOCK_FILE and not n.startswith(".")]
    return [os.path.join(workdir, n) for n in names]


def report(workdir: str, results: Mapping[str, float], plan: EvalPlan) -> None:
    """The results table of the final test (none when it did not run), then what was written."""
    if results:
        print(table.titled_table(results, plan.domains, plan.knn_names, plan.k), flush=True)
    command.print_written(run_outputs(workdir))


def main(config: ml_collections.ConfigDict, workdir: str) -> dict[str, float]:
    """Register the config's own domains (domains_file), check the config (config_checks.py:
    a bad one fails before anything is written), build the trainer's typed settings once,
    then train and test; process 0 prints the results and the files written."""
    settings.register_domains(config)
    config_checks.check_train_config(config)  # before anything is written
    ts = settings.train_settings(config)
    changes = resume_check.config_changes(config, workdir)
    ts = dataclasses.replace(ts, run=dataclasses.replace(ts.run, config_changes=changes))
    results = trainer.train_and_evaluate(workdir, ts)
    if jax.process_index() == 0:
        report(workdir, results, ts.test_plan)
    return results


def cli() -> None:
    """The `ue-train` command."""
    runner.run(main, defaults="config_train_vit")


if __name__ == "__main__":
    cli()
