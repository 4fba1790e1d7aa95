"""Memory of the compiled train step from XLA's memory analysis (issue 24).

For each row (model class and size) and each remat setting, the project's real train step
(`train/steps.make_train_step`: embedding model, UnED's eight separate heads with their real
class counts in one program, normalised-softmax loss, the training optimiser, uint8 batches
normalised on the device, the state donated) is lowered and compiled for abstract inputs
(jax.eval_shape / jax.ShapeDtypeStruct: no parameter, optimiser state or batch is ever
allocated), and `compiled.memory_analysis()` is read. One device holds the whole batch.

  python benchmarks/memory.py                          # ViT-B/16 and ViT-L/14, batch 256, bf16
  python benchmarks/memory.py --rows vit_with_embedding:L/16 --remat true --out m.json
  python benchmarks/memory.py --tiny                   # tiny model, the same code (seconds)

What XLA counts (bytes of one device): arguments (params, Adam state, step, the batch),
outputs (the new state and the metrics), alias (outputs written into donated arguments),
temporaries (every intermediate buffer of the program at its buffer assignment, activations
kept for the backward pass included) and generated code. The estimate of the step's footprint
is arguments + outputs - alias + temporaries. It is the compiler's plan for the backend that
compiled it: run on a CPU it is XLA:CPU's plan (other fusions than the GPU compiler's, no
cuDNN workspaces), and it leaves out the runtime: allocator fragmentation, the framework's
own buffers, other programs' live arrays (the evaluation's, a prefetched batch).
Needs jax, flax, optax, numpy and ml_collections; never imports TensorFlow.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

# XLA:CPU orders its program for concurrency by default, which keeps far more buffers alive
# than a memory-minimising order (ViT-B/16: 67.7 GB of temporaries instead of 46.6 GB, and
# remat then saves nothing); the GPU compiler schedules with a memory limit. Set before JAX.
CPU_FLAG = "--xla_cpu_enable_concurrency_optimized_scheduler=false"
if CPU_FLAG.split("=")[0] not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + CPU_FLAG).strip()

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from universal_embedding import settings  # noqa: E402
from universal_embedding.configs import base  # noqa: E402
from universal_embedding.data import normalization, registry  # noqa: E402
from universal_embedding.distributed import mesh as mesh_lib  # noqa: E402
from universal_embedding.models import embedding_model  # noqa: E402
from universal_embedding.train import optimizers, steps  # noqa: E402

ROWS = "vit_with_embedding:B/16,clip_vit_with_embedding:L/14"
ACCELERATOR_BYTES = 80e9  # an 80 GB accelerator (H100 80GB, A100 80GB)
JAX_DEFAULT_FRACTION = 0.75  # JAX's default GPU preallocation: 75% of the card
GB = 1e9


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rows", default=ROWS, help="model_class:model_type, comma separated")
    p.add_argument("--batch_size", type=int, default=256, help="global batch, on one device")
    p.add_argument("--image_size", type=int, default=224)
    p.add_argument("--dtype", default="bfloat16", choices=("float32", "bfloat16"))
    p.add_argument("--attention", default="xla", help="config.model.attention")
    p.add_argument("--remat", default="false,true", help="remat settings to compile")
    p.add_argument("--tiny", action="store_true", help="tiny ViT, 32 px, batch 8, 100 classes")
    p.add_argument("--out", default="", help="JSON file, rewritten after every row")
    args = p.parse_args(argv)
    if args.tiny:
        args.batch_size, args.image_size = 8, 32
    return args


def make_config(model_class: str, model_type: str, args, remat: bool):
    """Base config (full training: nothing frozen) with the row's model and compute settings."""
    c = base.get_config()
    c.model_class, c.model_type, c.image_size = model_class, model_type, args.image_size
    c.model.dtype, c.model.attention, c.model.remat = args.dtype, args.attention, remat
    c.frozen_epochs = 0.0
    if args.tiny:
        c.model.hidden_size, c.model.num_heads, c.model.mlp_dim = 64, 2, 128
        c.model.num_layers, c.model.patch_size = 2, 8
    return c


def classes_per_head(tiny: bool) -> dict[str, int]:
    """UnED's eight separate heads with their training class counts (100 each for --tiny)."""
    return {d.name: (100 if tiny else d.num_train_classes) for d in registry.DOMAINS}


def abstract_inputs(model, tx, config, batch_size: int, mesh):
    """(state, batch, head) as ShapeDtypeStructs placed like the trainer places them."""
    rep, sharded = mesh_lib.replicated(mesh), mesh_lib.data_sharded(mesh)
    size = config.image_size
    params = jax.eval_shape(
        lambda k: embedding_model.init_params(model, k, size), jax.random.key(0)
    )
    state = steps.TrainState(
        step=jax.ShapeDtypeStruct((), jnp.int32),
        params=params,
        opt_state=jax.eval_shape(tx.init, params),
    )
    state = jax.tree_util.tree_map(
        lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=rep), state
    )
    batch = {
        "images": jax.ShapeDtypeStruct((batch_size, size, size, 3), jnp.uint8, sharding=sharded),
        "labels": jax.ShapeDtypeStruct((batch_size,), jnp.int32, sharding=sharded),
    }
    return state, batch, jax.ShapeDtypeStruct((), jnp.int32, sharding=rep)


def saved_activation_bytes(model, config, params, batch_size: int) -> int | None:
    """Bytes autodiff keeps from the forward pass for the backward pass (JAX's list of saved
    residuals of the loss, parameters excluded): the part remat shrinks, whatever the backend.
    None when this JAX has no `saved_residuals`."""
    try:
        from jax._src.ad_checkpoint import saved_residuals
    except ImportError:
        return None
    loss_fn = steps.make_loss_fn(model, config.loss)
    size = config.image_size
    res = saved_residuals(
        lambda p, x, y, h: loss_fn(p, x, y, h)[0],
        params,
        jax.ShapeDtypeStruct((batch_size, size, size, 3), jnp.float32),
        jax.ShapeDtypeStruct((batch_size,), jnp.int32),
        jax.ShapeDtypeStruct((), jnp.int32),
    )
    kept = [a for a, where in res if not where.startswith(("from the argument", "from a literal"))]
    return tree_bytes(kept)


def tree_bytes(tree) -> int:
    return sum(int(np.prod(s.shape)) * jnp.dtype(s.dtype).itemsize for s in jax.tree.leaves(tree))


def measure(model_class: str, model_type: str, remat: bool, args, mesh) -> dict:
    """Compile the row's train step for abstract inputs; its memory analysis in bytes."""
    config = make_config(model_class, model_type, args, remat)
    heads = classes_per_head(args.tiny)
    model = embedding_model.build_model(settings.model_spec(config), heads)
    tx = optimizers.make_optimizer(config, steps_per_epoch=1000, total_steps=100_000)
    pixel_stats = normalization.mean_std(normalization.normalization_name(model_class))
    step = steps.make_train_step(model, tx, mesh, loss_config=config.loss, pixel_stats=pixel_stats)
    state, batch, head = abstract_inputs(model, tx, config, args.batch_size, mesh)
    t0 = time.perf_counter()
    compiled = step.lower(state, batch, head).compile()
    compile_s = time.perf_counter() - t0
    m = compiled.memory_analysis()
    fields = ("argument", "output", "alias", "temp", "generated_code")
    row = {f: int(getattr(m, f"{f}_size_in_bytes")) for f in fields}
    row["peak_reported"] = int(getattr(m, "peak_memory_in_bytes", 0) or 0)
    row["total"] = row["argument"] + row["output"] - row["alias"] + row["temp"]
    saved = saved_activation_bytes(model, config, state.params, args.batch_size)
    return {
        "model_class": model_class,
        "model_type": model_type,
        "remat": remat,
        "batch_size": args.batch_size,
        "image_size": args.image_size,
        "dtype": args.dtype,
        "backend": jax.default_backend(),
        "device_kind": jax.devices()[0].device_kind,
        "params_bytes": tree_bytes(state.params),
        "opt_state_bytes": tree_bytes(state.opt_state),
        "classes": sum(heads.values()),
        "compile_s": compile_s,
        **{f"{k}_bytes": v for k, v in row.items()},
        "jaxpr_residual_bytes": saved,
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "fits_80gb": row["total"] <= ACCELERATOR_BYTES,
        "fits_jax_default_pool": row["total"] <= JAX_DEFAULT_FRACTION * ACCELERATOR_BYTES,
    }


def format_table(rows: list[dict]) -> str:
    """The table of benchmarks/NOTES.md (GB = 1e9 bytes)."""
    head = (
        f"{'model':16} {'remat':5} {'args GB':>8} {'out GB':>7} {'alias GB':>8} {'temp GB':>8} "
        f"{'total GB':>8} {'resid. GB':>9}  fits 80 GB (60 GB)"
    )
    lines = [head, "-" * len(head)]
    for r in rows:
        name = f"{r['model_class'].removesuffix('_with_embedding')} {r['model_type']}"
        saved, yes = r["jaxpr_residual_bytes"], {True: "yes", False: "no"}
        lines.append(
            f"{name:16} {str(r['remat']).lower():5} {r['argument_bytes'] / GB:8.2f} "
            f"{r['output_bytes'] / GB:7.2f} {r['alias_bytes'] / GB:8.2f} "
            f"{r['temp_bytes'] / GB:8.2f} {r['total_bytes'] / GB:8.2f} "
            f"{(saved or 0) / GB:9.2f}  {yes[r['fits_80gb']]} ({yes[r['fits_jax_default_pool']]})"
        )
    return "\n".join(lines)


def main(argv=None) -> int:
    args = parse_args(argv)
    mesh = mesh_lib.make_mesh(jax.devices()[:1])
    remats = [s.strip().lower() in ("true", "1") for s in args.remat.split(",") if s.strip()]
    rows = []
    for item in args.rows.split(","):
        model_class, _, model_type = item.strip().partition(":")
        for remat in remats:
            row = measure(model_class, model_type, remat, args, mesh)
            rows.append(row)
            print(
                f"{model_class} {model_type} remat={remat}: total {row['total_bytes'] / GB:.2f} GB"
                f" (compiled in {row['compile_s']:.0f} s)",
                flush=True,
            )
            if args.out:
                with open(args.out, "w") as f:
                    json.dump(rows, f, indent=2)
    print(f"\nbatch {args.batch_size}, {args.image_size} px, {args.dtype}, {jax.devices()[0]}")
    print(format_table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
