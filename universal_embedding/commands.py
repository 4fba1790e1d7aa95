"""The `ue-*` console scripts: each imports its command's module only when run.

A plain `pip install .` (or `.[serve]`) has neither JAX nor TensorFlow; every command but the
ONNX embedder needs the `train` extra. Run without it, a command stops with one line naming the
missing package and the install that brings it, instead of an import traceback.
"""

from __future__ import annotations

import importlib
import sys

# console script -> "module:function" it runs (pyproject.toml [project.scripts] names these).
TARGETS = {
    "train": "universal_embedding.main:cli",
    "knn": "universal_embedding.knn_main:cli",
    "descr_eval": "universal_embedding.descr_eval:cli",
    "extract_dir": "universal_embedding.extract_dir_descriptors:cli",
    "convert": "universal_embedding.convert:cli",
    "prepare": "universal_embedding.data.prepare:cli",
    "synthetic": "universal_embedding.data.synthetic:cli",
    "demo": "universal_embedding.demo:cli",
    "export": "universal_embedding.export:cli",
    "index": "universal_embedding.index:cli",
    "download_models": "universal_embedding.download_models:cli",
}
# Top-level modules of the `train` extra's packages (pyproject.toml).
TRAIN_MODULES = frozenset(
    "jax jaxlib flax optax orbax clu ml_collections absl tensorflow tensorflow_datasets "
    "tensorboard tqdm faiss safetensors".split()
)
INSTALL_HINT = "pip install 'universal_embedding[train]'"


def missing_train_package(error: ModuleNotFoundError) -> str | None:
    """The train-extra package whose absence raised `error`, else None (another cause)."""
    top = (error.name or "").split(".")[0]
    return top if top in TRAIN_MODULES else None


def launch(name: str) -> None:
    """Import and run the command `name` of TARGETS; a missing train-extra package ends the
    program with one line on stderr and exit status 1."""
    module, function = TARGETS[name].split(":")
    try:
        main = getattr(importlib.import_module(module), function)
    except ModuleNotFoundError as e:
        package = missing_train_package(e)
        if package is None:
            raise
        print(
            f"error (missing dependency): the {name} command needs '{package}', which comes "
            f"with the train extra: {INSTALL_HINT}",
            file=sys.stderr,
        )
        raise SystemExit(1) from None
    main()


def _command(name: str):
    def run() -> None:
        launch(name)

    run.__name__ = run.__qualname__ = name
    run.__doc__ = f"The console script of `{TARGETS[name].split(':')[0]}`."
    return run


train, knn, descr_eval, extract_dir, convert, prepare, synthetic, demo, export, index = (
    _command(n) for n in list(TARGETS)[:10]
)
download_models = _command("download_models")
