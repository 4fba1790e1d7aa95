"""Several embeddings per image (docs/udon-method.md §5): extraction, evaluation, results keys.

`embedd_to_eval` may list several model outputs, e.g. 'universal_student_embedd,teacher_embedd'.
Each evaluated domain is embedded with its own teacher (the domain's position in the model's
training domains, matched by name, not by position in knn_eval_names: docs/udon-method.md
pitfall 4).
Descriptor dicts then hold 'domain/split/embedding' keys (one name: plain 'domain/split').
Results: the first listed ("universal") embedding under the usual keys, so results.json,
best-checkpoint choice and reports read it unchanged; every other one under
'<embedding>/<usual key>' (logged as knn/<embedding>/<key>, like the original).
Teacher results on the merged index mix 8 teacher spaces: diagnostic only.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from universal_embedding.distributed import mesh as mesh_lib
from universal_embedding.knn import evaluate as knn_evaluate
from universal_embedding.knn import extract
from universal_embedding.loading import embedder

TEACHER = "teacher_embedd"
PLAIN = embedder.EMBEDDINGS  # outputs the single-embedding path embeds


def parse_embeddings(spec: str | Sequence[str]) -> tuple[str, ...]:
    """'universal_student_embedd,teacher_embedd' -> the names, in order, each once."""
    names = spec.split(",") if isinstance(spec, str) else list(spec)
    names = tuple(dict.fromkeys(n.strip() for n in names if n.strip()))
    if not names:
        raise ValueError("config.embedd_to_eval is empty: name at least one embedding.")
    return names


def is_multi(names: Sequence[str]) -> bool:
    """Whether the multi-embedding path is needed (several names, or a non-plain output)."""
    return len(names) > 1 or names[0] not in PLAIN


def check_names(model, names: Sequence[str]) -> None:
    """Raise naming the valid outputs when the model cannot produce one of `names`."""
    valid = _outputs(model)
    bad = [n for n in names if n not in valid]
    if bad:
        raise ValueError(
            f"config.embedd_to_eval names {bad}, which this model does not output; "
            f"valid: {', '.join(valid)}."
        )


def _outputs(model) -> tuple[str, ...]:
    if hasattr(model, "domains"):  # UDON
        from universal_embedding.models import udon

        return udon.EMBEDDINGS
    return PLAIN


@functools.lru_cache(maxsize=4)
def embed_fn(model, names: tuple[str, ...]):
    """jit fn(params, images, domain) -> [B, sum of dims]: the named outputs side by side."""
    with_domain = TEACHER in names

    def embed(params, images, domain):
        kwargs = {"domain": domain} if with_domain else {}
        out = model.apply({"params": params}, images, train=False, head=None, **kwargs)
        return jnp.concatenate([out[n].astype(jnp.float32) for n in names], axis=-1)

    return jax.jit(embed)


def teacher_index(model, domain: str) -> int:
    """Position of `domain` among the model's training domains (its teacher)."""
    domains = tuple(getattr(model, "domains", ()))
    if domain not in domains:
        raise ValueError(
            f"Domain '{domain}' has no teacher: the model was trained on {list(domains)}. "
            f"Drop {TEACHER} from config.embedd_to_eval or evaluate trained domains only."
        )
    return domains.index(domain)


def output_dims(model, params, names: tuple[str, ...], image_size: int) -> list[int]:
    """Width of each named output (shape inference only)."""
    images = jax.ShapeDtypeStruct((1, image_size, image_size, 3), jnp.float32)
    kwargs = {"domain": 0} if TEACHER in names else {}

    def outputs(p, x):
        return model.apply({"params": p}, x, train=False, head=None, **kwargs)

    shapes = jax.eval_shape(outputs, params, images)
    return [int(shapes[n].shape[-1]) for n in names]


def extract_descriptors(
    model,
    params,
    names: tuple[str, ...],
    keys: Sequence[str],
    batches_for,
    counts: Mapping[str, int],
    by_key: Mapping[str, Sequence[str]],
    mesh,
    image_size: int,
) -> dict[str, np.ndarray]:
    """{'domain/split/embedding' (one name: 'domain/split'): [n, d]} for every key."""
    jitted = embed_fn(model, names)
    dims = output_dims(model, params, names, image_size)
    bounds = np.cumsum([0, *dims])
    out: dict[str, np.ndarray] = {}
    for domain in dict.fromkeys(k.split("/", 1)[0] for k in keys):
        index = teacher_index(model, domain) if TEACHER in names else 0
        idx = jnp.asarray(index, jnp.int32)
        fn = mesh_lib.host_embed_fn(lambda p, x, i=idx: jitted(p, x, i), params, mesh)
        mine = [k for k in keys if k.split("/", 1)[0] == domain]
        paths = {k: v for k, v in by_key.items() if k in mine}
        both = extract.extract_splits(fn, mine, batches_for, counts, paths)
        for key, rows in both.items():
            for n, name in enumerate(names):
                part = np.ascontiguousarray(rows[:, bounds[n] : bounds[n + 1]])
                out[f"{key}/{name}" if len(names) > 1 else key] = part
    return out


def by_embedding(
    descriptors: Mapping[str, np.ndarray], names: Sequence[str]
) -> dict[str, dict[str, np.ndarray]]:
    """{'d/s/e': x} -> {e: {'d/s': x}} (one name: the dict as it is)."""
    if len(names) == 1:
        return {names[0]: dict(descriptors)}
    out: dict[str, dict[str, np.ndarray]] = {n: {} for n in names}
    for key, value in descriptors.items():
        base, _, name = key.rpartition("/")
        if name in out:
            out[name][base] = value
    return out


def evaluate(
    descriptors: Mapping[str, np.ndarray],
    labels: Mapping,
    plan: knn_evaluate.EvalPlan,
    names: Sequence[str],
    keep_neighbours: bool = False,
) -> knn_evaluate.KnnOutput:
    """Every embedding evaluated; names[0] under the usual keys, others prefixed '<name>/'."""
    import dataclasses

    merged: knn_evaluate.KnnOutput | None = None
    for n, (name, descr) in enumerate(by_embedding(descriptors, names).items()):
        out = knn_evaluate.run_evaluation(
            descr, labels, **dataclasses.asdict(plan), keep_neighbours=keep_neighbours and n == 0
        )
        if merged is None:
            merged = out
            continue
        merged.results.update({f"{name}/{k}": v for k, v in out.results.items()})
        for k, v in out.timings.items():
            merged.timings[k] = merged.timings.get(k, 0.0) + v
    assert merged is not None
    return merged


def results_of(results: Mapping[str, float], name: str | None) -> dict[str, float]:
    """One embedding's results under the usual keys (None: the universal one)."""
    if name is None:
        return {k: v for k, v in results.items() if "/" not in k}
    prefix = f"{name}/"
    return {k[len(prefix) :]: v for k, v in results.items() if k.startswith(prefix)}
