"""Every command on the tiny setup: no third-party warning or banner on stderr without
--verbose (orbax, TensorFlow's C++ start-up lines, WARNING:absl), and its last lines name the
files it wrote. The Python API is quiet too, unless UE_VERBOSE=1."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = "universal_embedding/configs/tiny.py"
# What the libraries print when left alone (absl's W/I prefix, Python warnings, TF's C++ log).
NOISE = re.compile(
    r"^[WIE]\d{4} |WARNING:|Warning:|oneDNN|cpu_feature_guard|This TensorFlow binary|"
    r"InitializeLog|CheckpointManager|Traceback",
    re.MULTILINE,
)


def environment(tmp: str) -> dict[str, str]:
    """The test process's environment without the variables that would hide the noise."""
    env = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", "UE_VERBOSE")}
    env["JAX_PLATFORMS"] = "cpu"
    env["JAX_COMPILATION_CACHE_DIR"] = os.path.join(tmp, "jax_cache")  # shared by the commands
    env["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
    return env


def run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    out = subprocess.run(
        [sys.executable, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return out


def noise(stderr: str) -> list[str]:
    """stderr lines a library printed (progress bars aside)."""
    lines = [part for line in stderr.splitlines() for part in line.split("\r")]
    return [line for line in lines if NOISE.search(line)]


def last_written(stdout: str) -> list[str]:
    """The paths of the 'Wrote <path>' lines that end stdout."""
    lines = stdout.strip().splitlines()
    tail = []
    while lines and lines[-1].startswith("Wrote "):
        tail.insert(0, lines.pop()[len("Wrote ") :].rstrip(os.sep))
    return tail


@pytest.fixture(scope="module")
def runs(data_dir, tmp_path_factory):
    """Each command run once, in order, on the tiny data: {name: (completed process, paths)}."""
    tmp = str(tmp_path_factory.mktemp("quiet"))
    env = environment(tmp)
    t, k, e, ix, x = (os.path.join(tmp, n) for n in ("train", "knn", "extract", "ix", "export"))
    images = os.path.join(data_dir, "images", "cars", "test")
    knn = ["--config.info_files_dir=" + os.path.join(data_dir, "info_files"),
           "--config.eval_dataset_dir=" + os.path.join(data_dir, "tfds"),
           "--config.knn_eval_names=cars,sop", "--config.eval_batch_size=16"]  # fmt: skip
    commands = {
        "synthetic": ["universal_embedding.data.synthetic", f"--data_dir={tmp}/syn",
                      "--scale=0.1", "--domains=cars"],
        "prepare": ["universal_embedding.data.prepare", f"--data_dir={data_dir}",
                    "--domains=cars,sop"],
        "main": ["universal_embedding.main", f"--config={TINY}:data_dir={data_dir}",
                 f"--workdir={t}", "--config.num_training_steps=2",
                 "--config.do_final_testing=True"],
        "knn_main": ["universal_embedding.knn_main", "--config=config_knn_vit.py",
                     f"--workdir={k}", f"--config.train_dir={t}", *knn],
        "descr_eval": ["universal_embedding.descr_eval", f"--workdir={k}/eval",
                       "--config=config_knn_descr_eval.py", *knn[:1], *knn[2:3],
                       f"--config.descr_path={k}/descriptors.npz"],
        "extract_dir": ["universal_embedding.extract_dir_descriptors",
                        "--config=config_extract_dir_descriptors.py", f"--workdir={e}",
                        f"--config.base_dir={images}", f"--config.train_dir={t}",
                        "--config.eval_batch_size=16"],
        "index_build": ["universal_embedding.index", "build",
                        f"--descriptors={e}/descriptors.npz", f"--out={ix}",
                        f"--images_dir={images}"],
        "index_query": ["universal_embedding.index", "query", f"--index={ix}",
                        f"--workdir={t}", f"--images={images}", "--k=2",
                        f"--out={tmp}/q.json", f"--html={tmp}/q.html"],
        "export": ["universal_embedding.export", f"--workdir={t}", f"--out={x}"],
    }  # fmt: skip
    return {name: run(["-m", *args], env) for name, args in commands.items()} | {
        "paths": (data_dir, tmp, t, k, e, ix, x)
    }


COMMANDS = ["synthetic", "prepare", "main", "knn_main", "descr_eval", "extract_dir",
            "index_build", "index_query", "export"]  # fmt: skip


@pytest.mark.parametrize("name", COMMANDS)
def test_no_library_warnings_without_verbose(runs, name):
    assert noise(runs[name].stderr) == []


def test_every_command_ends_naming_what_it_wrote(runs):
    data_dir, tmp, t, k, e, ix, x = runs["paths"]
    assert runs["synthetic"].stdout.strip().splitlines()[-1].endswith(f"{tmp}/syn")
    assert last_written(runs["prepare"].stdout) == [os.path.join(data_dir, "tfds")]
    assert last_written(runs["main"].stdout) == [
        os.path.join(t, n) for n in sorted(os.listdir(t)) if n != "train.lock"
    ]
    assert {"checkpoints", "config.json", "results.json", "results.html"} <= {
        os.path.basename(p) for p in last_written(runs["main"].stdout)
    }
    knn = [os.path.basename(p) for p in last_written(runs["knn_main"].stdout)]
    assert knn == ["knn_config.json", "results.json", "results.csv", "results.md",
                   "results.html", "results_original.json", "descriptors.npz"]  # fmt: skip
    evaluated = [os.path.basename(p) for p in last_written(runs["descr_eval"].stdout)]
    assert evaluated == knn[1:6]
    assert last_written(runs["extract_dir"].stdout) == [
        os.path.join(e, "extract_config.json"),
        os.path.join(e, "descriptors.npz"),
    ]
    assert last_written(runs["index_build"].stdout) == [
        os.path.join(ix, n) for n in sorted(os.listdir(ix))
    ]
    assert last_written(runs["index_query"].stdout) == [f"{tmp}/q.json", f"{tmp}/q.html"]
    exported = runs["export"].stdout.strip().splitlines()
    assert any(x in line for line in exported[-3:])  # the export folder's files


def test_ue_train_and_knn_main_end_with_the_results_table(runs):
    for name in ("main", "knn_main"):
        lines = runs[name].stdout.strip().splitlines()
        body = lines[: len(lines) - len(last_written(runs[name].stdout))]
        assert body[-6].startswith("kNN results (k=5): test_knn"), name
        assert [row.split("|")[1].strip() for row in body[-3:]] == ["cars", "sop", "average"]


def test_the_python_api_is_quiet_unless_ue_verbose(runs, tmp_path):
    t = runs["paths"][2]
    code = f"from universal_embedding import Embedder; Embedder.from_workdir({t!r})"
    env = environment(str(tmp_path))
    quiet = run(["-c", code], env)
    assert noise(quiet.stderr) == [] and quiet.stderr == ""
    loud = run(["-c", code], {**env, "UE_VERBOSE": "1"})
    assert any("WARNING:absl" in line for line in noise(loud.stderr))  # what the filter hides
