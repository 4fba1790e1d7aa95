"""Separate heads: one train program for all heads vs one program per head (issue 15).

  python benchmarks/separate_heads.py --tiny --out heads_cpu.json   # CPU, tiny ViT, 8 x 40 classes
  python benchmarks/separate_heads.py --flops_only                  # ViT-B/16 head FLOPs table

Same model, optimiser and synthetic device-resident batches as train_throughput.py (--tiny:
2 layers, hidden 64, 32x32 images, batch 16), 8 separate heads with `--classes` classes each
(40: the synthetic mini-UnED; 0: UnED's real counts). Variants, timed in the same process:
  per_head     the previous step: the model run with head=<name>, one compiled program per head;
  one_program  train/steps.make_train_step: every head's cosines from one matmul, the loss
               masked to the step's head, the head index a traced argument (the trainer's);
  switch       one program whose loss picks the head with lax.switch (for comparison only).
Compile time: all programs of a variant (`.lower().compile()`, tracing included), median over
--repeats fresh builds. Step time: rounds of one step per domain, variants interleaved, each
step waited for; median over all steps. Never imports TensorFlow.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
import train_throughput

from universal_embedding import settings, train_settings
from universal_embedding.data import registry
from universal_embedding.distributed import mesh as mesh_lib
from universal_embedding.models import embedding_model
from universal_embedding.models.heads import l2_normalize
from universal_embedding.train import losses, optimizers, steps

VARIANTS = ("per_head", "one_program", "switch")
ALL = "*"  # key of a one-program variant's single program


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model_type", default="B/16")
    p.add_argument("--tiny", action="store_true", help="tiny ViT and images for a CPU run")
    p.add_argument("--batch_size", type=int, default=None)
    p.add_argument(
        "--classes", type=int, default=None, help="per head; 0: UnED's (default 40 with --tiny)"
    )
    p.add_argument("--rounds", type=int, default=10, help="timed rounds of one step per domain")
    p.add_argument("--repeats", type=int, default=3, help="fresh compilations per variant")
    p.add_argument("--variants", default=",".join(VARIANTS))
    p.add_argument("--flops_only", action="store_true", help="print the head FLOPs table only")
    p.add_argument("--out", default="")
    args = p.parse_args(argv)
    args.batch_size = args.batch_size or (16 if args.tiny else 256)
    if args.classes is None:
        args.classes = 40 if args.tiny else 0
    args.frozen, args.eval_batch_size = False, args.batch_size  # fields make_config reads
    return args


def classes_per_head(num: int) -> dict[str, int]:
    return {d.name: num or d.num_train_classes for d in registry.DOMAINS}


def head_flops_table(config, batch: int, classes: dict[str, int]) -> list[dict]:
    """Per domain: train-step FLOPs of the backbone, of its own head, of all heads' matmul."""
    total = sum(classes.values())
    out_dim = int(config.model.output_dim)
    backbone = train_throughput.vit_flops(config, batch, 0, train=True)
    rows = []
    for name, c in classes.items():
        own = 3.0 * batch * 2 * out_dim * c  # forward matmul + its two backward matmuls
        extra = 3.0 * batch * 2 * out_dim * (total - c)
        rows.append({"domain": name, "classes": c, "backbone": backbone, "own_head": own})
        rows[-1].update(extra_all_heads=extra, extra_over_backbone=extra / backbone)
    return rows


def print_flops_table(config, batch: int, classes: dict[str, int]) -> None:
    """head_flops_table as text, with its round-robin and dataset-size averages."""
    rows = head_flops_table(config, batch, classes)
    print(f"per train step, batch {batch}; backbone+projection {rows[0]['backbone']:.4e} FLOPs")
    print(
        f"{'domain':8} {'classes':>8} {'own head':>11} {'other heads':>12} {'extra/backbone':>15}"
    )
    for r in rows:
        print(
            f"{r['domain']:8} {r['classes']:8d} {r['own_head']:11.4e} "
            f"{r['extra_all_heads']:12.4e} {100 * r['extra_over_backbone']:14.4f}%"
        )
    sizes = [registry.get_domain(r["domain"]).split_size("train") for r in rows]
    extra = [r["extra_over_backbone"] for r in rows]
    print(f"round-robin mean {100 * np.mean(extra):.4f}%, dataset-size weighted ", end="")
    print(f"{100 * np.average(extra, weights=sizes):.4f}%")


def per_head_loss_fn(model, loss_settings, name):
    """The previous loss: cosines of head `name` alone, softmax over its classes."""

    def loss_fn(params, images, labels):
        cosines = model.apply({"params": params}, images, train=True, head=name)["logits"]
        return losses.loss_from_settings(cosines, labels, loss_settings)

    return loss_fn


def switch_loss_fn(model, loss_settings):
    """One program: backbone once, then lax.switch over per-head cosines + loss."""
    names = [n for n, _ in model.classes_per_head]

    def branch(name):
        def fn(projected, head_params, labels):
            kernel = l2_normalize(head_params[name]["kernel"], axis=0)
            cosines = l2_normalize(projected) @ kernel
            return losses.loss_from_settings(cosines, labels, loss_settings)

        return fn

    def loss_fn(params, images, labels, head):
        body = {k: v for k, v in params.items() if k != "heads"}
        projected = model.apply({"params": body}, images, train=True)["projected"]
        branches = [branch(n) for n in names]
        return jax.lax.switch(head, branches, projected, params["heads"], labels)

    return loss_fn


def jit_step(loss_fn, tx, mesh):
    """The train step of steps.make_train_step around another loss (metrics: loss only)."""
    rep = mesh_lib.replicated(mesh)

    def step_fn(state, batch, *head):
        loss, grads = jax.value_and_grad(loss_fn)(
            state.params, batch["images"], batch["labels"], *head
        )
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        return steps.TrainState(state.step + 1, params, opt_state), {"loss": loss}

    return jax.jit(step_fn, out_shardings=(rep, rep), donate_argnums=(0,))


def build(variant, model, tx, mesh, config) -> dict:
    """The programs of one variant: {name: step(state, batch)} per head, or {ALL: step(state,
    batch, head)} for the one-program variants."""
    loss = train_settings.loss_settings(config.loss)
    if variant == "per_head":
        names = [n for n, _ in model.classes_per_head]
        return {n: jit_step(per_head_loss_fn(model, loss, n), tx, mesh) for n in names}
    if variant == "one_program":
        return {ALL: steps.make_train_step(model, tx, mesh, loss=loss)}
    return {ALL: jit_step(switch_loss_fn(model, loss), tx, mesh)}


def run_step(programs: dict, state, batch, name: str, head):
    """One train step of head `name` with a variant's programs."""
    if ALL in programs:
        return programs[ALL](state, batch, head)
    return programs[name](state, batch)


def compile_seconds(variant, model, tx, mesh, config, state, batches, heads) -> float:
    """Trace + lower + compile every program of a fresh build of `variant`."""
    programs = build(variant, model, tx, mesh, config)
    t0 = time.perf_counter()
    for key, step in programs.items():
        if key == ALL:
            name = next(iter(batches))
            step.lower(state, batches[name], heads[name]).compile()
        else:
            step.lower(state, batches[key]).compile()
    return time.perf_counter() - t0


def main(argv=None) -> None:
    args = parse_args(argv)
    config = train_throughput.make_config(args, "float32", "xla")
    classes = classes_per_head(args.classes)
    if args.flops_only:
        print_flops_table(config, args.batch_size, classes)
        return
    mesh = mesh_lib.make_mesh()
    model = embedding_model.build_model(settings.model_spec(config), classes)
    params = jax.device_get(
        embedding_model.init_params(model, jax.random.key(0), config.image_size)
    )
    opt = train_settings.optimizer_settings(config)
    tx = optimizers.make_optimizer(opt, steps_per_epoch=1000, total_steps=100_000)
    rng = np.random.default_rng(0)
    shape = (args.batch_size, config.image_size, config.image_size, 3)
    batches = {
        name: mesh_lib.shard_batch(
            {
                "images": rng.normal(size=shape).astype(np.float32),
                "labels": rng.integers(0, c, args.batch_size).astype(np.int32),
            },
            mesh,
        )
        for name, c in classes.items()
    }
    heads = {name: steps.head_index(model, name, mesh) for name in classes}
    variants = args.variants.split(",")
    state0 = steps.create_train_state(params, tx, mesh)
    compile_s = {v: [] for v in variants}
    for _ in range(args.repeats):
        for v in variants:
            s = compile_seconds(v, model, tx, mesh, config, state0, batches, heads)
            compile_s[v].append(s)
            print(f"[compile] {v}: {s:.2f} s", flush=True)
    programs = {v: build(v, model, tx, mesh, config) for v in variants}
    states = {v: steps.create_train_state(params, tx, mesh) for v in variants}
    step_s = {v: [] for v in variants}
    last_loss = {}
    for r in range(args.rounds + 1):  # round 0 compiles and warms up, untimed
        for v in variants:
            for name in classes:
                t0 = time.perf_counter()
                states[v], metrics = run_step(
                    programs[v], states[v], batches[name], name, heads[name]
                )
                last_loss[v] = float(jax.block_until_ready(metrics["loss"]))
                if r:
                    step_s[v].append(time.perf_counter() - t0)
    rows = []
    for v in variants:
        rows.append(
            {
                "variant": v,
                "programs": 8 if v == "per_head" else 1,
                "compile_s_median": statistics.median(compile_s[v]),
                "compile_s_all": compile_s[v],
                "step_ms_median": 1e3 * statistics.median(step_s[v]),
                "last_loss": last_loss[v],
            }
        )
    base = next((r for r in rows if r["variant"] == "per_head"), None)
    print(f"\n{len(classes)} heads x {args.classes or 'UnED'} classes, batch {args.batch_size}, ")
    print(f"{args.rounds} rounds, {args.repeats} compilations, {jax.devices()[0].device_kind}")
    print(f"{'variant':12} {'programs':>8} {'compile s':>10} {'step ms':>8} {'vs per_head':>22}")
    for r in rows:
        ratio = ""
        if base:
            ratio = (
                f"compile x{r['compile_s_median'] / base['compile_s_median']:.2f}, "
                f"step x{r['step_ms_median'] / base['step_ms_median']:.2f}"
            )
        print(
            f"{r['variant']:12} {r['programs']:8d} {r['compile_s_median']:10.2f} "
            f"{r['step_ms_median']:8.2f} {ratio:>22}"
        )
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"args": vars(args), "device": jax.devices()[0].device_kind, "rows": rows}, f)


if __name__ == "__main__":
    jnp.zeros(())  # initialise the backend before timing anything
    main()
