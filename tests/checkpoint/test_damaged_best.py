"""A best checkpoint missing its extra/ folder does not block resuming from an intact latest."""

from __future__ import annotations

import os
import shutil

import numpy as np

from universal_embedding import checkpoint


def test_best_without_extra_is_set_aside_and_latest_resumes(tmp_path, caplog):
    workdir = str(tmp_path)
    state = {"w": np.arange(3, dtype=np.float32)}
    ckpts = checkpoint.Checkpoints(workdir, checkpoint_steps=1, max_to_keep=2, async_save=False)
    ckpts.save_latest(2, state, {"note": "x"}, force=True)
    assert ckpts.save_best_if_better(2, state, 0.5)
    ckpts.close()
    shutil.rmtree(os.path.join(checkpoint.checkpoint_dir(workdir, checkpoint.BEST), "2", "extra"))

    ckpts = checkpoint.Checkpoints(workdir, checkpoint_steps=1, max_to_keep=2, async_save=False)
    restored, extra = ckpts.restore_latest({"w": np.zeros(3, np.float32)})
    np.testing.assert_array_equal(restored["w"], state["w"])
    assert extra == {"note": "x"}
    assert ckpts.best_step() is None and ckpts.best_metric is None
    assert "Best checkpoint step 2 under" in caplog.text
    assert os.listdir(os.path.join(workdir, "checkpoints", "corrupt")) == ["2"]
    assert ckpts.save_best_if_better(2, state, 0.1)  # a new best is saved
    ckpts.close()


def test_latest_reader_falls_back_from_a_truncated_newest_step(tmp_path, caplog):
    # knn_main --config.checkpoint=latest on a run whose newest step is truncated
    workdir = str(tmp_path)
    ckpts = checkpoint.Checkpoints(workdir, checkpoint_steps=1, max_to_keep=3, async_save=False)
    rng = np.random.default_rng(0)
    weights = {step: rng.standard_normal(4096).astype(np.float32) for step in (2, 4)}
    for step in (2, 4):
        state = {"params": {"w": weights[step]}}
        ckpts.save_latest(step, state, {}, force=True)
    ckpts.close()
    newest = os.path.join(checkpoint.checkpoint_dir(workdir), "4")
    files = [os.path.join(d, n) for d, _, ns in os.walk(os.path.join(newest, "state")) for n in ns]
    biggest = max(files, key=os.path.getsize)
    with open(biggest, "r+b") as f:
        f.truncate(os.path.getsize(biggest) // 2)
    params, info = checkpoint.restore_params(workdir, "latest")
    assert info["step"] == 2
    np.testing.assert_array_equal(params["w"], weights[2])
    assert f"Skipped unreadable latest checkpoint(s): {newest} (" in caplog.text
    assert "using step 2" in caplog.text


def test_a_full_disk_during_a_save_is_one_line_and_the_last_step_stays_usable(
    tmp_path, monkeypatch
):
    workdir = str(tmp_path)
    ckpts = checkpoint.Checkpoints(workdir, checkpoint_steps=1, max_to_keep=3, async_save=False)
    state = {"params": {"w": np.arange(4, dtype=np.float32)}}
    ckpts.save_latest(2, state, {}, force=True)
    ckpts.wait()
    latest = checkpoint.checkpoint_dir(workdir)
    partial = os.path.join(latest, "4.orbax-checkpoint-tmp-1")

    def full(*args, **kwargs):  # what TensorStore raises (seen on a 200 KB tmpfs)
        os.makedirs(os.path.join(partial, "state"))
        raise ValueError(
            'RESOURCE_EXHAUSTED: Error writing "params.w/0": Failed to write 214755 bytes to '
            "file 4: No space left on device [os_error_code='28']"
        )

    monkeypatch.setattr(ckpts._latest, "save", full)
    try:
        ckpts.save_latest(4, state, {}, force=True)
    except checkpoint.DiskFull as e:
        message = str(e)
    assert message == (
        f"No space left on device while saving step 4 under {os.path.dirname(latest)} (the "
        "partial save was removed; last intact checkpoint: step 2). Free space or lower "
        "config.max_checkpoints_to_keep, then rerun the same command."
    )
    assert os.listdir(latest) == ["2"]
    monkeypatch.undo()
    ckpts.close()
    again = checkpoint.Checkpoints(workdir, checkpoint_steps=1, max_to_keep=3)
    restored, _ = again.restore_latest({"params": {"w": np.zeros(4, np.float32)}})
    np.testing.assert_array_equal(restored["params"]["w"], state["params"]["w"])
    again.close()
