"""A tiny SigLIP tower (configs/tiny.py:backbone=siglip) trained on the synthetic mini-UnED, then
used everywhere a backbone is: merged mMP@5 against its untrained start, the Python API, the
SavedModel export, the saved index, and a big_vision `.npz` of its weights read back through
`Embedder.from_pretrained` and knn_main's off-the-shelf config (config_knn_siglip.py)."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from tests.command_lines import MERGED, run_train_then_knn, two_step_train_flags
from universal_embedding import Embedder, checkpoint, demo, export, index, knn_main
from universal_embedding import main as train_main
from universal_embedding.configs import config_knn_siglip, tiny
from universal_embedding.data import info_files
from universal_embedding.knn import descriptors as knn_descriptors
from universal_embedding.pretrained.common import flatten

pytestmark = pytest.mark.usefixtures("compilation_cache")
TOL = 1e-4
STEPS = 40


@pytest.fixture(scope="module")
def trained(data_dir, tmp_path_factory):
    """(config, workdir, untrained results, trained results) of 40 steps on cars + sop."""
    c = tiny.get_config(f"data_dir={data_dir},backbone=siglip")
    c.num_training_steps, c.checkpoint_steps, c.log_summary_steps = STEPS, STEPS, 10
    c.frozen_epochs = 0.0
    c.do_final_testing, c.save_descriptors = True, True
    root = tmp_path_factory.mktemp("siglip_runs")
    untrained = demo.evaluate_untrained(c, str(root / "untrained"))
    workdir = str(root / "trained")
    train_main.main(c, workdir)
    with open(os.path.join(workdir, "results.json")) as f:
        return c, workdir, untrained, json.load(f)


def test_tiny_siglip_improves_merged_mmp5_over_its_untrained_start(trained):
    c, workdir, untrained, results = trained
    with open(os.path.join(workdir, "config.json")) as f:
        assert json.load(f)["model_class"] == "siglip_vit_with_embedding"
    assert results[MERGED] >= untrained[MERGED] + 0.1, (untrained[MERGED], results[MERGED])


def _cars_test(c):
    paths = info_files.load_split(c.info_files_dir, "cars", "test").paths
    return [os.path.join(os.path.dirname(c.info_files_dir), "images", p) for p in paths]


def test_embedder_export_and_index_reproduce_the_final_test(trained, tmp_path):
    import tensorflow as tf

    c, workdir, _, _ = trained
    expected = knn_descriptors.load_descriptors(os.path.join(workdir, "descriptors.npz"))
    expected = expected["cars/test"]
    files = _cars_test(c)
    embedder = Embedder.from_workdir(workdir)
    assert embedder.normalization == "imagenet"  # mean = std = 0.5, as SigLIP's
    np.testing.assert_allclose(embedder.embed(files, batch_size=8), expected, atol=TOL, rtol=0)

    paths = export.export(embedder, str(tmp_path / "export"))
    again = Embedder.from_pretrained(paths["params"])
    np.testing.assert_allclose(again.embed(files[:4]), expected[:4], atol=TOL, rtol=0)
    served = tf.saved_model.load(paths["saved_model"]).signatures["serving_default"]
    data = tf.constant([open(f, "rb").read() for f in files[:4]])
    got = served(image_bytes=data)["embeddings"].numpy()
    np.testing.assert_allclose(got, expected[:4], atol=TOL, rtol=0)

    out = str(tmp_path / "index")
    index.build_from_file(
        os.path.join(workdir, "descriptors.npz"),
        out,
        key="cars/test",
        info_files_dir=c.info_files_dir,
    )
    results = index.query(out, embedder, files[:3], k=1)
    images = os.path.join(os.path.dirname(c.info_files_dir), "images")
    assert [r["neighbours"][0]["path"] for r in results] == [
        os.path.relpath(f, images) for f in files[:3]
    ]


# our block names -> big_vision's (the released files' layout, blocks stacked by layer)
_BIG_VISION_NAMES = {
    "LayerNorm_2": "LayerNorm_1",
    "MultiHeadDotProductAttention_1": "MultiHeadDotProductAttention_0",
    "MlpBlock_3": "MlpBlock_0",
}


def as_big_vision_npz(backbone: dict, path: str) -> None:
    """A trained backbone written as a big_vision SigLIP file (params/img/..., scanned blocks)."""
    flat = flatten(backbone)
    out, blocks = {}, {}
    for name, value in flat.items():
        parts = name.split("/")
        if name.startswith("Transformer/encoderblock_"):
            layer = int(parts[1].removeprefix("encoderblock_"))
            rest = "/".join([_BIG_VISION_NAMES.get(parts[2], parts[2]), *parts[3:]])
            blocks.setdefault(rest, {})[layer] = np.asarray(value)
        else:
            out[f"params/img/{name}"] = np.asarray(value)
    for rest, layers in blocks.items():
        stacked = np.stack([layers[i] for i in range(len(layers))])
        out[f"params/img/Transformer/encoderblock/{rest}"] = stacked
    out["params/txt/Embed_0/embedding"] = np.zeros((10, 4), np.float32)
    out["params/t"], out["params/b"] = np.zeros(1, np.float32), np.zeros(1, np.float32)
    np.savez(path, **out)


def test_a_big_vision_file_off_the_shelf(trained, tmp_path):
    """The trained backbone as a big_vision .npz: from_pretrained and knn_main's off-the-shelf
    config give the trained model's backbone_out."""
    c, workdir, _, _ = trained
    params, _ = checkpoint.restore_params(workdir, "best")
    npz = str(tmp_path / "siglip2_tiny.npz")
    as_big_vision_npz(params["backbone"], npz)
    files = _cars_test(c)
    sizes = {k: c.model[k] for k in ("hidden_size", "num_heads", "mlp_dim", "num_layers")}
    pretrained = Embedder.from_pretrained(
        npz,
        "siglip_vit_with_embedding",
        "Ti/16",
        image_size=c.image_size,
        patch_size=c.model.patch_size,
        **sizes,
    )
    want = Embedder.from_workdir(workdir, embedd_to_eval="backbone_out").embed(files)
    assert pretrained.embedding == "backbone_out" and want.shape == (len(files), 16)
    np.testing.assert_allclose(pretrained.embed(files), want, atol=TOL, rtol=0)

    k = config_knn_siglip.get_config(f"res={c.image_size}")
    k.model_type = "Ti/16"
    for key, value in {**sizes, "patch_size": c.model.patch_size}.items():
        k.model[key] = value
    k.pretrained_ckpt, k.embedd_to_eval = npz, "backbone_out"
    k.knn_eval_names, k.eval_dataset_dir, k.info_files_dir = (
        "cars",
        c.eval_dataset_dir,
        c.info_files_dir,
    )
    k.eval_batch_size = 16
    knn_main.run_knn(k, str(tmp_path / "knn"))
    descr = knn_descriptors.load_descriptors(str(tmp_path / "knn" / "descriptors.npz"))
    np.testing.assert_allclose(descr["cars/test"], want, atol=TOL, rtol=0)


@pytest.mark.slow  # a B/16 train step and evaluation compiled on CPU: minutes
def test_siglip_b16_at_224_two_steps_through_the_command_lines(data_dir, tmp_path):
    """A random SigLIP B/16 written as a released big_vision file, trained 2 steps at 224 px by
    `main` with config_train_siglip.py, then evaluated by `knn_main` (config_knn_siglip.py)."""
    import jax

    from universal_embedding import settings
    from universal_embedding.configs import config_train_siglip
    from universal_embedding.models import embedding_model as em

    spec = settings.model_spec(config_train_siglip.get_config("variant=B/16,res=224"))
    model = em.build_model(spec, None)
    shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), np.zeros((1, 224, 224, 3))))
    rng = np.random.default_rng(0)
    backbone = jax.tree_util.tree_map(
        lambda s: rng.normal(0, 0.02, s.shape).astype(np.float32), shapes["params"]["backbone"]
    )
    npz = str(tmp_path / "siglip2_b16_224.npz")
    as_big_vision_npz(backbone, npz)
    train = two_step_train_flags(
        "universal_embedding/configs/config_train_siglip.py:variant=B/16,res=224",
        str(tmp_path / "train"),
        npz,
    )
    knn_config = "universal_embedding/configs/config_knn_siglip.py:variant=B/16,res=224"
    run_train_then_knn(train, knn_config, tmp_path, data_dir)
