"""Training workdirs of the original UnED code (flax msgpack `checkpoint_<step>` files holding
Scenic's train state, Scenic ViT / original CLIP-ViT parameter names) read by knn_main, the
model loader and training's init_ckpt, written here from random weights."""

from __future__ import annotations

import json
import os
from typing import Any

import jax
import numpy as np
import optax
import pytest
from flax import serialization, struct

from universal_embedding import (
    api,
    checkpoint,
    extract_dir_descriptors,
    knn_main,
    loading,
    settings,
    train_settings,
    writers,
)
from universal_embedding import main as train_main
from universal_embedding.configs import config_extract_dir_descriptors, config_knn_vit, tiny
from universal_embedding.knn import descriptors as knn_descriptors
from universal_embedding.models import embedding_model
from universal_embedding.original import checkpoint as ckpt
from universal_embedding.pretrained.common import flatten, unflatten
from universal_embedding.train import plan

pytestmark = pytest.mark.usefixtures("compilation_cache")

VIT, CLIP = "vit_with_embedding", "clip_vit_with_embedding"
# Every parameter name of the 1-layer models in the original code (Scenic's ViT; the
# original's CLIP-ViT, whose blocks are named 'resblocks.<i>'), heads of 2 domains.
ORIGINAL_NAMES = {
    VIT: ["cls", "embedding/bias", "embedding/kernel", "Transformer/posembed_input/pos_embedding",
          "Transformer/encoder_norm/bias", "Transformer/encoder_norm/scale"]
    + [f"Transformer/encoderblock_0/{m}/{p}" for m in ("LayerNorm_0", "LayerNorm_1")
       for p in ("bias", "scale")]
    + [f"Transformer/encoderblock_0/MultiHeadDotProductAttention_0/{m}/{p}"
       for m in ("query", "key", "value", "out") for p in ("bias", "kernel")]
    + [f"Transformer/encoderblock_0/MlpBlock_0/Dense_{i}/{p}" for i in (0, 1)
       for p in ("bias", "kernel")],
    CLIP: ["conv1/kernel", "class_embedding", "positional_embedding", "ln_pre/bias",
           "ln_pre/scale", "ln_post/bias", "ln_post/scale"]
    + [f"transformer/resblocks.0/{m}/{p}" for m in ("ln_1", "ln_2") for p in ("bias", "scale")]
    + [f"transformer/resblocks.0/attn/{m}/{p}" for m in ("query", "key", "value", "out")
       for p in ("bias", "kernel")]
    + [f"transformer/resblocks.0/mlp/{m}/{p}" for m in ("c_fc", "c_proj")
       for p in ("bias", "kernel")],
}  # fmt: skip
HEADNAMES = ["projection/bias", "projection/kernel", "output_projection_0/kernel",
             "output_projection_1/kernel"]  # fmt: skip
# Our name -> the original's, applied in order to '/'-joined names.
RENAMES = {
    VIT: [("backbone/", ""), ("MultiHeadDotProductAttention_1", "MultiHeadDotProductAttention_0"),
          ("LayerNorm_2", "LayerNorm_1"), ("MlpBlock_3", "MlpBlock_0")],
    CLIP: [("backbone/", ""), ("resblocks_", "resblocks.")],
}  # fmt: skip


@struct.dataclass
class ScenicTrainState:
    """The fields of scenic.train_lib.train_utils.TrainState, in its order (tx not saved)."""

    tx: Any = struct.field(default=None, pytree_node=False)
    opt_state: Any = None
    params: Any = struct.field(default_factory=dict)
    global_step: int = 0
    model_state: Any = struct.field(default_factory=dict)
    rng: Any = None
    metadata: Any = None


def to_original(params: dict, family: str, domains: list[str]) -> dict:
    """Our params tree (with heads) under the original's names."""
    out = {}
    for name, value in flatten(params).items():
        if name.startswith("heads/"):
            name = f"output_projection_{domains.index(name.split('/')[1])}/kernel"
        for old, new in RENAMES[family]:
            name = name.replace(old, new)
        out[name] = np.asarray(value)
    return unflatten(out)


def write_checkpoint(workdir: str, step: int, original_params: dict) -> str:
    """workdir/checkpoint_<step>: the Scenic train state as the original trainer saved it."""

    def mask(heads: bool) -> dict:
        return {
            k: jax.tree.map(lambda _, k=k: k.startswith("output_projection") == heads, v)
            for k, v in original_params.items()
        }

    # the original's optimiser: Adam(W) on the backbone, another on the classifiers
    tx = optax.chain(optax.masked(optax.adamw(1e-5), mask(False)),
                     optax.masked(optax.adamw(1e-3), mask(True)))  # fmt: skip
    state = ScenicTrainState(
        opt_state=tx.init(original_params),
        params=original_params,
        global_step=step if step >= 0 else 1234,
        rng=np.array([0, 42], np.uint32),
        metadata={"chrono": {"accum_train_time": 1.5, "accum_examples_seen": 64}},
    )
    os.makedirs(workdir, exist_ok=True)
    path = os.path.join(workdir, f"checkpoint_{step}")
    with open(path, "wb") as f:
        f.write(serialization.to_bytes(state))
    return path


def original_config(config, domains: list[str], classifier: str = "separate") -> dict:
    """config.json of the original trainer (after its computed model fields were filled in)."""
    m = config.model
    return {
        "model_class": config.model_class,
        "model_type": "S/16",
        "model": {"hidden_size": m.hidden_size, "num_heads": m.num_heads, "mlp_dim": m.mlp_dim,
                  "num_layers": m.num_layers, "patches": {"size": [m.patch_size] * 2},
                  "output_dim": m.output_dim, "classifier": "token",
                  "representation_size": None, "positional_embedding": "learned_1d"},
        "dataset_name": ",".join(domains),
        "classifier": classifier,
        "init_ckpt": "",
        "embedd_to_eval": "projected",
    }  # fmt: skip


def random_params(config, classes: dict[str, int], seed: int = 0) -> dict:
    model = embedding_model.build_model(settings.model_spec(config), classes)
    images = jax.ShapeDtypeStruct((1, config.image_size, config.image_size, 3), np.float32)
    shapes = jax.eval_shape(lambda x: model.init(jax.random.PRNGKey(0), x, head="*"), images)
    rng = np.random.default_rng(seed)
    return jax.tree.map(lambda s: rng.normal(size=s.shape).astype(np.float32), shapes["params"])


def write_original_workdir(workdir, config, params, domains, steps=(-1,), classifier="separate"):
    orig = to_original(params, config.model_class, domains)
    for step in steps:
        write_checkpoint(workdir, step, orig)
    with open(os.path.join(workdir, "config.json"), "w") as f:
        json.dump(original_config(config, domains, classifier), f, indent=4)
    return orig


def write_native_workdir(workdir: str, config, params) -> None:
    """The same weights as this project's training run would leave them (best checkpoint)."""
    writers.write_config_json(config.to_dict(), os.path.join(workdir, "config.json"))
    ckpts = checkpoint.Checkpoints(workdir, checkpoint_steps=1, max_to_keep=1, async_save=False)
    ckpts.save_best_if_better(5, params, 0.5)
    ckpts.close()


def tiny_model_config(family: str):
    c = tiny.tiny_vit(config_knn_vit.get_config())  # 32 px, patch 8, 16 wide, 1 layer, 8-d
    c.model_class = family
    return c


@pytest.mark.parametrize("family", [VIT, CLIP])
def test_written_names_are_the_originals(family, tmp_path):
    c = tiny_model_config(family)
    orig = write_original_workdir(str(tmp_path), c, random_params(c, {"cars": 3, "sop": 4}),
                                  ["cars", "sop"])  # fmt: skip
    assert sorted(flatten(orig)) == sorted(ORIGINAL_NAMES[family] + HEADNAMES)
    with open(tmp_path / "checkpoint_-1", "rb") as f:
        state = serialization.msgpack_restore(f.read())
    assert sorted(state) == ["global_step", "metadata", "model_state", "opt_state", "params", "rng"]


@pytest.mark.parametrize("family", [VIT, CLIP])
def test_knn_main_on_original_workdir_equals_native_weights(
    family, data_dir, tmp_path, assert_trees_equal
):
    c = tiny_model_config(family)
    params = random_params(c, {"cars": 3, "sop": 4}, seed=1)
    original_dir, native_dir = str(tmp_path / "original"), str(tmp_path / "native")
    write_original_workdir(original_dir, c, params, ["cars", "sop"])
    write_native_workdir(native_dir, c, params)
    out = {}
    for name, train_dir in (("original", original_dir), ("native", native_dir)):
        k = config_knn_vit.get_config()  # B/16, 224 px: the model comes from the workdir
        k.train_dir = train_dir
        k.info_files_dir = os.path.join(data_dir, "info_files")
        k.eval_dataset_dir = os.path.join(data_dir, "tfds")
        k.knn_eval_names, k.eval_knns, k.disabled_merged_knns = "cars", "test_knn", ""
        k.eval_batch_size = 8
        workdir = str(tmp_path / f"knn_{name}")
        knn_main.run_knn(k, workdir)
        out[name] = knn_descriptors.load_descriptors(os.path.join(workdir, "descriptors.npz"))
    assert list(out["original"]) == ["cars/test"] and out["original"]["cars/test"].shape[1] == 8
    np.testing.assert_allclose(out["original"]["cars/test"], out["native"]["cars/test"], atol=1e-5)
    embedders = [api.Embedder.from_workdir(d) for d in (original_dir, native_dir)]
    assert_trees_equal(embedders[0].params, embedders[1].params)
    assert embedders[0].spec.model_class == family and embedders[0].image_size == 32


def test_extract_dir_descriptors_on_original_workdir(data_dir, tmp_path):
    c = tiny_model_config(CLIP)
    params = random_params(c, {"cars": 3}, seed=2)
    write_original_workdir(str(tmp_path / "original"), c, params, ["cars"])
    write_native_workdir(str(tmp_path / "native"), c, params)
    out = []
    for name in ("original", "native"):
        e = config_extract_dir_descriptors.get_config()
        e.base_dir = os.path.join(data_dir, "images", "cars", "test")
        e.train_dir, e.eval_batch_size = str(tmp_path / name), 8
        out.append(extract_dir_descriptors.run_extract_dir(e, str(tmp_path / f"w_{name}")))
    assert out[0][1] == out[1][1] and len(out[0][1]) == out[0][0].shape[0] > 0
    np.testing.assert_allclose(out[0][0], out[1][0], atol=1e-5)


def _edit(orig: dict, family: str, edit: str) -> dict:
    flat = dict(flatten(orig))
    victim = ORIGINAL_NAMES[family][-1]
    if edit == "missing":
        del flat[victim]
    elif edit == "unexpected":
        flat["Transformer/extra_block/kernel"] = np.zeros((2, 2), np.float32)
    elif edit == "nonfinite":
        flat[victim] = np.array(flat[victim], np.float32)
        flat[victim].flat[[0, -1]] = [np.nan, np.inf]
    else:
        flat[victim] = np.zeros((3,) + flat[victim].shape, np.float32)
    return unflatten(flat)


@pytest.mark.parametrize("family", [VIT, CLIP])
@pytest.mark.parametrize("edit", ["missing", "unexpected", "misshaped", "nonfinite"])
def test_bad_tensor_is_named_in_one_line(family, edit, tmp_path):
    c = tiny_model_config(family)
    orig = write_original_workdir(str(tmp_path), c, random_params(c, {"cars": 3, "sop": 4}),
                                  ["cars", "sop"])  # fmt: skip
    write_checkpoint(str(tmp_path), -1, _edit(orig, family, edit))
    k = config_knn_vit.get_config()
    k.train_dir = str(tmp_path)
    with pytest.raises(ckpt.OriginalCheckpointError) as e:
        loading.load_model(*settings.model_and_weights(k))
    message = str(e.value)
    assert "\n" not in message and str(tmp_path / "checkpoint_-1") in message
    named = "Transformer/extra_block/kernel" if edit == "unexpected" else ORIGINAL_NAMES[family][-1]
    what = {"misshaped": "mis-shaped", "nonfinite": "2 non-finite value(s)"}.get(edit, edit)
    assert named in message and what in message


def test_best_is_checkpoint_minus_1_else_the_latest_step(tmp_path, assert_trees_equal):
    c = tiny_model_config(VIT)
    domains = ["cars"]
    by_step = {s: random_params(c, {"cars": 3}, seed=10 + s) for s in (-1, 10, 200)}
    workdir = str(tmp_path)
    for step, params in by_step.items():
        write_original_workdir(workdir, c, params, domains, steps=(step,))
    (tmp_path / "checkpoint_tmp").write_bytes(b"half written")
    k = config_knn_vit.get_config()
    k.train_dir = workdir

    def loaded(which):
        k.checkpoint = which
        return loading.load_model(*settings.model_and_weights(k)).params

    drop = loading.without_heads
    for which, step in (("best", -1), ("-1", -1), ("latest", 200), ("10", 10)):
        assert_trees_equal(loaded(which), drop(by_step[step]))
    with pytest.raises(FileNotFoundError, match=r"checkpoint_5 .*\[-1, 10, 200\]"):
        loaded("5")
    os.remove(tmp_path / "checkpoint_-1")
    assert_trees_equal(loaded("best"), drop(by_step[200]))
    k.train_dir = str(tmp_path / "checkpoint_10")
    with pytest.raises(FileNotFoundError, match="give the workdir holding it"):
        loaded("best")


def test_untrusted_files_are_refused_in_one_line(tmp_path, monkeypatch):
    (tmp_path / "checkpoint_-1").write_bytes(b"\x93NUMPY not msgpack at all \xc1\xc1")
    with pytest.raises(ckpt.OriginalCheckpointError, match="not a flax msgpack checkpoint"):
        ckpt.read_params(str(tmp_path / "checkpoint_-1"))
    (tmp_path / "checkpoint_-1").write_bytes(serialization.msgpack_serialize({"x": 1}))
    with pytest.raises(ckpt.OriginalCheckpointError, match="holds no parameters"):
        ckpt.read_params(str(tmp_path / "checkpoint_-1"))
    monkeypatch.setenv("UE_MAX_CHECKPOINT_GB", "1e-9")
    with pytest.raises(ckpt.OriginalCheckpointError, match="UE_MAX_CHECKPOINT_GB"):
        ckpt.read_params(str(tmp_path / "checkpoint_-1"))


def test_config_json_as_a_json_string_or_none_at_all(tmp_path, assert_trees_equal):
    """Older original versions wrote config.json as a JSON string holding the JSON text;
    without config.json the model is read off the checkpoint's shapes."""
    c = tiny_model_config(CLIP)
    params = random_params(c, {"cars": 3})
    write_original_workdir(str(tmp_path), c, params, ["cars"])
    text = json.dumps(original_config(c, ["cars"]))
    (tmp_path / "config.json").write_text(json.dumps(text))
    k = config_knn_vit.get_config()
    k.train_dir = str(tmp_path)
    assert settings.model_and_weights(k)[0].model_class == CLIP
    assert loading.load_model(*settings.model_and_weights(k)).spec.hidden_size == 16
    os.remove(tmp_path / "config.json")
    loaded = loading.load_model(*settings.model_and_weights(k))
    sizes = ("hidden_size", "num_heads", "mlp_dim", "num_layers", "patch_size", "output_dim")
    assert {f: getattr(loaded.spec, f) for f in sizes} == {f: c.model[f] for f in sizes}
    assert (loaded.spec.model_class, loaded.spec.image_size) == (CLIP, 32)
    assert_trees_equal(loaded.params, loading.without_heads(params))


def train_config(data_dir: str, **overrides):
    c = tiny.get_config(f"data_dir={data_dir}")  # 16 px, patch 4, joint head; 3 frozen steps
    for key, value in overrides.items():
        c[key] = value
    return c


@pytest.mark.parametrize("classifier", ["separate", "joint"])
def test_init_ckpt_gives_every_tensor_heads_included(
    data_dir, tmp_path, classifier, monkeypatch, assert_trees_equal
):
    def shaped_init(model, rng, image_size):  # the random start is replaced: skip compiling it
        images = jax.ShapeDtypeStruct((1, image_size, image_size, 3), np.float32)
        shapes = jax.eval_shape(lambda x: model.init(rng, x, head="*"), images)["params"]
        return jax.tree.map(lambda s: np.zeros(s.shape, s.dtype), shapes)

    monkeypatch.setattr(embedding_model, "init_params", shaped_init)
    c = train_config(data_dir, classifier=classifier)
    heads = plan.make_plan(train_settings.plan_settings(c)).classes_per_head
    params = random_params(c, heads, seed=3)
    # the original run listed the domains the other way round: heads are matched by name
    domains = ["sop", "cars"] if classifier == "separate" else ["joint"]
    write_original_workdir(str(tmp_path), c, params, domains, steps=(-1, 40), classifier=classifier)
    write_native_workdir(str(tmp_path / "native"), c, params)
    model = embedding_model.build_model(settings.model_spec(c), heads)
    for init in (str(tmp_path), str(tmp_path / "checkpoint_40"), str(tmp_path / "native")):
        c.init_ckpt = init
        assert_trees_equal(
            loading.initial_params(settings.model_spec(c), model, settings.weight_source(c)), params
        )
    c.classifier = "joint" if classifier == "separate" else "separate"
    other = embedding_model.build_model(
        settings.model_spec(c), plan.make_plan(train_settings.plan_settings(c)).classes_per_head
    )
    c.init_ckpt = str(tmp_path)
    with pytest.raises(ckpt.OriginalCheckpointError, match="output_projection_"):
        loading.initial_params(settings.model_spec(c), other, settings.weight_source(c))
    c.init_ckpt = str(tmp_path / "native")
    with pytest.raises(ckpt.OriginalCheckpointError, match=r"heads/.* vs model"):
        loading.initial_params(settings.model_spec(c), other, settings.weight_source(c))


def test_training_starts_from_init_ckpt(data_dir, tmp_path, assert_trees_equal):
    c = train_config(data_dir, num_training_steps=1)
    params = random_params(
        c, plan.make_plan(train_settings.plan_settings(c)).classes_per_head, seed=4
    )
    write_original_workdir(str(tmp_path / "orig"), c, params, ["joint"], classifier="joint")
    c.init_ckpt = str(tmp_path / "orig" / "checkpoint_-1")
    train_main.main(c, str(tmp_path / "run"))
    after, _ = checkpoint.restore_params(str(tmp_path / "run"), "latest")
    assert_trees_equal(loading.without_heads(after), loading.without_heads(params))  # frozen
    step = np.abs(after["heads"]["joint"]["kernel"] - params["heads"]["joint"]["kernel"])
    assert 0 < step.max() <= 0.011  # one Adam step of lr 1e-2 away from the loaded head
