"""A model plus its weights from a model spec and a weight source (pretrained file, training
workdir, random), and the jitted embedder every evaluator uses."""

from universal_embedding.loading.embedder import (
    EmbedFn,
    cached_embed_fn,
    make_embed_fn,
    make_embedder,
)
from universal_embedding.loading.model import (
    LoadedModel,
    WeightSource,
    check_loaded,
    check_same_numerics,
    initial_params,
    load_model,
    normalization_of,
    resolve_spec,
    weights_source,
    without_heads,
)

__all__ = [
    "EmbedFn",
    "cached_embed_fn",
    "LoadedModel",
    "check_loaded",
    "check_same_numerics",
    "initial_params",
    "load_model",
    "make_embed_fn",
    "make_embedder",
    "normalization_of",
    "resolve_spec",
    "WeightSource",
    "weights_source",
    "without_heads",
]
