"""extract_dir_descriptors on a folder with a broken image, with a tiny random model."""

import json
import os
import shutil

import numpy as np
import pytest
from PIL import Image

from universal_embedding import extract_dir_descriptors, loading, settings
from universal_embedding.configs import config_extract_dir_descriptors, tiny
from universal_embedding.data import input_pipeline
from universal_embedding.knn import descriptors as knn_descriptors

pytestmark = pytest.mark.usefixtures("reuse_random_init")

GOOD = ["a.jpg", "sub/b.png", "sub/deeper/c_gray.png", "z.jpeg"]


def _config(base_dir, **overrides):
    c = tiny.tiny_vit(config_extract_dir_descriptors.get_config())
    c.eval_batch_size = 4
    c.allow_random_init = True
    c.base_dir = str(base_dir)
    for key, value in overrides.items():
        c[key] = value
    return c


@pytest.fixture(scope="module")
def image_dir(tmp_path_factory):
    base = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    for i, rel in enumerate(GOOD):
        os.makedirs(os.path.dirname(base / rel), exist_ok=True)
        pixels = rng.integers(0, 256, (20 + 10 * i, 40 - 5 * i, 3), dtype=np.uint8)
        im = Image.fromarray(pixels)
        (im.convert("L") if "gray" in rel else im).save(base / rel)
    (base / "sub" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not a JPEG")
    return base


def _alone(config, base_dir, rels):
    """Descriptors of images embedded one per batch (one real row, the rest padding)."""
    loaded = loading.load_model(*settings.model_and_weights(config))
    model, params, _ = loaded.model, loaded.params, loaded.spec
    embed_fn = loading.make_embedder(model, params, config.embedd_to_eval)
    out = []
    for rel in rels:
        batches = input_pipeline.folder_batches(
            str(base_dir), [rel], batch_size=4, image_size=32, normalization="imagenet"
        )
        out.append(knn_descriptors.extract(embed_fn, batches, 1)[0])
    return np.stack(out)


@pytest.mark.parametrize("embedding, dim", [("projected", 8), ("backbone_out", 16)])
def test_broken_image_listed_and_rows_match_single_images(image_dir, tmp_path, embedding, dim):
    config = _config(image_dir, embedd_to_eval=embedding)
    workdir = tmp_path / "w"
    descriptors, paths = extract_dir_descriptors.run_extract_dir(config, str(workdir))
    assert paths == GOOD
    saved = np.load(workdir / "descriptors.npz")
    assert set(saved.files) == {"descriptors", "paths"}
    assert saved["paths"].tolist() == GOOD
    assert saved["descriptors"].shape == (4, dim) and saved["descriptors"].dtype == np.float32
    np.testing.assert_array_equal(saved["descriptors"], descriptors)
    np.testing.assert_allclose(np.linalg.norm(descriptors, axis=1), 1.0, atol=1e-5)
    unreadable = (workdir / "unreadable.txt").read_text().splitlines()
    assert [json.loads(line)["path"] for line in unreadable] == ["sub/broken.jpg"]
    alone = _alone(config, image_dir, [GOOD[0], GOOD[2]])  # a colour JPEG, the grayscale PNG
    np.testing.assert_allclose(descriptors[[0, 2]], alone, atol=1e-5)
    assert not np.allclose(descriptors[0], descriptors[1], atol=1e-3)


def test_original_format_writes_the_originals_json_with_the_npz_numbers(image_dir, tmp_path):
    """--config.descriptor_format=original: W/descriptors.json as the original wrote it
    (json.dumps of {"descriptors": n x d lists, "paths": [base_dir/...]}), nothing else; its
    numbers are the npz run's, bit for bit."""
    base = tmp_path / "images"
    os.makedirs(base / "sub")
    shutil.copy(image_dir / GOOD[0], base / "a.jpg")
    shutil.copy(image_dir / GOOD[1], base / "sub" / "b.png")
    shutil.copy(image_dir / GOOD[2], base / "caf\u00e9.png")  # non-ASCII: escaped, as json.dumps
    npz_dir, original_dir = tmp_path / "npz", tmp_path / "original"
    _, paths = extract_dir_descriptors.run_extract_dir(_config(base), str(npz_dir))
    returned, original_paths = extract_dir_descriptors.run_extract_dir(
        _config(base, descriptor_format="original"), str(original_dir)
    )
    assert paths == original_paths == ["a.jpg", "caf\u00e9.png", "sub/b.png"]
    assert sorted(os.listdir(original_dir)) == ["descriptors.json", "extract_config.json"]
    text = (original_dir / "descriptors.json").read_text(encoding="ascii")
    with np.load(npz_dir / "descriptors.npz") as npz:
        want = npz["descriptors"]
    full = [os.path.join(str(base), p) for p in paths]
    assert text == json.dumps({"descriptors": want.tolist(), "paths": full})
    saved = json.loads(text)
    assert list(saved) == ["descriptors", "paths"] and saved["paths"] == full
    got = np.asarray(saved["descriptors"], dtype=np.float32)
    assert got.shape == (3, 8)
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(got, returned)
    with pytest.raises(ValueError, match="descriptors.json.*expected"):  # a folder's, not a split's
        knn_descriptors.load_descriptors(str(original_dir / "descriptors.json"))


def test_bad_arguments_fail_loudly(image_dir, tmp_path):
    with pytest.raises(ValueError, match="^config.descriptor_format='npy' is not one of npz, orig"):
        extract_dir_descriptors.run_extract_dir(
            _config(image_dir, descriptor_format="npy"), str(tmp_path / "w")
        )
    with pytest.raises(FileNotFoundError, match="base_dir"):
        extract_dir_descriptors.run_extract_dir(_config(tmp_path / "none"), str(tmp_path / "w"))
    missing = _config(image_dir, allow_random_init=False, pretrained_ckpt=str(tmp_path / "x.npz"))
    with pytest.raises(FileNotFoundError, match="x.npz"):
        extract_dir_descriptors.run_extract_dir(missing, str(tmp_path / "w"))
    with pytest.raises(ValueError, match="No weights given"):
        extract_dir_descriptors.run_extract_dir(
            _config(image_dir, allow_random_init=False), str(tmp_path / "w")
        )
    assert not (tmp_path / "w").exists()


def test_pretrained_hf_vit_weights_match_reference(image_dir, tmp_path):
    """--config.pretrained_ckpt=<HF ViT safetensors>: backbone_out == transformers' class token."""
    import torch
    import transformers

    hf_config = transformers.ViTConfig(
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        image_size=32,
        patch_size=8,
        layer_norm_eps=1e-6,  # AugReg's LayerNorm
        hidden_act="gelu_pytorch_tanh",  # tanh GELU, our default
    )
    torch.manual_seed(0)
    hf = transformers.ViTModel(hf_config, add_pooling_layer=False).eval()
    with torch.no_grad():
        for p in hf.parameters():
            p.add_(torch.randn(p.shape) * 0.2)
    hf.save_pretrained(tmp_path / "hf")  # writes model.safetensors with the Hub's tensor names

    config = _config(
        image_dir,
        allow_random_init=False,
        pretrained_ckpt=str(tmp_path / "hf" / "model.safetensors"),
        embedd_to_eval="backbone_out",
    )
    descriptors, paths = extract_dir_descriptors.run_extract_dir(config, str(tmp_path / "w"))
    batch = next(
        input_pipeline.folder_batches(
            str(image_dir), paths, batch_size=4, image_size=32, normalization="imagenet"
        )
    )
    with torch.no_grad():
        out = hf(pixel_values=torch.from_numpy(batch["images"].transpose(0, 3, 1, 2)))
    want = out.last_hidden_state[:, 0].numpy()
    want /= np.linalg.norm(want, axis=1, keepdims=True)
    np.testing.assert_allclose(descriptors, want, atol=1e-4)


def test_odd_names_and_truncated_images_are_skipped_not_fatal(image_dir, tmp_path):
    """A non-UTF-8 name, a newline in a name, a JPEG cut short: the run lists them and goes on."""
    base = tmp_path / "odd"
    os.makedirs(base)
    pixels = np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(base / "ok.jpg", quality=95)
    jpeg = (base / "ok.jpg").read_bytes()
    (base / "two\nlines.jpg").write_bytes(jpeg)
    (base / "cut.jpg").write_bytes(jpeg[: len(jpeg) // 2])  # header fine, data cut short
    with open(os.path.join(os.fsencode(base), b"latin\xe9.jpg"), "wb") as f:
        f.write(jpeg)
    workdir = tmp_path / "w"
    descriptors, paths = extract_dir_descriptors.run_extract_dir(_config(base), str(workdir))
    assert paths == ["ok.jpg", "two\nlines.jpg"]
    np.testing.assert_allclose(descriptors[0], descriptors[1], atol=1e-6)  # same pixels
    assert np.load(workdir / "descriptors.npz")["paths"].tolist() == paths
    lines = (workdir / "unreadable.txt").read_text(encoding="utf-8").splitlines()
    found = {e["path"]: e["reason"] for e in map(json.loads, lines)}
    assert sorted(found) == ["cut.jpg", "latin\udce9.jpg"]
    assert "UTF-8" in found["latin\udce9.jpg"] and "decode" in found["cut.jpg"]
