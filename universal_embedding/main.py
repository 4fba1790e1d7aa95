"""Train a universal embedding: `python -m universal_embedding.main --config=... --workdir=W`."""

from __future__ import annotations

from universal_embedding import runner
from universal_embedding.train import trainer


def cli() -> None:
    """The `ue-train` command."""
    runner.run(trainer.train_and_evaluate, defaults="config_train_vit")


if __name__ == "__main__":
    cli()
