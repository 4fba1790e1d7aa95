"""A model plus its weights from a config (pretrained file, training workdir, random), and the
jitted embedder every evaluator uses."""

from universal_embedding.loading.embedder import (
    EmbedFn,
    cached_embed_fn,
    make_embed_fn,
    make_embedder,
)
from universal_embedding.loading.model import (
    LoadedModel,
    check_same_numerics,
    initial_params,
    load_model,
    resolve_model_config,
    weights_source,
    without_heads,
)

__all__ = [
    "EmbedFn",
    "cached_embed_fn",
    "LoadedModel",
    "check_same_numerics",
    "initial_params",
    "load_model",
    "make_embed_fn",
    "make_embedder",
    "resolve_model_config",
    "weights_source",
    "without_heads",
]
