"""Real processes: two-process training on localhost equals one process; SIGKILL + rerun resumes.

Both launch `python -m universal_embedding.main` the way a user would, on CPU devices, with
the tiny config (configs/tiny.py) on a small synthetic mini-UnED.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from universal_embedding import checkpoint, writers
from universal_embedding import main as train_main
from universal_embedding.configs import tiny
from universal_embedding.data import train_stream
from universal_embedding.knn import descriptors as knn_descriptors

pytestmark = pytest.mark.usefixtures("compilation_cache")

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TINY = "universal_embedding/configs/tiny.py"


def run_config(data_dir: str, **overrides):
    """The tiny config with overrides, and the same as command-line flags."""
    c = tiny.get_config(f"data_dir={data_dir}")
    for key, value in overrides.items():
        c[key] = value
    flags = [f"--config={TINY}:data_dir={data_dir}"]
    flags += [f"--config.{k}={v}" for k, v in overrides.items()]
    return c, flags


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(flags: list[str], workdir: str, env_extra: dict) -> subprocess.Popen:
    env = {
        **os.environ,
        "JAX_PLATFORMS": "cpu",
        "TF_CPP_MIN_LOG_LEVEL": "2",
        "JAX_COMPILATION_CACHE_DIR": jax.config.jax_compilation_cache_dir,
        "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
        "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0",
        **env_extra,
    }
    cmd = [sys.executable, "-m", "universal_embedding.main", *flags, f"--workdir={workdir}"]
    return subprocess.Popen(
        cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def finish(proc: subprocess.Popen, timeout: float = 300) -> str:
    out, _ = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, out[-4000:]
    return out


def test_two_processes_match_one_process_with_the_same_global_batch(
    data_dir, tmp_path, monkeypatch
):
    config, flags = run_config(
        data_dir,
        num_training_steps=4,
        eval_knns="val_knn",
        log_eval_steps=4,
        do_final_testing=True,
        save_descriptors=True,
    )
    multi = str(tmp_path / "two_processes")
    port = free_port()
    procs = [
        launch(
            flags,
            multi,
            {
                "JAX_COORDINATOR_ADDRESS": f"127.0.0.1:{port}",
                "JAX_NUM_PROCESSES": "2",
                "JAX_PROCESS_ID": str(i),
                # one CPU device each; less LLVM optimisation = much faster compiles
                "XLA_FLAGS": "--xla_force_host_platform_device_count=1 "
                "--xla_backend_optimization_level=0",
            },
        )
        for i in range(2)
    ]
    outputs = [finish(p) for p in procs]
    assert [
        f"process {i} of 2, 1 local / 2 global devices" in o for i, o in enumerate(outputs)
    ] == [
        True,
        True,
    ]

    # One process, 2 devices, fed the concatenation of both processes' shares: the same
    # global batch (process 0's rows then process 1's) at every step.
    original = train_stream.schedule_batches

    def both_shares(*args, process_index=0, process_count=1, **kwargs):
        assert (process_index, process_count) == (0, 1)
        parts = [original(*args, process_index=i, process_count=2, **kwargs) for i in range(2)]
        for a, b in zip(*parts, strict=True):
            yield {k: np.concatenate([a[k], b[k]]) for k in a}

    monkeypatch.setattr(train_stream, "schedule_batches", both_shares)
    single = str(tmp_path / "one_process")
    assert jax.process_count() == 1 and jax.device_count() == 2
    results = train_main.main(config, single)

    multi_losses = {
        r["step"]: r["train/loss"] for r in writers.read_metrics(multi) if "train/loss" in r
    }
    single_losses = {
        r["step"]: r["train/loss"] for r in writers.read_metrics(single) if "train/loss" in r
    }
    assert sorted(multi_losses) == [1, 2, 3, 4]
    for step, loss in single_losses.items():
        assert abs(multi_losses[step] - loss) <= 1e-5, (step, multi_losses[step], loss)
    # Validation and the final test also ran sharded over both processes.
    d_multi = knn_descriptors.load_descriptors(os.path.join(multi, "descriptors.npz"))
    d_single = knn_descriptors.load_descriptors(os.path.join(single, "descriptors.npz"))
    assert sorted(d_multi) == sorted(d_single) == ["cars/test", "sop/test"]
    for key in d_single:
        np.testing.assert_allclose(d_multi[key], d_single[key], atol=1e-5)
    _, best_multi = checkpoint.restore_params(multi, "best")
    assert best_multi["step"] == 4
    assert "average:common:test_knn:mp_5" in results


@pytest.mark.slow  # two more processes, ~40 s on 2 cores; test_trainer.py covers resume too
def test_sigkill_then_rerun_ends_like_an_uninterrupted_run(data_dir, tmp_path):
    steps = 30
    config, flags = run_config(data_dir, num_training_steps=steps)
    reference = str(tmp_path / "reference")
    train_main.main(config, reference)

    killed = str(tmp_path / "killed")
    proc = launch(flags, killed, {})
    latest = checkpoint.checkpoint_dir(killed)
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        done = [int(n) for n in os.listdir(latest) if n.isdigit()] if os.path.isdir(latest) else []
        if done and max(done) >= 4:
            break
        time.sleep(0.02)
    assert proc.poll() is None, "training finished before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    saved = max(int(n) for n in os.listdir(latest) if n.isdigit())
    assert 4 <= saved < steps

    out = finish(launch(flags, killed, {}))
    assert "resumed from step " in out
    resumed = int(out.split("resumed from step ")[1].split()[0])
    assert 4 <= resumed < steps
    ref_params, ref_info = checkpoint.restore_params(reference, "best")
    new_params, new_info = checkpoint.restore_params(killed, "best")
    assert ref_info["step"] == new_info["step"] == steps
    for a, b in zip(jax.tree.leaves(ref_params), jax.tree.leaves(new_params), strict=True):
        np.testing.assert_array_equal(a, b)


def test_sigterm_saves_the_current_step_and_the_rerun_ends_identical(data_dir, tmp_path, capsys):
    steps = 24
    config, flags = run_config(data_dir, num_training_steps=steps, checkpoint_steps=7)
    reference = str(tmp_path / "reference")
    train_main.main(config, reference)

    killed = str(tmp_path / "killed")
    proc = launch(flags, killed, {})
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        if any(r["step"] >= 2 for r in writers.read_metrics(killed)):
            break
        time.sleep(0.05)
    assert proc.poll() is None, "training finished before the signal"
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 1, out[-3000:]
    found = re.findall(r"preempted at step (\d+): checkpoint saved", out)
    assert len(found) == 1, out[-3000:]
    stopped = int(found[0])
    assert 2 <= stopped < steps
    assert str(stopped) in os.listdir(checkpoint.checkpoint_dir(killed))
    assert not os.path.exists(os.path.join(killed, "train.lock"))

    capsys.readouterr()
    train_main.main(config, killed)
    assert f"resumed from step {stopped}\n" in capsys.readouterr().out
    ref_params, _ = checkpoint.restore_params(reference, steps)
    new_params, _ = checkpoint.restore_params(killed, steps)
    for a, b in zip(jax.tree.leaves(ref_params), jax.tree.leaves(new_params), strict=True):
        np.testing.assert_array_equal(a, b)
    rows = [r["step"] for r in writers.read_metrics(killed) if "train/loss" in r]
    assert rows == list(range(1, steps + 1))  # each step once
