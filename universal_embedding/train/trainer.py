"""Train a universal embedding on several UnED domains: one readable function in sections.

`train_and_evaluate(workdir, ts)` runs plan -> mesh/model/optimiser -> checkpoint/resume
-> evaluators -> data streams -> loop (train, log, validate, checkpoint) -> final test.

Exact resume: everything a step depends on is either in the latest checkpoint (params,
optimiser state, step) or a pure function of the settings and the step (the domain schedule,
hence every domain stream's position; the augmentation seeds; there is no other randomness:
the models have no dropout). Restarting the same command after a crash therefore ends with
the same parameters as an uninterrupted run.
"""

from __future__ import annotations

import os
import time
from collections import defaultdict

import jax
import numpy as np
from absl import logging
from tqdm import tqdm

from universal_embedding import checkpoint, loading, writers
from universal_embedding.data import normalization, registry
from universal_embedding.distributed import mesh as mesh_lib
from universal_embedding.knn import descriptors as knn_descriptors
from universal_embedding.knn import evaluator
from universal_embedding.models import embedding_model
from universal_embedding.report import results_files
from universal_embedding.train import (
    guards,
    method,
    optimizers,
    plan,
    preemption,
    replay,
    samplers,
    steps,
)
from universal_embedding.train.settings import TrainData, TrainSettings


def _log(msg: str, *args) -> None:
    """Log on every process, print on process 0 (the console a user watches)."""
    logging.info(msg, *args)
    if jax.process_index() == 0:
        tqdm.write(msg % args if args else msg)


def _check_batching(batch_size: int) -> None:
    n_dev, n_proc = jax.device_count(), jax.process_count()
    if batch_size % n_dev:
        raise ValueError(
            f"config.batch_size={batch_size} must be divisible by the {n_dev} devices "
            f"({n_proc} process(es)): every device gets the same number of images."
        )


def _init_params(ts: TrainSettings, model) -> dict:
    """Random init (seeded); all of it from config.init_ckpt, or the backbone from
    config.pretrained_ckpt, when given."""
    params = loading.initial_params(ts.model, model, ts.weights)
    if ts.weights.init_ckpt:
        _log("All weights (backbone, projection, heads): %s", ts.weights.init_ckpt)
    elif ts.weights.pretrained_ckpt:
        _log("Backbone weights: %s", ts.weights.pretrained_ckpt)
    else:
        _log("Backbone weights: random initialisation (config.pretrained_ckpt is empty).")
    return params


def _train_streams(data: TrainData, tplan: plan.TrainPlan, sampler, start: int):
    """get(domain) -> the next train batch (uint8 images, normalised on the device) of that
    domain, every stream resuming exactly at step `start`.

    A fixed schedule: one pipeline serves every domain in schedule order (one thread pool and
    prefetch buffer). UDON's dynamic sampler redraws the schedule from the losses, so it reads
    one lazily started pipeline per domain instead.
    """
    from universal_embedding.data import train_stream  # TensorFlow stays in data/

    domains = tplan.domains
    positions = sampler.positions_at(start)
    kw = dict(
        batch_size=tplan.batch_size,
        image_size=data.image_size,
        resize_size=data.resize_size,
        normalization=None,
        process_index=jax.process_index(),
        process_count=jax.process_count(),
        shuffle_buffer_size=data.shuffle_buffer_size,
        reduced_decode=data.reduced_decode,
        threads=data.threads,
    )
    seeds = [data.seed * 1000 + registry.get_domain(d).id for d in domains]
    if isinstance(sampler, samplers.StaticSampler):
        batches = train_stream.schedule_batches(
            data.tfds_dir, domains, sampler.schedule[start:], seeds=seeds,
            label_offsets=tplan.label_offsets, start_batches=positions.tolist(), **kw,
        )  # fmt: skip
        return lambda d: next(batches)
    streams: list = [None] * len(domains)

    def get(i: int):
        if streams[i] is None:
            streams[i] = train_stream.train_batches(
                data.tfds_dir, domains[i], seed=seeds[i],
                label_offset=tplan.label_offsets[i], start_batch=int(positions[i]), **kw,
            )  # fmt: skip
        return next(streams[i])

    return get


def _summarise(pending: list, domains: tuple[str, ...]) -> dict[str, float]:
    """Mean loss / precision@1 / grad norm over the steps since the last summary, per domain too."""
    host = jax.device_get([m for _, m in pending])
    out: dict[str, float] = {}
    by_domain: dict[int, list] = defaultdict(list)
    for (d, _), m in zip(pending, host, strict=True):
        by_domain[d].append(m)
    for name in host[0] if host else ():  # loss, precision_at_1, grad_norm (+ UDON's terms)
        out[f"train/{name}"] = float(np.mean([m[name] for m in host]))
        for d, ms in by_domain.items():
            out[f"train/{domains[d]}/{name}"] = float(np.mean([m[name] for m in ms]))
    return out


def train_and_evaluate(workdir: str, ts: TrainSettings) -> dict[str, float]:
    """Train per `ts` in workdir (resuming if it holds a checkpoint); final test results.

    Holds the workdir's lock (checkpoint.lock) throughout. SIGTERM/SIGINT: checkpoint the
    current step and raise preemption.Preempted; NaN/inf loss: raise guards.NonFinite.
    """
    lead = jax.process_index() == 0
    with checkpoint.WorkdirLock(workdir, enabled=lead), preemption.SignalWatch() as watch:
        return _train(workdir, ts, watch)


def _train(workdir: str, ts: TrainSettings, watch) -> dict[str, float]:
    lead = jax.process_index() == 0
    spec, opt, run = ts.model, ts.optimizer, ts.run

    # ------------------------------------------------------------------ plan
    tplan = plan.make_plan(ts.plan)
    sampler = method.make_sampler(ts.method, tplan)
    _check_batching(tplan.batch_size)
    output = ts.descriptors
    descriptor_path = knn_descriptors.descriptor_file(output, workdir, -1)  # -1: best checkpoint
    _log(
        "Training %s on %s: %d images, %d steps/epoch, %d steps (%d frozen), heads %s",
        spec.model_class,
        ",".join(tplan.domains),
        sum(tplan.train_sizes),
        tplan.steps_per_epoch,
        tplan.total_steps,
        tplan.frozen_steps,
        tplan.classes_per_head,
    )

    # ------------------------------------------------------------------ mesh, model, optimiser
    mesh = mesh_lib.make_mesh()
    model = embedding_model.build_model(spec, tplan.classes_per_head)
    tx = optimizers.make_optimizer(opt, tplan.steps_per_epoch, tplan.total_steps)
    lr_fns = optimizers.lr_schedules(opt, tplan.steps_per_epoch, tplan.total_steps)
    state = steps.create_train_state(_init_params(ts, model), tx, mesh)
    pixel_stats = normalization.mean_std(loading.normalization_of(spec))  # uint8 in, on device
    backbone = opt.trains_backbone  # False: frozen throughout, no backward pass through it
    train_step = method.train_steps(
        ts.method, tplan, model, tx, mesh, train_backbone=backbone, pixel_stats=pixel_stats
    )

    # ------------------------------------------------------------------ checkpoints, resume
    ckpts = checkpoint.Checkpoints(
        workdir,
        checkpoint_steps=tplan.checkpoint_steps,
        max_to_keep=run.max_checkpoints_to_keep,
        save_on_steps=(tplan.total_steps,),
    )
    start = 0
    if ckpts.latest_step() is not None:
        loading.check_same_numerics(spec, workdir)
        state, extra = ckpts.restore_latest(state)
        start = int(jax.device_get(state.step))
        guards.check_unchanged(run.config_changes, run.resume_changed_config, workdir, start)
        sampler.restore(extra, start, workdir)
        _log("resumed from step %d", start)
        done = start == tplan.total_steps and ckpts.best_step() is not None
        finished = replay.finished_results(workdir, run.do_final_testing) if done else None
        if finished is not None:  # the same command again on a finished run
            _log(replay.finished_message(workdir, start, run.do_final_testing))
            ckpts.close()
            return finished
    if lead:  # only now: a failed resume leaves the run's config.json as it was
        writers.write_config_json(ts.config_dict, os.path.join(workdir, "config.json"))
        writers.drop_torn_tail(workdir)  # a kill while a metrics row was written
    writer = writers.create_writer(workdir, run.wandb, writers.flat_hparams(ts.config_dict))
    writer = replay.skip_logged(writer, workdir, start)
    if start == 0 and sampler.initial_scalars():
        writer.write_scalars(0, sampler.initial_scalars())

    # ------------------------------------------------------------------ evaluators
    eval_data = ts.eval_data
    val_plan = ts.validation_plan
    val_eval = None
    if val_plan is not None:
        val_eval = evaluator.KnnEvaluator(model, val_plan, eval_data, spec.embedd_to_eval, mesh)

    def validate(step: int) -> None:
        t0 = time.time()
        results, _ = val_eval.run(state.params)
        writer.write_scalars(step, results_files.summary_scalars(results))
        metric = evaluator.best_metric(results)
        if ckpts.save_best_if_better(step, state.params, metric):
            _log("step %d: new best %s = %.4f", step, evaluator.BEST_METRIC, metric)
        _log(
            "step %d: validation %s = %.4f (%.1fs)",
            step,
            evaluator.BEST_METRIC,
            metric,
            time.time() - t0,
        )

    # ------------------------------------------------------------------ data streams
    next_batch = _train_streams(ts.data, tplan, sampler, start)

    # ------------------------------------------------------------------ loop
    stop_after = run.stop_after_steps
    log_every = tplan.log_summary_steps
    pending: list = []
    bar = tqdm(
        total=tplan.total_steps,
        initial=start,
        disable=not lead,
        unit="step",
        desc="train",
        dynamic_ncols=True,
    )
    t_window, n_window = time.time(), 0
    for step in range(start, tplan.total_steps):
        weights = sampler.before_step(step)  # UDON: sampling_weights/<domain> when updated
        if weights:
            writer.write_scalars(step + 1, weights)
        d = sampler.domain_at(step)
        batch = mesh_lib.shard_batch(next_batch(d), mesh)
        state, metrics = train_step[tplan.head_of(tplan.domains[d])](state, batch)
        sampler.record(d, metrics)
        pending.append((d, metrics))
        done, n_window = step + 1, n_window + 1
        bar.update(1)
        last = done == tplan.total_steps
        stop = watch.received is not None or ckpts.reached_preemption(done)
        save = ckpts.should_save(done) or stop
        val = val_eval is not None and (done % tplan.log_eval_steps == 0 or last)
        summary = done % log_every == 0 or last
        if summary or val or save:  # the only host syncs on metrics: never save NaN/inf
            params = state.params if save else None
            guards.check_finite(pending, done, tplan.domains, ckpts, params, on_stop=bar.close)
        if summary:
            scalars = _summarise(pending, tplan.domains)
            scalars.update(optimizers.learning_rates(lr_fns, step))
            elapsed = max(time.time() - t_window, 1e-9)
            scalars["train/steps_per_second"] = n_window / elapsed
            scalars["train/images_per_second"] = n_window * tplan.batch_size / elapsed
            writer.write_scalars(done, scalars)
            bar.set_postfix(loss=f"{scalars['train/loss']:.3f}", refresh=False)
            pending, t_window, n_window = [], time.time(), 0
        if val:
            validate(done)
        if save:
            ckpts.save_latest(done, state, sampler.checkpoint_extra(done), force=stop)
        if stop:
            bar.close()
            writer.flush()
            preemption.stop(done, ckpts)
        if stop_after and done >= stop_after:
            _log("stop_after_steps=%d reached: leaving the loop (as if killed).", stop_after)
            break
    bar.close()
    watch.raise_at_once("the final steps and test")  # Ctrl-C from here on: exit 1 at once
    ckpts.wait()
    writer.flush()
    final_step = int(jax.device_get(state.step))
    if final_step < tplan.total_steps:
        ckpts.close()
        return {}

    # ------------------------------------------------------------------ final test
    if ckpts.best_step() is None:  # no validation ran: the last params are the best we have
        ckpts.save_best_if_better(final_step, state.params, -1.0, {"note": "no validation"})
        ckpts.wait()
    results: dict[str, float] = {}
    if run.do_final_testing:
        best_params, info = checkpoint.restore_params(workdir, "best", mesh_lib.replicated(mesh))
        _log("Final test on the best checkpoint (step %s).", info["step"])
        test_plan = ts.test_plan
        test_eval = evaluator.KnnEvaluator(model, test_plan, eval_data, spec.embedd_to_eval, mesh)
        results, descr = test_eval.run(loading.without_heads(best_params))
        watch.check()  # a signal a library swallowed during the test: no results written
        writer.write_scalars(final_step, results_files.summary_scalars(results))
        writer.write_texts(final_step, results_files.summary_texts(results, test_plan))
        results_files.write_outputs(
            workdir,
            results,
            test_plan,
            descr if output.save else None,
            descriptor_path,
            run={
                "model": f"{ts.model.model_class} {ts.model.model_type}",
                "checkpoint": f"best, step {info['step']}",
            },
        )
    writer.flush()
    ckpts.close()
    watch.check()
    return results
