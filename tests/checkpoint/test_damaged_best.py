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
