"""Test setup: two CPU devices so sharded code paths run, TensorFlow kept off GPUs;
`@pytest.mark.slow` tests run only with UE_SLOW_TESTS=1."""

import json
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


MINI_UNED_DOMAINS = ["cars", "sop"]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    """The synthetic mini-UnED of cars and sop (seed 0, scale 0.1) with its TFRecords, one per
    test module; a module defining its own `data_dir` uses that instead."""
    from universal_embedding.data import prepare, synthetic

    root = str(tmp_path_factory.mktemp("mini_uned"))
    synthetic.write_synthetic_uned(root, seed=0, scale=0.1, domains=MINI_UNED_DOMAINS)
    prepare.prepare(root, domains=MINI_UNED_DOMAINS)
    return root


@pytest.fixture(scope="module")
def reuse_random_init():
    """Initialise each tiny model once per module: init_params compiles (seconds on 2 cores)."""
    from universal_embedding.models import embedding_model

    original, cache = embedding_model.init_params, {}

    def cached(model, rng, image_size):
        if isinstance(rng, jax.core.Tracer):  # under eval_shape (loading.check_loaded): no cache
            return original(model, rng, image_size)
        key = (model, np.asarray(rng).tobytes(), image_size)
        if key not in cache:
            cache[key] = original(model, rng, image_size)
        return cache[key]

    patch = pytest.MonkeyPatch()
    patch.setattr(embedding_model, "init_params", cached)
    yield
    patch.undo()


def _assert_trees_equal(a, b) -> None:
    """The same leaves (by pytree path) in both trees, each array equal; a failure names it."""
    leaves = [
        {
            jax.tree_util.keystr(path): np.asarray(x)
            for path, x in jax.tree_util.tree_leaves_with_path(t)
        }
        for t in (a, b)
    ]
    assert sorted(leaves[0]) == sorted(leaves[1])
    for name, x in leaves[0].items():
        np.testing.assert_array_equal(x, leaves[1][name], err_msg=name)


@pytest.fixture(scope="session")
def assert_trees_equal():
    """Two parameter trees equal leaf by leaf (names and values; container types aside)."""
    return _assert_trees_equal


def _write_info_files(root, labels) -> None:
    """root/<domain>/<split>.json for each 'domain/split' of `labels`, one entry per class id
    (or class-id list) in order, image paths '<domain>/<i>.jpg'."""
    for key, classes in labels.items():
        domain, split = key.split("/")
        os.makedirs(os.path.join(root, domain), exist_ok=True)
        entries = [{"path": f"{domain}/{i}.jpg", "class_id": c} for i, c in enumerate(classes)]
        with open(os.path.join(root, domain, f"{split}.json"), "w") as f:
            json.dump(entries, f)


@pytest.fixture(scope="session")
def write_info_files():
    """Writes info files from {'domain/split': class ids}: write_info_files(root, labels)."""
    return _write_info_files


def _assert_load_fails_in_one_line(path, text: str, message: str) -> None:
    from universal_embedding.knn import descriptors

    path.write_text(text)
    with pytest.raises(ValueError, match=f"'{path}'.*{message}") as e:
        descriptors.load_descriptors(str(path))
    assert "\n" not in str(e.value)


@pytest.fixture(scope="session")
def assert_load_fails_in_one_line():
    """Writes `text` to `path`; loading it as descriptors must fail in one line naming the file
    and matching `message`: assert_load_fails_in_one_line(path, text, message)."""
    return _assert_load_fails_in_one_line
