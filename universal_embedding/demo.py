"""`make demo`: synthetic mini-UnED -> TFRecords -> untrained test kNN -> train -> trained test kNN.

    python -m universal_embedding.demo --workdir=demo_work [--dtype=bfloat16] [--data_dir=DIR]
        [--method=udon]

Writes <workdir>/data (images, info files, TFRecords), <workdir>/baseline/results.json (the
randomly initialised model training starts from) and <workdir>/trained/ (checkpoints,
TensorBoard logs, results.json of the best checkpoint), then prints both side by side.
Every stage is skipped when its output exists (training and its final test when
<workdir>/trained/results.json holds every domain's test results), and training resumes from its
latest checkpoint, so rerunning after an interruption continues where it stopped.
`--method=udon` trains the same model with UDON (configs/demo.py:method=udon) into
<workdir>/udon_baseline and <workdir>/udon_trained and also prints the teachers' table.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping, Sequence

from absl import flags

from universal_embedding.configs import demo as demo_config
from universal_embedding.errors import command

K = 5


def make_data(data_dir: str) -> None:
    """Write the synthetic mini-UnED (unless present) and convert it to TFRecords."""
    from universal_embedding.data import prepare, synthetic

    if not os.path.isdir(os.path.join(data_dir, "info_files")):
        synthetic.write_synthetic_uned(data_dir, seed=0)
    prepare.prepare(data_dir)


def evaluate_untrained(config, out_dir: str) -> dict[str, float]:
    """Test kNN of the model training starts from (same seed, no step taken)."""
    from universal_embedding import loading, settings, train_settings
    from universal_embedding.knn import evaluator
    from universal_embedding.models import embedding_model
    from universal_embedding.report import results_files
    from universal_embedding.train import plan

    spec = settings.model_spec(config)
    heads = plan.make_plan(train_settings.plan_settings(config)).classes_per_head
    model = embedding_model.build_model(spec, heads)
    params = loading.initial_params(spec, model, settings.weight_source(config))
    data = settings.eval_data(config, spec)
    knn = evaluator.KnnEvaluator(model, settings.test_plan(config), data, config.embedd_to_eval)
    results, _ = knn.run(loading.without_heads(params))
    run = {"model": f"{spec.model_class} {spec.model_type}", "checkpoint": "untrained, step 0"}
    results_files.write_outputs(out_dir, results, knn.plan, run=run)
    return results


def results_complete(path: str, domains: Sequence[str], k: int = K) -> bool:
    """True when the results.json at `path` holds R@1 and mMP@k of the test kNN, separate and
    merged index, for every domain and the average (a finished final test)."""
    try:
        with open(path) as f:
            results = json.load(f)
    except (OSError, ValueError):
        return False
    keys = [
        f"{d}:{protocol}:test_knn:{metric}"
        for d in [*domains, "average"]
        for protocol in ("separate", "common")
        for metric in ("top_1", f"mp_{k}")
    ]
    return isinstance(results, dict) and all(key in results for key in keys)


def _read(path: str) -> dict[str, float]:
    with open(path) as f:
        return {k: (float("nan") if v is None else v) for k, v in json.load(f).items()}


def comparison_table(
    baseline: Mapping[str, float], trained: Mapping[str, float], domains: Sequence[str]
) -> str:
    """Per-domain R@1 and mMP@5 (%, merged index = official protocol) before and after training."""
    rows = [
        f"{'domain':<8} | {'untrained R@1':>13} {'mMP@5':>6} | {'trained R@1':>11} {'mMP@5':>6}",
        "-" * 54,
    ]
    for d in [*domains, "average"]:
        cells = []
        for res in (baseline, trained):
            r1 = res.get(f"{d}:common:test_knn:top_1", float("nan"))
            mp = res.get(f"{d}:common:test_knn:mp_{K}", float("nan"))
            cells.append((100 * r1, 100 * mp))
        (br, bm), (tr, tm) = cells
        rows.append(f"{d:<8} | {br:13.1f} {bm:6.1f} | {tr:11.1f} {tm:6.1f}")
    sep_b = baseline.get(f"average:separate:test_knn:mp_{K}", float("nan"))
    sep_t = trained.get(f"average:separate:test_knn:mp_{K}", float("nan"))
    rows.append(f"(separate indexes, average mMP@5: {100 * sep_b:.1f} -> {100 * sep_t:.1f})")
    return "\n".join(rows)


def teacher_table(baseline: Mapping[str, float], trained: Mapping[str, float], domains) -> str:
    """comparison_table of UDON's teachers (results keys prefixed 'teacher_embedd/')."""
    from universal_embedding.knn import multi_embedding

    name = multi_embedding.TEACHER
    base, done = (multi_embedding.results_of(r, name) for r in (baseline, trained))
    return comparison_table(base, done, domains)


def run_demo(
    workdir: str, dtype: str = "float32", data_dir: str = "", method: str = "baseline"
) -> dict[str, float]:
    """All demo stages; returns {'baseline_mp5', 'trained_mp5', 'seconds', ...}."""
    import jax

    from universal_embedding import settings
    from universal_embedding.train import trainer

    t0 = time.time()
    # Compiled programs are kept, so a rerun (resume after an interruption) starts quickly.
    jax.config.update(
        "jax_compilation_cache_dir", os.path.abspath(os.path.join(workdir, "jax_cache"))
    )
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
    data_dir = data_dir or os.path.join(workdir, "data")
    config = demo_config.get_config(f"data_dir={data_dir},dtype={dtype},method={method}")
    settings.register_domains(config)
    prefix = "" if method == "baseline" else f"{method}_"
    timings: dict[str, float] = {}

    print(f"[1/4] synthetic mini-UnED + TFRecords in {data_dir}", flush=True)
    make_data(data_dir)
    timings["data"] = time.time() - t0

    print("[2/4] evaluating the untrained model (test kNN, separate + merged)", flush=True)
    baseline_json = os.path.join(workdir, f"{prefix}baseline", "results.json")
    if not os.path.exists(baseline_json):
        evaluate_untrained(config, os.path.join(workdir, f"{prefix}baseline"))
    timings["baseline"] = time.time() - t0 - sum(timings.values())

    trained_dir = os.path.join(workdir, f"{prefix}trained")
    domains = config.knn_eval_names.split(",")
    trained_json = os.path.join(trained_dir, "results.json")
    if results_complete(trained_json, domains):
        print(f"[3/4] training and final test: done ({trained_json}), skipped", flush=True)
    else:
        print("[3/4] training (rerun the same command to resume after an interruption)", flush=True)
        trainer.train_and_evaluate(trained_dir, settings.train_settings(config))
    timings["train+test"] = time.time() - t0 - sum(timings.values())

    print("[4/4] results (test kNN; merged index of all 8 domains)\n", flush=True)
    baseline = _read(baseline_json)
    trained = _read(trained_json)
    if method == "udon":
        print("universal student (64-d):")
    print(comparison_table(baseline, trained, domains))
    if method == "udon":
        print("\nteachers (256-d, each domain embedded with its own teacher; the merged")
        print("index mixes 8 teacher spaces, so its numbers are diagnostic only):")
        print(teacher_table(baseline, trained, domains))
    key = f"average:common:test_knn:mp_{K}"
    total = time.time() - t0
    print(
        f"\nmerged mMP@5: untrained {baseline[key]:.3f} -> trained {trained[key]:.3f} "
        f"(+{trained[key] - baseline[key]:.3f}); "
        + ", ".join(f"{k} {v:.0f}s" for k, v in timings.items())
        + f"; total {total:.0f}s"
    )
    command.print_written([baseline_json, trained_json, trained_dir])
    return {"baseline_mp5": baseline[key], "trained_mp5": trained[key], "seconds": total}


def define_flags() -> None:
    """The demo's flags (called only when run as a program)."""
    flags.DEFINE_string("workdir", "demo_work", "Where data, baseline and training runs go.")
    flags.DEFINE_enum("dtype", "float32", ["float32", "bfloat16"], "Compute dtype.")
    flags.DEFINE_string("data_dir", "", "Synthetic mini-UnED folder; default: <workdir>/data.")
    flags.DEFINE_enum("method", "baseline", list(demo_config.METHODS), "baseline or udon.")


def main(argv: Sequence[str]) -> None:
    """absl main: run every demo stage with the parsed flags."""
    run_demo(flags.FLAGS.workdir, flags.FLAGS.dtype, flags.FLAGS.data_dir, flags.FLAGS.method)


def cli() -> None:
    """The `ue-demo` command."""
    define_flags()
    command.run(main, quiet=True)


if __name__ == "__main__":
    cli()
