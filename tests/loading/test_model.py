"""loading/: a model plus its weights from a training workdir (best / latest / step N)."""

from __future__ import annotations

import os

import numpy as np
import pytest

from universal_embedding import loading, settings, writers
from universal_embedding.configs import config_knn_vit, tiny
from universal_embedding.distributed import mesh as mesh_lib


def test_train_dir_checkpoints_restore_saved_params(tmp_path):
    """best / latest / step N give the saved params (heads dropped), model from T/config.json."""
    import jax
    import optax

    from universal_embedding import checkpoint
    from universal_embedding.models import embedding_model
    from universal_embedding.train import steps

    train_config = tiny.tiny_vit(config_knn_vit.get_config())
    train_config.model.output_dim = 4
    train_dir = str(tmp_path / "train")
    writers.write_config_json(train_config.to_dict(), os.path.join(train_dir, "config.json"))
    model = embedding_model.build_model(settings.model_spec(train_config), {"cars": 3})
    images = np.zeros((1, 32, 32, 3), np.float32)
    shapes = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), images, head="*"))["params"]
    rng = np.random.default_rng(0)  # random values without compiling an init
    best = jax.tree.map(lambda s: rng.normal(size=s.shape).astype(s.dtype), shapes)
    latest = jax.tree.map(lambda x: x + 1.0, best)
    ckpts = checkpoint.Checkpoints(train_dir, checkpoint_steps=1, max_to_keep=2, async_save=False)
    ckpts.save_best_if_better(5, best, 0.5)
    state = steps.create_train_state(latest, optax.adam(1e-3), mesh_lib.make_mesh())
    ckpts.save_latest(7, state, force=True)
    ckpts.close()

    config = config_knn_vit.get_config()  # B/16, 64-d: the model must come from T/config.json
    config.train_dir = train_dir
    for which, saved in (("best", best), ("latest", latest), ("7", latest)):
        config.checkpoint = which
        loaded = loading.load_model(*settings.model_and_weights(config))
        restored_model, params, mconfig = loaded.model, loaded.params, loaded.spec
        sizes = (mconfig.output_dim, mconfig.image_size, mconfig.num_layers)
        assert sizes == (4, 32, 1)
        assert set(params) == {"backbone", "projection"}
        expected = {k: v for k, v in saved.items() if k != "heads"}
        jax.tree.map(np.testing.assert_array_equal, params, jax.device_get(expected))
    out = jax.eval_shape(lambda: restored_model.apply({"params": params}, images))
    assert out["projected"].shape == (1, 4)
    config.checkpoint = "12"
    with pytest.raises(FileNotFoundError, match=r"step 12 .*available: \[7\]"):
        loading.load_model(*settings.model_and_weights(config))
