"""Test setup: two CPU devices so sharded code paths run, TensorFlow kept off GPUs;
`@pytest.mark.slow` tests run only with UE_SLOW_TESTS=1."""

import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=2")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import jax  # noqa: E402  (after the environment above)
import numpy as np  # noqa: E402
import pytest  # noqa: E402

SLOW_TESTS = os.environ.get("UE_SLOW_TESTS") == "1"


def pytest_collection_modifyitems(config, items):
    """Skip the tests marked slow unless UE_SLOW_TESTS=1."""
    if SLOW_TESTS:
        return
    skip = pytest.mark.skip(reason="slow: set UE_SLOW_TESTS=1 to run")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


_CACHE_OPTIONS = (
    "jax_compilation_cache_dir",
    "jax_persistent_cache_min_compile_time_secs",
    "jax_persistent_cache_min_entry_size_bytes",
)


@pytest.fixture(scope="module")
def compilation_cache(tmp_path_factory):
    """A persistent XLA cache shared by the modules that use it: equal programs compile once
    (XLA:CPU compiles are the slow part of the trainer tests), launched processes included."""
    old = {k: getattr(jax.config, k) for k in _CACHE_OPTIONS}
    cache = str(tmp_path_factory.getbasetemp() / "jax_cache")
    jax.config.update("jax_compilation_cache_dir", cache)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    yield cache
    for k, v in old.items():
        jax.config.update(k, v)


@pytest.fixture(scope="module")
def reuse_random_init():
    """Initialise each tiny model once per module: init_params compiles (seconds on 2 cores)."""
    from universal_embedding.models import embedding_model

    original, cache = embedding_model.init_params, {}

    def cached(model, rng, image_size):
        key = (model, np.asarray(rng).tobytes(), image_size)
        if key not in cache:
            cache[key] = original(model, rng, image_size)
        return cache[key]

    patch = pytest.MonkeyPatch()
    patch.setattr(embedding_model, "init_params", cached)
    yield
    patch.undo()
