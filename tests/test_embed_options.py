"""Embedder.embed(..., batch_size=, progress=, device=): the same vectors whatever the batch
size and device, a tqdm bar on long inputs (or on request), one-line errors for bad choices."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from universal_embedding import api, loading
from universal_embedding.models import embedding_model

pytestmark = pytest.mark.usefixtures("reuse_random_init")


@pytest.fixture(scope="module")
def embedder():
    """A random 1-layer, 16-wide ViT on 16x16 inputs (8-d projection)."""
    spec = api._spec(
        model_type="Ti/16",
        image_size=16,
        model={"hidden_size": 16, "num_heads": 2, "mlp_dim": 32, "num_layers": 1,
               "patch_size": 4, "output_dim": 8},
    )  # fmt: skip
    model = embedding_model.build_model(spec, None)
    params = loading.without_heads(embedding_model.init_params(model, jax.random.PRNGKey(0), 16))
    loaded = loading.LoadedModel(model, params, spec, loading.normalization_of(spec))
    return api.Embedder(loaded, "projected")


@pytest.fixture(scope="module")
def images():
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, (20 + i, 24, 3), dtype=np.uint8) for i in range(7)]


def test_batch_size_and_device_leave_the_vectors_unchanged(embedder, images):
    expected = embedder.embed(images)  # every device (2 CPU devices in the tests)
    assert expected.shape == (7, 8)
    np.testing.assert_allclose(np.linalg.norm(expected, axis=1), 1.0, atol=1e-5)
    for kwargs in ({"batch_size": 3}, {"device": "cpu:1"}, {"device": jax.devices()[0]},
                   {"device": "cpu", "batch_size": 1}):  # fmt: skip
        np.testing.assert_allclose(embedder.embed(images, **kwargs), expected, atol=1e-5)


def test_devices_of_names_platforms_and_indexes():
    cpus = jax.local_devices(backend="cpu")
    assert api.devices_of(None) is None
    assert api.devices_of("cpu") == cpus and api.devices_of("CPU:1") == [cpus[1]]
    assert api.devices_of(cpus[0]) == [cpus[0]] and api.devices_of(cpus) == cpus
    with pytest.raises(ValueError, match=r"device='tpu': JAX has no tpu device here"):
        api.devices_of("tpu")
    with pytest.raises(ValueError, match=r"device='cpu:7': there are 2 cpu devices"):
        api.devices_of("cpu:7")


def test_progress_bar_on_request_and_on_long_inputs_only(embedder, images, capsys, monkeypatch):
    embedder.embed(images, batch_size=4, progress=True)
    err = capsys.readouterr().err
    assert "embed: 100%" in err and "7/7" in err
    embedder.embed(images)  # short input, progress=None: no bar
    assert capsys.readouterr().err == ""
    monkeypatch.setattr(api, "PROGRESS_FROM", 5)  # "long" from 5 images on
    embedder.embed(images)
    assert "7/7" in capsys.readouterr().err
    embedder.embed(images, progress=False)
    assert capsys.readouterr().err == ""


def test_a_batch_size_below_one_is_refused(embedder, images):
    with pytest.raises(ValueError, match="batch_size must be >= 1, got 0"):
        embedder.embed(images, batch_size=0)
