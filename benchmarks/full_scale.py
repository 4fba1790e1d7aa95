"""UnED at S x its real size, every stage timed with its peak memory and output bytes.

    .venv/bin/python benchmarks/full_scale.py --scale 0.01 --workdir W --out W/full_scale.json

Builds an UnED-shaped data set under W/data (benchmarks/full_scale_data.py: every split of every
domain at S x the registry's sizes, real class and shard counts), then runs the project's own
commands, each in a process of its own so its peak RSS is its own (os.wait4's ru_maxrss): making
the data, `data.prepare`, training the tiny ViT (64-d embedding) on all 8 domains with a joint
head over all training classes (W/train) and with separate heads, a training killed with SIGKILL
twice and rerun (its logged losses must equal W/train's; at 0.01, 110 steps an epoch, the reruns
cross every domain's epoch boundaries, at 0.1 and 1.0 they resume mid-epoch), the final test
(W/train/results.json, descriptors.npz, the original-format .pkl), `descr_eval` on both
descriptor files beside faiss's bare exact search of the same searches, `knn_main` on W/train
with its gallery, `index build` (flat, ivf) over every test index image and `index query` of
1,000 images, and UDON. --out gets
{"scale", "stages": [{"name", "seconds", "peak_rss_bytes", "output_bytes"}, ...], "checks"}.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
STEPS, CKPT_EVERY, BATCH = 400, 50, 256
KILL_AFTER = (100, 200)  # checkpoints after which the resume run is killed
TINY = {
    "model.hidden_size": 16,
    "model.num_heads": 2,
    "model.mlp_dim": 32,
    "model.num_layers": 1,
    "model.patch_size": 8,
    "model.output_dim": 64,
    "image_size": 32,
    "resize_size": 36,
    "batch_size": BATCH,
    "eval_batch_size": 1024,
    "shuffle_buffer_size": 2000,
    "num_training_steps": STEPS,
    "warmup_steps": 50,
    "checkpoint_steps": CKPT_EVERY,
    "max_checkpoints_to_keep": 2,
    "log_summary_steps": 10,
    "eval_knns": "",
    "save_descriptors": True,
}


def output_bytes(paths: list[str]) -> int:
    """Bytes of the files under paths, each inode once (the data's images are hard links)."""
    seen, total = set(), 0
    for top in paths:
        walk = [(top, [], [""])] if os.path.isfile(top) else os.walk(top)
        for folder, _, files in walk:
            for name in files:
                st = os.stat(os.path.join(folder, name)) if name else os.stat(folder)
                if (st.st_dev, st.st_ino) not in seen:
                    seen.add((st.st_dev, st.st_ino))
                    total += st.st_size
    return total


def run(cmd: list[str], log: str, kill_when=None) -> tuple[float, int, int]:
    """(seconds, peak RSS bytes, exit status) of one command, its output appended to log;
    kill_when(): True -> SIGKILL it (polled every 50 ms)."""
    env = dict(os.environ, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL="2")
    with open(log, "a") as out:
        out.write(f"$ {' '.join(cmd)}\n")
        out.flush()
        start = time.time()
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
        while kill_when is not None:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if kill_when():
                proc.send_signal(signal.SIGKILL)
                kill_when = None
            time.sleep(0.05)
        else:
            pid, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
    return time.time() - start, usage.ru_maxrss * 1024, proc.returncode


def module(name: str, *args: str) -> list[str]:
    return [sys.executable, "-m", f"universal_embedding.{name}", *args]


def train_cmd(w: str, workdir: str, method: str = "baseline", **over) -> list[str]:
    config = f"universal_embedding/configs/demo.py:data_dir={w}/data,method={method}"
    fields = {**TINY, **over}
    return module(
        "main", f"--config={config}", f"--workdir={workdir}",
        *(f"--config.{k}={v}" for k, v in fields.items()),
    )  # fmt: skip


def substage(name: str, w: str, scale: float, *extra: str) -> list[str]:
    steps = os.path.join(HERE, "full_scale_steps.py")
    return [sys.executable, steps, name, w, str(scale), *extra]


def stages(w: str, scale: float, separate_only: bool = False) -> list[tuple[str, list, list]]:
    """(name, command, outputs) of every stage, in order (separate_only: see --separate_only)."""
    t, knn, idx = f"{w}/train", f"{w}/knn_main", f"{w}/index"
    pkl = f"{t}/descriptors_original.pkl"
    info = f"--config.info_files_dir={w}/data/info_files"

    sep = ["--config.disabled_merged_knns=train_knn,val_knn,test_knn"] if separate_only else []
    suffix = "_separate" if separate_only else ""

    def descr_eval(out: str, path: str) -> list[str]:
        config = "universal_embedding/configs/config_knn_descr_eval.py"
        return module("descr_eval", f"--config={config}", f"--workdir={out}",
                      f"--config.descr_path={path}", info, *sep)  # fmt: skip

    def index(*args: str) -> list[str]:
        return module("index", *args)

    knn_main = module(
        "knn_main", "--config=universal_embedding/configs/config_knn_vit.py", f"--workdir={knn}",
        f"--config.train_dir={t}", "--config.save_neighbors=True", "--config.eval_batch_size=1024",
        f"--config.images_dir={w}/data/images", f"--config.eval_dataset_dir={w}/data/tfds", info,
        *(["--config.disabled_merged_knns=test_knn"] if separate_only else []),
    )  # fmt: skip
    udon = dict(do_final_testing=False, update_sampler_every_steps=100)
    flat, ivf = f"--out={idx}/flat", f"--out={idx}/ivf"
    return [
        ("make_data", substage("make_data", w, scale),
         [f"{w}/data/images", f"{w}/data/info_files"]),
        ("prepare", module("data.prepare", f"--data_dir={w}/data", "--processes=0"),
         [f"{w}/data/tfds"]),
        ("train_joint", train_cmd(w, t, do_final_testing=False), [t]),
        ("final_test", train_cmd(w, t, do_final_testing=True),
         [f"{t}/results.json", f"{t}/descriptors.npz"]),
        ("write_original_descriptors", substage("write_original", w, scale), [pkl]),
        ("train_separate",
         train_cmd(w, f"{w}/train_separate", classifier="separate", do_final_testing=False),
         [f"{w}/train_separate"]),
        ("faiss_bare_search" + suffix, substage("faiss_bare", w, scale, *sep[:1]), []),
        ("descr_eval_npz" + suffix, descr_eval(f"{w}/descr_eval_npz", f"{t}/descriptors.npz"),
         [f"{w}/descr_eval_npz"]),
        ("descr_eval_original" + suffix, descr_eval(f"{w}/descr_eval_pkl", pkl),
         [f"{w}/descr_eval_pkl"]),
        ("knn_main" + suffix, knn_main, [knn]),
        ("index_descriptors", substage("index_descriptors", w, scale),
         [f"{idx}/descriptors.npz", f"{idx}/queries"]),
        ("index_build_flat", index("build", f"--descriptors={idx}/descriptors.npz", "--kind=flat",
                                   flat), [f"{idx}/flat"]),
        ("index_build_ivf", index("build", f"--descriptors={idx}/descriptors.npz", "--kind=ivf",
                                  ivf), [f"{idx}/ivf"]),
        ("index_query_1000", index("query", f"--index={idx}/flat", f"--workdir={t}",
                                   f"--images={idx}/queries", f"--out={idx}/query.json"),
         [f"{idx}/query.json"]),
        ("udon_train", train_cmd(w, f"{w}/udon", "udon", **udon), [f"{w}/udon"]),
        ("udon_final_test", train_cmd(w, f"{w}/udon", "udon", **{**udon, "do_final_testing": True}),
         [f"{w}/udon/results.json"]),
    ]  # fmt: skip


def reached(workdir: str, step: int) -> bool:
    """True once workdir holds a latest checkpoint at `step` or later."""
    return max(latest_steps(workdir), default=0) >= step


def latest_steps(workdir: str) -> list[int]:
    folder = os.path.join(workdir, "checkpoints", "latest")
    try:
        return [int(n) for n in os.listdir(folder) if n.isdigit()]
    except OSError:
        return []


def resume_stage(w: str, log: str) -> tuple[dict, dict]:
    """Train into W/resume, SIGKILL after each KILL_AFTER checkpoint, rerun to the end; the
    logged training losses must equal W/train's."""
    workdir, seconds, peak = f"{w}/resume", 0.0, 0
    cmd = train_cmd(w, workdir, do_final_testing=False)
    for after in (*KILL_AFTER, None):
        when = (
            None if after is None else (lambda a=after: max(latest_steps(workdir), default=0) >= a)
        )
        s, rss, code = run(cmd, log, when)
        seconds, peak = seconds + s, max(peak, rss)
        if after is None and code != 0:
            raise SystemExit(f"resume run failed (exit {code}); see {log}")
    same = losses(f"{w}/train") == losses(workdir)
    stage = {"name": "train_killed_twice_and_rerun", "seconds": seconds, "peak_rss_bytes": peak}
    stage["output_bytes"] = output_bytes([workdir])
    return stage, {"resumed_losses_equal": same, "resumed_rows": len(losses(workdir))}


def losses(workdir: str) -> dict[int, float]:
    rows = {}
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        for line in f:
            row = json.loads(line)
            if "train/loss" in row:
                rows[row["step"]] = row["train/loss"]
    return rows


RESUME = "train_killed_twice_and_rerun"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scale", type=float, required=True)
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument(
        "--only",
        default="",
        help="comma-separated stage names (default: all); "
        "their figures replace those of the same names in an existing --out",
    )
    parser.add_argument(
        "--separate_only",
        action="store_true",
        help="descr_eval, knn_main and "
        "the bare search without the merged protocol (stage names get _separate)",
    )
    args = parser.parse_args()  # fmt: skip
    w = os.path.abspath(args.workdir)
    os.makedirs(w, exist_ok=True)
    log = os.path.join(w, "full_scale.log")
    report = {"scale": args.scale, "stages": [], "checks": {}}
    only = set(filter(None, args.only.split(",")))
    if only and os.path.isfile(args.out):
        with open(args.out) as f:
            report = json.load(f)
    for name, cmd, outputs in stages(w, args.scale, args.separate_only):
        if only and name not in only and name.removesuffix("_separate") not in only:
            continue
        seconds, peak, code = run(cmd, log)
        if code != 0:
            raise SystemExit(f"stage {name} failed (exit {code}); see {log}")
        stage = {"name": name, "seconds": seconds, "peak_rss_bytes": peak}
        stage["output_bytes"] = output_bytes(outputs)
        _record(report, args.out, stage)
        if name == "train_separate" and (not only or RESUME in only):
            stage, checks = resume_stage(w, log)
            report["checks"].update(checks)
            _record(report, args.out, stage, checks)


def _record(report: dict, out: str, stage: dict, checks: dict | None = None) -> None:
    report["stages"] = [s for s in report["stages"] if s["name"] != stage["name"]] + [stage]
    print(json.dumps(stage), json.dumps(checks) if checks else "", flush=True)
    with open(out, "w") as f:
        json.dump(report, f, indent=1)


if __name__ == "__main__":
    main()
