"""A trained tiny model used outside the trainer: Python API, SavedModel export, saved index.

Trains configs/tiny.py on synthetic cars for 2 steps with the final test saving descriptors,
then checks every consumer reproduces those descriptors (max abs difference <= 1e-4).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from PIL import Image

from universal_embedding import Embedder, export, index
from universal_embedding import main as train_main
from universal_embedding.configs import tiny
from universal_embedding.data import info_files
from universal_embedding.knn import descriptors as knn_descriptors
from universal_embedding.knn import saved_index

pytestmark = pytest.mark.usefixtures("compilation_cache")
TOL = 1e-4


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """(data_dir, workdir, final-test descriptors of cars/test, their image paths)."""
    from universal_embedding.data import prepare, synthetic

    root = str(tmp_path_factory.mktemp("uned"))
    synthetic.write_synthetic_uned(root, seed=0, scale=0.1, domains=["cars"])
    prepare.prepare(root, domains=["cars"])
    c = tiny.get_config(f"data_dir={root}")
    c.dataset_name = c.knn_eval_names = "cars"
    c.num_training_steps, c.checkpoint_steps = 2, 2
    c.do_final_testing, c.save_descriptors = True, True
    workdir = str(tmp_path_factory.mktemp("train"))
    train_main.main(c, workdir)
    descr = knn_descriptors.load_descriptors(os.path.join(workdir, "descriptors.npz"))
    paths = info_files.load_split(c.info_files_dir, "cars", "test").paths
    files = [os.path.join(root, "images", p) for p in paths]
    return root, workdir, descr["cars/test"], files


@pytest.fixture(scope="module")
def embedder(trained):
    return Embedder.from_workdir(trained[1])


def test_embedder_reproduces_final_test_descriptors(trained, embedder):
    _, _, expected, files = trained
    assert expected.shape == (len(files), 8)
    got = embedder.embed(files, batch_size=8)
    assert got.dtype == np.float32 and got.shape == expected.shape
    np.testing.assert_allclose(got, expected, atol=TOL, rtol=0)


def test_pil_images_and_arrays_embed_like_their_files(trained, embedder):
    """Pixels decoded as the evaluation decodes files (TensorFlow) give the files' descriptors;
    PIL images and RGBA arrays of those pixels too (alpha dropped)."""
    import tensorflow as tf

    _, _, expected, files = trained
    arrays = [
        tf.io.decode_image(open(f, "rb").read(), channels=3, expand_animations=False).numpy()
        for f in files[:3]
    ]
    pil = [Image.fromarray(a) for a in arrays]
    rgba = [np.concatenate([a, np.full(a.shape[:2] + (1,), 7, np.uint8)], 2) for a in arrays]
    for images in (arrays, pil, rgba):
        np.testing.assert_allclose(embedder.embed(images), expected[:3], atol=TOL, rtol=0)
    gray = np.asarray(pil[0].convert("L"))
    np.testing.assert_allclose(
        embedder.embed(gray), embedder.embed(Image.fromarray(gray).convert("RGB")), atol=1e-6
    )


def test_bad_image_array_names_the_problem(embedder):
    with pytest.raises(ValueError, match="uint8"):
        embedder.embed(np.zeros((8, 8, 3), np.float32))


# TensorFlow alone: JAX, flax and the project cannot be imported at all (TF Lite imports jax
# when it is installed, so it is blocked rather than merely not imported).
_TF_ONLY = """
import importlib.abc, json, sys

class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("jax", "jaxlib", "flax", "universal_embedding"):
            raise ImportError("blocked: " + name)

sys.meta_path.insert(0, Block())
import numpy as np
import tensorflow as tf
model = tf.saved_model.load(sys.argv[1])
files = json.loads(sys.argv[2])
data = [open(f, "rb").read() for f in files]
out = model.signatures["serving_default"](image_bytes=tf.constant(data))["embeddings"]
np.save(sys.argv[3], out.numpy())
bad = sorted(m for m in sys.modules if m.split(".")[0] in ("jax", "flax", "universal_embedding"))
print(json.dumps(bad))
"""


@pytest.fixture(scope="module")
def exported(trained, embedder, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("export"))
    return out, export.export(embedder, out)


def test_saved_model_in_a_tensorflow_only_process(trained, exported, tmp_path):
    _, _, expected, files = trained
    out, paths = exported
    result = str(tmp_path / "emb.npy")
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    env.pop("PYTHONPATH", None)  # the project is not importable there
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(_TF_ONLY), paths["saved_model"],
         json.dumps(files), result],
        capture_output=True, text=True, cwd=str(tmp_path), env=env, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == []
    got = np.load(result)
    assert got.dtype == np.float32 and got.shape == expected.shape
    np.testing.assert_allclose(got, expected, atol=TOL, rtol=0)


def test_exported_params_load_with_from_pretrained(trained, exported, embedder):
    _, _, expected, files = trained
    out, paths = exported
    with open(os.path.join(out, "config.json")) as f:
        config = json.load(f)
    assert config["embedd_to_eval"] == "projected" and config["model"]["output_dim"] == 8
    again = Embedder.from_pretrained(paths["params"])
    assert again.image_size == embedder.image_size and again.dim == 8
    np.testing.assert_allclose(again.embed(files[:4]), expected[:4], atol=TOL, rtol=0)


def test_index_of_final_descriptors_finds_each_image_first(trained, embedder, tmp_path):
    root, workdir, expected, files = trained
    out = str(tmp_path / "index")
    meta = index.build_from_file(
        os.path.join(workdir, "descriptors.npz"),
        out,
        key="cars/test",
        info_files_dir=os.path.join(root, "info_files"),
        images_dir=os.path.join(root, "images"),
    )
    assert meta["count"] == len(files) and meta["dim"] == 8 and meta["kind"] == "flat"
    rel = [os.path.relpath(f, os.path.join(root, "images")) for f in files]
    top = saved_index.SavedIndex(out).search(expected, 1)
    assert [hits[0][0] for hits in top] == rel
    np.testing.assert_allclose([hits[0][1] for hits in top], 1.0, atol=1e-5)

    results = index.query(out, embedder, files[:3], k=2)
    assert [r["query"] for r in results] == files[:3]
    assert [r["neighbours"][0]["path"] for r in results] == rel[:3]
    html = index.write_html(str(tmp_path / "q.html"), results, os.path.join(root, "images"))
    assert open(html).read().count('<img src="data:image/jpeg') == 3 * 3


# numpy, Pillow, onnxruntime (+ what it needs) and simplejpeg alone: `python -S` with a
# PYTHONPATH of links to those distributions only, so TensorFlow and JAX are not installed there.
SERVE_DISTRIBUTIONS = ("numpy", "pillow", "onnxruntime", "flatbuffers", "protobuf", "packaging",
                       "simplejpeg")  # fmt: skip
_SERVE_ONLY = """
import importlib.util, json, sys
import numpy as np
absent = [m for m in ("tensorflow", "jax", "flax", "universal_embedding")
          if importlib.util.find_spec(m) is not None]
sys.path.insert(0, sys.argv[1])
import embed_onnx
files = json.loads(sys.argv[2])
np.save(sys.argv[3], embed_onnx.embed(files, batch_size=5))
print(json.dumps(absent))
"""


def _serve_only_path(root) -> str:
    """A folder of links to the top-level entries of SERVE_DISTRIBUTIONS (nothing else)."""
    import importlib.metadata

    os.makedirs(root)
    for name in SERVE_DISTRIBUTIONS:
        dist = importlib.metadata.distribution(name)
        for top in {str(f).split("/")[0] for f in dist.files if not str(f).startswith("..")}:
            target = os.path.join(root, top)
            if not os.path.exists(target) and top not in ("bin", "__pycache__"):
                os.symlink(str(dist.locate_file(top)), target)
    return str(root)


@pytest.fixture(scope="module")
def onnx_export(trained, tmp_path_factory):
    """The command line `export --format=onnx` on the trained workdir: (out dir, its output)."""
    out = str(tmp_path_factory.mktemp("onnx"))
    proc = subprocess.run(
        [sys.executable, "-m", "universal_embedding.export", f"--workdir={trained[1]}",
         f"--out={out}", "--format=onnx"],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out, proc.stdout


def test_onnx_export_embeds_without_tensorflow_or_jax(trained, embedder, onnx_export, tmp_path):
    root, _, expected, files = trained
    out, stdout = onnx_export
    assert sorted(os.listdir(out)) == ["embed_onnx.py", "model.onnx"]
    assert os.path.join(out, "model.onnx") in stdout
    pngs = [str(tmp_path / f"{i}.png") for i in range(3)]  # PNG copies of three JPEGs
    for src, dst in zip(files, pngs, strict=False):
        Image.open(src).convert("RGB").save(dst)
    files_all = files + pngs
    reference = np.concatenate([expected, embedder.embed(pngs)])
    env = {"PYTHONPATH": _serve_only_path(tmp_path / "site"), "PATH": os.environ["PATH"]}
    result = str(tmp_path / "emb.npy")
    proc = subprocess.run(
        [sys.executable, "-S", "-c", textwrap.dedent(_SERVE_ONLY), out, json.dumps(files_all),
         result],
        capture_output=True, text=True, cwd=str(tmp_path), env=env, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == []  # none of them importable
    is_png = np.array([open(f, "rb").read(4) == b"\x89PNG" for f in files_all])
    assert is_png.sum() >= 3 and (~is_png).sum() >= 10
    got = np.load(result)
    assert got.dtype == np.float32 and got.shape == reference.shape
    np.testing.assert_allclose(got, reference, atol=TOL, rtol=0)  # JPEGs too: TF's pixels
