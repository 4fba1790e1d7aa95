"""Resuming from a damaged series: newest intact step, unreadable ones set aside; other models."""

import glob
import logging
import os

import jax
import numpy as np
import pytest

from universal_embedding import checkpoint, train_settings
from universal_embedding.configs import base
from universal_embedding.distributed import mesh as mesh_lib
from universal_embedding.train import optimizers, steps


def _state(mesh, seed=0, width=3):
    rng = np.random.default_rng(seed)
    params = {
        "backbone": {"w": rng.normal(size=(4, width)).astype(np.float32)},
        "heads": {"cars": {"kernel": rng.normal(size=(width, 5)).astype(np.float32)}},
    }
    tx = optimizers.make_optimizer(
        train_settings.optimizer_settings(base.get_config()), steps_per_epoch=1, total_steps=10
    )
    return steps.create_train_state(params, tx, mesh)


def _series(workdir, saved_steps, mesh):
    """Checkpoints of steps `saved_steps`, step s holding _state(seed=s); the saved states."""
    ckpts = checkpoint.Checkpoints(workdir, checkpoint_steps=1, max_to_keep=10)
    states = {s: _state(mesh, seed=s) for s in saved_steps}
    for s in saved_steps:
        assert ckpts.save_latest(s, states[s], {"s": s})
    ckpts.close()
    return {s: jax.device_get(st) for s, st in states.items()}


def _truncate_data(step_dir):
    files = glob.glob(os.path.join(step_dir, "state", "**", "d", "*"), recursive=True)
    assert files
    for f in files:
        with open(f, "r+b") as fh:
            fh.truncate(os.path.getsize(f) // 3)


def _assert_equal(a, b):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


@pytest.mark.parametrize("damage", ["truncated data", "missing metadata"])
def test_falls_back_to_newest_intact_step_and_sets_the_rest_aside(tmp_path, caplog, damage):
    mesh, workdir = mesh_lib.make_mesh(), str(tmp_path)
    saved = _series(workdir, [1, 2, 3], mesh)
    root = checkpoint.checkpoint_dir(workdir)
    if damage == "truncated data":
        _truncate_data(os.path.join(root, "3"))
    else:
        os.remove(os.path.join(root, "3", "state", "_METADATA"))
    ckpts = checkpoint.Checkpoints(workdir, checkpoint_steps=1, max_to_keep=10)
    assert ckpts.latest_step() == 3  # listed: only reading it shows the damage
    with caplog.at_level(logging.WARNING):
        state, extra = ckpts.restore_latest(_state(mesh, seed=9))
    assert extra == {"s": 2}
    _assert_equal(state, saved[2])
    warning = [r.getMessage() for r in caplog.records if "unreadable checkpoint" in r.getMessage()]
    assert len(warning) == 1 and "step 3 (" in warning[0] and "from step 2" in warning[0]
    assert sorted(os.listdir(root)) == ["1", "2"]
    assert os.listdir(os.path.join(workdir, "checkpoints", "corrupt")) == ["3"]
    assert ckpts.latest_step() == 2
    assert ckpts.save_latest(3, state)  # the step number can be saved again
    ckpts.close()


def test_no_intact_step_is_one_line_naming_each(tmp_path):
    mesh, workdir = mesh_lib.make_mesh(), str(tmp_path)
    _series(workdir, [1, 2], mesh)
    root = checkpoint.checkpoint_dir(workdir)
    _truncate_data(os.path.join(root, "2"))
    os.remove(os.path.join(root, "1", "state", "_METADATA"))
    ckpts = checkpoint.Checkpoints(workdir, checkpoint_steps=1, max_to_keep=10)
    with pytest.raises(checkpoint.NoIntactCheckpoint) as e:
        ckpts.restore_latest(_state(mesh))
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith(f"No intact checkpoint under {root}: step 2 (")
    assert "; step 1 (" in msg and msg.endswith("or use a new --workdir.")
    assert sorted(os.listdir(root)) == ["1", "2"]  # nothing moved when nothing restores
    ckpts.close()


def test_other_model_shapes_are_named_in_one_line_and_nothing_moves(tmp_path):
    mesh, workdir = mesh_lib.make_mesh(), str(tmp_path)
    _series(workdir, [1, 2], mesh)
    ckpts = checkpoint.Checkpoints(workdir, checkpoint_steps=1, max_to_keep=10)
    with pytest.raises(checkpoint.ModelMismatch) as e:
        ckpts.restore_latest(_state(mesh, width=6))
    msg = str(e.value)
    assert "\n" not in msg
    assert "parameter backbone/w is (4, 3) there but (4, 6) with this config" in msg
    assert sorted(os.listdir(checkpoint.checkpoint_dir(workdir))) == ["1", "2"]
    ckpts.close()
