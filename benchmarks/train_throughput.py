"""Training and descriptor-extraction throughput of the project's real steps (issue 6).

Runs universal_embedding's train step (embedding model, separate cosine heads, normalised
softmax loss, the optimiser with its frozen/unfrozen split) and extraction step on
synthetic device-resident batches, in float32 and bfloat16 compute, and, when torch and
timm import with a GPU, timm's ViT-B/16 (bf16 autocast, fused AdamW, torch.compile) in the
same process (benchmarks/timm_reference.py: eager and compiled; run first, its cached
memory freed before ours, since JAX does not give memory back). Compile time is reported
apart and never counted. Prints a table last; --out is rewritten after every row, so a run
stopped by a timeout keeps the rows it finished.

  python benchmarks/train_throughput.py --out bench.json              # ViT-B/16, 224
  python benchmarks/train_throughput.py --tiny --out bench_cpu.json   # same code, tiny model

Needs jax, flax, optax, numpy and ml_collections; never imports TensorFlow.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

# torch shares the card: JAX must not take 75% of it up front (set before JAX starts).
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from universal_embedding import settings, train_settings  # noqa: E402
from universal_embedding.configs import base  # noqa: E402
from universal_embedding.data import registry  # noqa: E402
from universal_embedding.distributed import mesh as mesh_lib  # noqa: E402
from universal_embedding.loading import embedder  # noqa: E402
from universal_embedding.models import embedding_model  # noqa: E402
from universal_embedding.models.attention import pad_multiple, resolve_implementation  # noqa: E402
from universal_embedding.train import optimizers, steps  # noqa: E402

try:  # run as a script (benchmarks/ on sys.path) or as the module benchmarks.train_throughput
    import timm_reference
except ImportError:
    from benchmarks import timm_reference

# Dense bf16 tensor-core peaks (FLOP/s); MFU of every variant is quoted against these.
PEAK_BF16 = {"H200": 989e12, "H100": 989e12, "A100": 312e12, "L4": 121e12}
VARIANTS = (("float32", "xla"), ("bfloat16", "xla"), ("bfloat16", "cudnn"))


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model_type", default="B/16")
    p.add_argument("--tiny", action="store_true", help="tiny ViT and images for a CPU run")
    p.add_argument("--batch_size", type=int, default=None, help="global train batch")
    p.add_argument("--eval_batch_size", type=int, default=None)
    p.add_argument("--steps", type=int, default=None, help="timed steps per measurement")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--head", default="gldv2", help="domain head the train step uses")
    p.add_argument("--frozen", action="store_true", help="time the frozen-backbone phase")
    p.add_argument("--variants", default=",".join(f"{d}:{a}" for d, a in VARIANTS))
    p.add_argument("--peak_tflops", type=float, default=0.0, help="override the peak for MFU")
    p.add_argument("--no_torch", action="store_true")
    p.add_argument("--out", default="")
    args = p.parse_args(argv)
    defaults = (16, 32, 5) if args.tiny else (256, 1024, 30)
    args.batch_size = args.batch_size or defaults[0]
    args.eval_batch_size = args.eval_batch_size or defaults[1]
    args.steps = args.steps or defaults[2]
    return args


def make_config(args, dtype: str, attention: str):
    """Base config with the benchmark's model, dtype and attention."""
    c = base.get_config()
    c.model_type = "Ti/16" if args.tiny else args.model_type
    c.model.dtype, c.model.attention = dtype, attention
    c.frozen_epochs = -1.0 if args.frozen else 0.0
    if args.tiny:
        c.image_size = 32
        c.model.hidden_size, c.model.num_heads, c.model.mlp_dim = 64, 2, 128
        c.model.num_layers, c.model.patch_size = 2, 8
    return c


def classes_per_head(tiny: bool) -> dict[str, int]:
    """Separate heads with UnED's real class counts (100 each for --tiny)."""
    return {d.name: (100 if tiny else d.num_train_classes) for d in registry.DOMAINS}


def vit_flops(config, batch: int, num_classes: int, train: bool) -> float:
    """Analytic matmul FLOPs of one step (2 per multiply-add; backward = 2x forward)."""
    size = embedding_model.backbone_size(settings.model_spec(config))
    d, m, n_layers, p = size.hidden_size, size.mlp_dim, size.num_layers, size.patch_size
    patches = (config.image_size // p) ** 2
    t = patches + 1
    per_layer = t * (8 * d * d + 4 * d * m) + 4 * t * t * d  # qkv+out, mlp, scores + AV
    out_dim = max(int(config.model.output_dim), 0) or d
    fwd = n_layers * per_layer + patches * 2 * 3 * p * p * d + 2 * d * out_dim
    fwd = batch * (fwd + (2 * out_dim * num_classes if train else 0))
    return 3.0 * fwd if train else float(fwd)


def peak_flops(args) -> float:
    """Peak FLOP/s of device 0 (0 when unknown, e.g. CPU)."""
    if args.peak_tflops:
        return args.peak_tflops * 1e12
    kind = jax.devices()[0].device_kind
    return next((v for k, v in PEAK_BF16.items() if k in kind), 0.0) * jax.device_count()


def _timed(fn, n: int) -> float:
    start = time.perf_counter()
    out = None
    for _ in range(n):
        out = fn()
    jax.block_until_ready(out)
    return time.perf_counter() - start


def bench_jax(args, dtype: str, attention: str, mesh) -> dict:
    """Compile, warm up and time the train and extraction steps of one variant."""
    config = make_config(args, dtype, attention)
    heads = classes_per_head(args.tiny)
    model = embedding_model.build_model(settings.model_spec(config), heads)
    params = embedding_model.init_params(model, jax.random.key(0), config.image_size)
    opt = train_settings.optimizer_settings(config)
    tx = optimizers.make_optimizer(opt, steps_per_epoch=1000, total_steps=100_000)
    state = steps.create_train_state(params, tx, mesh)
    rng = np.random.default_rng(0)
    shape = (args.batch_size, config.image_size, config.image_size, 3)
    batch = mesh_lib.shard_batch(
        {
            "images": rng.normal(size=shape).astype(np.float32),
            "labels": rng.integers(0, heads[args.head], args.batch_size).astype(np.int32),
        },
        mesh,
    )
    step = steps.make_train_step(
        model,
        tx,
        mesh,
        loss=train_settings.loss_settings(config.loss),
        train_backbone=not args.frozen,
    )
    head = steps.head_index(model, args.head, mesh)
    t0 = time.perf_counter()
    compiled = step.lower(state, batch, head).compile()
    compile_s = time.perf_counter() - t0
    losses = []
    for _ in range(args.warmup):
        state, metrics = compiled(state, batch, head)
        losses.append(float(metrics["loss"]))
    holder = {"state": state}

    def one_step():
        holder["state"], m = compiled(holder["state"], batch, head)
        return m["loss"]

    train_s = _timed(one_step, args.steps)
    losses.append(float(one_step()))
    cost = (compiled.cost_analysis() or {}) if hasattr(compiled, "cost_analysis") else {}
    cost = cost[0] if isinstance(cost, list) else cost

    embed = embedder.make_embed_fn(model, config.embedd_to_eval)
    eshape = (args.eval_batch_size,) + shape[1:]
    images = mesh_lib.shard_batch({"images": rng.normal(size=eshape).astype(np.float32)}, mesh)
    params_now = holder["state"].params
    t0 = time.perf_counter()
    ecompiled = embed.lower(params_now, images["images"]).compile()
    ecompile_s = time.perf_counter() - t0
    for _ in range(args.warmup):
        jax.block_until_ready(ecompiled(params_now, images["images"]))
    embed_s = _timed(lambda: ecompiled(params_now, images["images"]), args.steps)

    train_ips = args.batch_size * args.steps / train_s
    peak = peak_flops(args)
    # one program for all heads: the cosine matmul runs over every head's classes
    flops = vit_flops(config, args.batch_size, sum(heads.values()), train=not args.frozen)
    return {
        "impl": "jax",
        "dtype": dtype,
        "attention": attention,
        "attention_run": resolve_implementation(attention, jnp.dtype(dtype))
        + (f"+pad{pad_multiple(attention)}" if pad_multiple(attention) > 1 else ""),
        "train_img_s": train_ips,
        "train_step_ms": 1e3 * train_s / args.steps,
        "train_compile_s": compile_s,
        "mfu": flops * train_ips / args.batch_size / peak if peak else None,
        "analytic_tflop_per_step": flops / 1e12,
        "xla_tflop_per_step": float(cost.get("flops", 0.0)) / 1e12 if cost else None,
        "extract_img_s": args.eval_batch_size * args.steps / embed_s,
        "extract_compile_s": ecompile_s,
        "loss_first_last": [losses[0], losses[-1]],
    }


def format_table(rows: list[dict]) -> str:
    """Fixed-width table of the measured rows."""
    head = f"{'impl':6} {'dtype':14} {'attention':12} {'train img/s':>12} {'MFU':>6} "
    head += f"{'compile s':>10} {'extract img/s':>14}"
    lines = [head, "-" * len(head)]
    for r in rows:
        if "skipped" in r:
            lines.append(f"{r['impl']:6} skipped: {r['skipped']}")
            continue
        mfu = f"{100 * r['mfu']:.1f}%" if r.get("mfu") else "n/a"
        lines.append(
            f"{r['impl']:6} {r['dtype']:14} {r.get('attention_run', r['attention']):12} "
            f"{r['train_img_s']:12.1f} {mfu:>6} "
            f"{r['train_compile_s']:10.1f} {r['extract_img_s']:14.1f}"
        )
    return "\n".join(lines)


def ratios(rows: list[dict]) -> dict[str, float]:
    """Best JAX train/extract speed over timm's, when both ran."""
    jax_rows = [r for r in rows if r["impl"] == "jax"]
    timm_rows = [r for r in rows if r["impl"] == "timm" and "skipped" not in r]
    if not jax_rows or not timm_rows:
        return {}
    best = {k: max(r[k] for r in timm_rows) for k in ("train_img_s", "extract_img_s")}
    return {
        "train_vs_timm": max(r["train_img_s"] for r in jax_rows) / best["train_img_s"],
        "extract_vs_timm": max(r["extract_img_s"] for r in jax_rows) / best["extract_img_s"],
    }


def summary(args, rows: list[dict]) -> dict:
    """The JSON result of the rows measured so far."""
    return {
        "device": jax.devices()[0].device_kind,
        "num_devices": jax.device_count(),
        "backend": jax.default_backend(),
        "versions": {"jax": jax.__version__, "python": sys.version.split()[0]},
        "args": vars(args),
        "rows": rows,
        "ratios": ratios(rows),
        "tensorflow_imported": "tensorflow" in sys.modules,
    }


def main(argv=None) -> None:
    args = parse_args(argv)
    mesh = mesh_lib.make_mesh()
    if args.batch_size % mesh.size or args.eval_batch_size % mesh.size:
        raise SystemExit(f"Batch sizes must be divisible by the {mesh.size} devices.")
    rows: list[dict] = []

    def record(new: list[dict]) -> None:
        rows.extend(new)
        if args.out:
            with open(args.out, "w") as f:
                json.dump(summary(args, rows), f, indent=2)

    if not args.no_torch and not args.tiny:
        record(timm_reference.bench_timm(args.batch_size, args.eval_batch_size, args.steps,
                                         args.warmup))  # fmt: skip
    for spec in args.variants.split(","):
        dtype, attention = spec.split(":")
        print(f"[bench] jax {dtype} attention={attention} ...", flush=True)
        record([bench_jax(args, dtype, attention, mesh)])
    rows.sort(key=lambda r: r["impl"] != "jax")  # ours first in the table
    result = summary(args, rows)
    model = "tiny ViT" if args.tiny else f"ViT-{args.model_type}"
    header = f"{model}, train batch {args.batch_size}, eval batch {args.eval_batch_size}"
    print(f"\n{header}, {args.steps} timed steps, {result['num_devices']} x {result['device']}")
    if result["ratios"]:
        print("ratios:", {k: round(v, 2) for k, v in result["ratios"].items()})
    print(format_table(rows))
    if result["tensorflow_imported"]:
        raise SystemExit("benchmarks/train_throughput.py imported TensorFlow: it must not.")


if __name__ == "__main__":
    jnp.zeros(())  # initialise the backend before timing anything
    main()
