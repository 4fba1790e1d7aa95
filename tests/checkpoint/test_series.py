"""Checkpoints: bit-identical round trip, keep-N, best tracking, interrupted saves never listed."""

import os
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from universal_embedding import checkpoint, train_settings
from universal_embedding.configs import base
from universal_embedding.distributed import mesh as mesh_lib
from universal_embedding.train import optimizers, steps


def _state(mesh, seed=0):
    rng = np.random.default_rng(seed)
    params = {
        "backbone": {
            "w": rng.normal(size=(4, 3)).astype(np.float32),
            "neg0": np.array([-0.0], np.float32),
        },
        "heads": {"cars": {"kernel": rng.normal(size=(3, 5)).astype(np.float32)}},
    }
    # the project's optimiser: multi_transform + freeze wrapper state must round-trip too
    tx = optimizers.make_optimizer(
        train_settings.optimizer_settings(base.get_config()), steps_per_epoch=1, total_steps=10
    )
    state = steps.create_train_state(params, tx, mesh)
    grads = jax.tree.map(jnp.ones_like, state.params)  # give Adam non-zero moments
    updates, opt_state = jax.jit(tx.update)(grads, state.opt_state, state.params)
    return state.replace(params=optax.apply_updates(state.params, updates), opt_state=opt_state)


def _bits(tree):
    return [np.atleast_1d(np.asarray(x)).view(np.uint8).copy() for x in jax.tree.leaves(tree)]


def _assert_bit_identical(a, b):
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for x, y in zip(_bits(a), _bits(b), strict=True):
        np.testing.assert_array_equal(x, y)


def test_round_trip_is_bit_identical_and_keeps_template_sharding(tmp_path):
    mesh = mesh_lib.make_mesh()
    state = _state(mesh)
    ckpts = checkpoint.Checkpoints(str(tmp_path), checkpoint_steps=1, max_to_keep=2)
    extra = {"rng": np.array([7, 9], np.uint32), "best": np.float32(0.25), "domains": ("a", "b")}
    assert ckpts.save_latest(3, state, extra)
    ckpts.wait()
    template = _state(mesh, seed=1)  # other values, same structure and shardings
    restored, got_extra = ckpts.restore_latest(template)
    _assert_bit_identical(state, restored)
    assert got_extra == {"rng": [7, 9], "best": 0.25, "domains": ["a", "b"]}
    leaf = jax.tree.leaves(restored.params)[0]
    assert leaf.sharding == mesh_lib.replicated(mesh)
    ckpts.close()


def test_keeps_last_n_and_saves_every_checkpoint_steps(tmp_path):
    state = _state(mesh_lib.make_mesh())
    ckpts = checkpoint.Checkpoints(str(tmp_path), checkpoint_steps=2, max_to_keep=2)
    saved = [s for s in range(1, 8) if ckpts.save_latest(s, state)]
    assert saved == [2, 4, 6]
    assert ckpts.save_latest(7, state, force=True)  # e.g. the final step
    assert not ckpts.save_latest(7, state, force=True)  # already there
    ckpts.wait()
    assert ckpts.latest_step() == 7
    assert sorted(os.listdir(checkpoint.checkpoint_dir(str(tmp_path)))) == ["6", "7"]
    ckpts.close()


def test_the_manager_decides_interval_and_final_step_without_force(tmp_path):
    state = _state(mesh_lib.make_mesh())
    ckpts = checkpoint.Checkpoints(
        str(tmp_path), checkpoint_steps=3, max_to_keep=10, save_on_steps=(7,)
    )
    assert [s for s in range(1, 9) if ckpts.should_save(s)] == [3, 6, 7]
    assert [s for s in range(1, 9) if ckpts.save_latest(s, state)] == [3, 6, 7]
    assert not any(ckpts.reached_preemption(s) for s in range(1, 9))  # one process: never
    assert ckpts.save_latest(8, state, force=True)  # e.g. on SIGTERM
    assert not ckpts.save_latest(8, state, force=True)
    ckpts.wait()
    assert sorted(os.listdir(checkpoint.checkpoint_dir(str(tmp_path))), key=int) == [
        "3",
        "6",
        "7",
        "8",
    ]
    ckpts.close()


def test_save_is_safe_with_buffer_donation(tmp_path):
    mesh = mesh_lib.make_mesh()
    state = _state(mesh)
    want = jax.device_get(state)
    ckpts = checkpoint.Checkpoints(str(tmp_path), checkpoint_steps=1, max_to_keep=1)
    ckpts.save_latest(1, state)
    bump = jax.jit(lambda s: jax.tree.map(lambda x: x + 1, s), donate_argnums=0)
    bump(state)  # overwrites the donated buffers while the save may still be writing
    ckpts.wait()
    restored, _ = ckpts.restore_latest(_state(mesh, seed=2))
    _assert_bit_identical(want, jax.device_get(restored))
    ckpts.close()


def test_best_tracking_survives_reopening(tmp_path):
    mesh = mesh_lib.make_mesh()
    state = _state(mesh)
    ckpts = checkpoint.Checkpoints(str(tmp_path), checkpoint_steps=10, max_to_keep=1)
    assert ckpts.best_metric is None
    assert ckpts.save_best_if_better(1, state.params, 0.30)
    assert not ckpts.save_best_if_better(2, state.params, 0.30)  # equal is not better
    assert not ckpts.save_best_if_better(2, state.params, float("nan"))
    better = _state(mesh, seed=5).params
    assert ckpts.save_best_if_better(3, better, 0.42, extra={"epoch": 2})
    ckpts.close()
    reopened = checkpoint.Checkpoints(str(tmp_path), checkpoint_steps=10, max_to_keep=1)
    assert reopened.best_metric == pytest.approx(0.42) and reopened.best_step() == 3
    assert not reopened.save_best_if_better(4, state.params, 0.41)
    assert reopened.save_best_if_better(3, better, 0.43, extra={"epoch": 2})  # same step again
    reopened.close()
    params, info = checkpoint.restore_params(str(tmp_path), "best")
    assert info == {"epoch": 2, "step": 3, "metric": pytest.approx(0.43)}
    assert isinstance(params["heads"]["cars"]["kernel"], np.ndarray)
    _assert_bit_identical(jax.device_get(better), params)
    assert os.listdir(checkpoint.checkpoint_dir(str(tmp_path), "best")) == ["3"]


def test_restore_best_params_places_with_sharding_and_explains_missing(tmp_path):
    mesh = mesh_lib.make_mesh()
    state = _state(mesh)
    ckpts = checkpoint.Checkpoints(str(tmp_path), checkpoint_steps=1, max_to_keep=1)
    ckpts.save_best_if_better(5, state.params, 0.1)
    ckpts.close()
    params, _ = checkpoint.restore_params(str(tmp_path), "best", sharding=mesh_lib.replicated(mesh))
    assert params["backbone"]["w"].sharding == mesh_lib.replicated(mesh)
    with pytest.raises(FileNotFoundError, match="Train first"):
        checkpoint.restore_params(str(tmp_path / "nothing"), "best")


def test_interrupted_save_is_never_listed(tmp_path):
    """Orbax writes <step>.orbax-checkpoint-tmp-* and renames it only when complete."""
    state = _state(mesh_lib.make_mesh())
    ckpts = checkpoint.Checkpoints(str(tmp_path), checkpoint_steps=1, max_to_keep=3)
    ckpts.save_latest(1, state)
    ckpts.close()
    root = checkpoint.checkpoint_dir(str(tmp_path))
    # what a save killed before its final rename leaves behind
    shutil.copytree(os.path.join(root, "1"), os.path.join(root, "2.orbax-checkpoint-tmp"))
    reopened = checkpoint.Checkpoints(str(tmp_path), checkpoint_steps=1, max_to_keep=3)
    assert reopened.latest_step() == 1
    reopened.close()


_CHILD = """
import sys, numpy as np, jax
from universal_embedding import checkpoint
ckpts = checkpoint.Checkpoints(sys.argv[1], checkpoint_steps=1, max_to_keep=100)
for step in range(1, 1000):
    state = {"x": np.full((4, 1024, 1024), step, np.float32)}  # 16 MB per save
    print("saving", step, flush=True)
    ckpts.save_latest(step, state, {"step": step})
"""


def test_sigkill_during_saves_leaves_only_complete_checkpoints(tmp_path):
    import subprocess
    import sys

    env = {**os.environ, "XLA_FLAGS": "", "JAX_PLATFORMS": "cpu"}
    proc = subprocess.Popen(
        [sys.executable, "-c", _CHILD, str(tmp_path)], stdout=subprocess.PIPE, text=True, env=env
    )
    try:
        for line in proc.stdout:
            if line.strip() == "saving 4":  # saves 1-3 started, more in flight
                break
    finally:
        proc.kill()
        proc.wait()
    ckpts = checkpoint.Checkpoints(str(tmp_path), checkpoint_steps=1, max_to_keep=100)
    listed = [int(s) for s in os.listdir(checkpoint.checkpoint_dir(str(tmp_path))) if s.isdigit()]
    assert listed and ckpts.latest_step() == max(listed)
    template = {"x": jax.ShapeDtypeStruct((4, 1024, 1024), np.float32)}
    for step in listed:  # every listed step restores in full with its own values
        state, extra = ckpts.restore_latest(template, step=step)
        assert extra == {"step": step}
        assert float(np.asarray(state["x"]).min()) == float(np.asarray(state["x"]).max()) == step
    ckpts.close()


def test_best_params_linked_to_another_run_are_refused(tmp_path):
    """checkpoints/best/<step>/params as a symlink to another run's parameters."""
    mesh = mesh_lib.make_mesh()
    for run, seed in (("mine", 0), ("other", 5)):
        ckpts = checkpoint.Checkpoints(str(tmp_path / run), checkpoint_steps=1, max_to_keep=1)
        ckpts.save_best_if_better(3, _state(mesh, seed).params, 0.5)
        ckpts.close()
    mine = os.path.join(checkpoint.checkpoint_dir(str(tmp_path / "mine"), "best"), "3", "params")
    other = os.path.join(checkpoint.checkpoint_dir(str(tmp_path / "other"), "best"), "3", "params")
    shutil.rmtree(mine)
    os.symlink(other, mine)
    with pytest.raises(ValueError, match=r"3/params is a symlink leading outside the workdir"):
        checkpoint.restore_params(str(tmp_path / "mine"), "best")


def test_with_several_processes_one_series_saves_at_a_time(tmp_path, monkeypatch):
    """Two series saving the same step at once share orbax's commit barrier name
    ('_async_write_complete.<step>'): with several processes the other series' pending save is
    waited for before a save starts (seen as a hang of the two-process run at its last step)."""
    from universal_embedding.checkpoint import series

    waited = []
    fake = type("Manager", (), {"wait_until_finished": lambda self: waited.append(True)})()
    monkeypatch.setattr(series.jax, "process_count", lambda: 1)
    series.Checkpoints._one_save_in_flight(fake)
    assert waited == []
    monkeypatch.setattr(series.jax, "process_count", lambda: 2)
    series.Checkpoints._one_save_in_flight(fake)
    assert waited == [True]

    monkeypatch.undo()
    ckpts = checkpoint.Checkpoints(str(tmp_path), checkpoint_steps=1, max_to_keep=1)
    seen = []
    monkeypatch.setattr(series.Checkpoints, "_one_save_in_flight", staticmethod(seen.append))
    params = {"w": jnp.ones(3)}
    ckpts.save_best_if_better(1, params, 0.5)
    ckpts.save_latest(1, params, force=True)
    ckpts.close()
    assert seen == [ckpts._latest, ckpts._best]  # best waits for latest, latest for best
