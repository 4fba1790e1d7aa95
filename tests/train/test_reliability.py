"""The trainer when things go wrong: NaN/inf, a locked workdir, a resume for another model."""

from __future__ import annotations

import json
import os
import re
import subprocess

import jax
import numpy as np
import pytest

from universal_embedding import checkpoint, writers
from universal_embedding import main as train_main
from universal_embedding.checkpoint import lock
from universal_embedding.configs import tiny
from universal_embedding.train import guards

pytestmark = pytest.mark.usefixtures("compilation_cache")


def tiny_config(data_dir: str, **overrides):
    c = tiny.get_config(f"data_dir={data_dir}")
    for key, value in overrides.items():
        if "." in key:
            group, name = key.split(".")
            c[group][name] = value
        else:
            c[key] = value
    return c


def all_finite(tree) -> bool:
    return all(np.all(np.isfinite(np.asarray(x))) for x in jax.tree.leaves(tree))


def test_non_finite_loss_stops_before_any_non_finite_checkpoint(data_dir, tmp_path):
    # Backbone lr 1e38: the backbone unfreezes at step 4 and the loss of step 5 is NaN.
    workdir = str(tmp_path)
    c = tiny_config(
        data_dir,
        backbone_lr_multiplier=1e40,
        num_training_steps=8,
        checkpoint_steps=2,
        log_summary_steps=3,  # summaries at 3, 6: step 5 is only looked at before step 6's save
        eval_knns="val_knn",
        log_eval_steps=3,  # best checkpoint at 3, never at 6
    )
    with pytest.raises(guards.NonFinite) as e:
        train_main.main(c, workdir)
    assert str(e.value).startswith(
        "non-finite loss at step 5 (domain cars); last good checkpoint: step 4."
    )
    assert sorted(os.listdir(checkpoint.checkpoint_dir(workdir))) == ["2", "4"]
    for step in (2, 4):
        assert all_finite(checkpoint.restore_params(workdir, step)[0])
    best, info = checkpoint.restore_params(workdir, "best")
    assert info["step"] == 3 and all_finite(best)
    train_rows = [r["step"] for r in writers.read_metrics(workdir) if "train/loss" in r]
    assert train_rows == [3]
    assert not os.path.exists(lock.lock_path(workdir))


def test_locked_workdir_refuses_before_writing_anything(data_dir, tmp_path):
    workdir = str(tmp_path)
    holder = subprocess.Popen(["sleep", "60"])
    try:
        os.makedirs(workdir, exist_ok=True)
        with open(lock.lock_path(workdir), "w") as f:
            json.dump({"pid": holder.pid, "host": os.uname().nodename, "started": 0}, f)
        with pytest.raises(checkpoint.WorkdirLocked, match=f"in use by pid {holder.pid}"):
            train_main.main(tiny_config(data_dir, num_training_steps=1), workdir)
    finally:
        holder.kill()
        holder.wait()
    assert os.listdir(workdir) == [lock.LOCK_FILE]


def test_resume_with_another_model_keeps_config_json_and_says_so(data_dir, tmp_path):
    workdir = str(tmp_path)
    train_main.main(tiny_config(data_dir, num_training_steps=2), workdir)
    with open(os.path.join(workdir, "config.json"), "rb") as f:
        before = f.read()
    other = tiny_config(data_dir, num_training_steps=4, **{"model.output_dim": 4})
    with pytest.raises(checkpoint.ModelMismatch) as e:
        train_main.main(other, workdir)
    msg = str(e.value)
    assert "\n" not in msg
    assert re.search(r"parameter \S+ is \(\d+, \d+\) there but \(\d+, \d+\) with this config", msg)
    with open(os.path.join(workdir, "config.json"), "rb") as f:
        assert f.read() == before
    assert json.loads(before)["model"]["output_dim"] == 8
    assert sorted(os.listdir(checkpoint.checkpoint_dir(workdir))) == ["2"]
    assert not os.path.exists(lock.lock_path(workdir))
