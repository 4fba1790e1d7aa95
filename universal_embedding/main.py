"""Train a universal embedding: `python -m universal_embedding.main --config=... --workdir=W`."""

from __future__ import annotations

import ml_collections

from universal_embedding import runner, settings
from universal_embedding.train import trainer


def main(config: ml_collections.ConfigDict, workdir: str) -> dict[str, float]:
    """Register the config's own domains (domains_file), build the trainer's typed settings
    once, then train and test."""
    settings.register_domains(config)
    return trainer.train_and_evaluate(workdir, settings.train_settings(config))


def cli() -> None:
    """The `ue-train` command."""
    runner.run(main, defaults="config_train_vit")


if __name__ == "__main__":
    cli()
