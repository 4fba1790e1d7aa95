"""Hostile images through the evaluation transform: a long thin PNG never becomes a huge float
image, and bytes and arrays get the pixel limit that files get."""

from __future__ import annotations

import io

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from tests import hostile
from universal_embedding.data import embed_inputs, preprocess


def _png(width: int, height: int) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), (200, 10, 10)).save(out, format="PNG")
    return out.getvalue()


def test_long_thin_png_is_cropped_before_it_is_resized(tmp_path):
    path = tmp_path / "thin.png"
    path.write_bytes(_png(600_000, 1))  # about 2 KB; resized whole: 16 x 9.6M x 3 floats, 1.8 GB
    setup = "from universal_embedding.data import embed_inputs\nimport numpy as np"
    call = (
        "out = embed_inputs.eval_image({p!r}, image_size=16, normalization='')\n"
        "assert out.shape == (16, 16, 3) and np.allclose(out, [200, 10, 10])"
    )
    runs = hostile.peak_runs(setup, {"path": call.format(p=str(path))})
    assert runs["path"]["error"] == ""
    assert runs["path"]["grown_mb"] < hostile.PEAK_BOUND_MB, runs


@pytest.mark.parametrize("h, w", [(20, 200), (200, 20), (7, 300), (1, 90)])
def test_sampled_crop_equals_resize_then_crop(h, w):
    img = tf.constant(np.random.default_rng(h * w).integers(0, 256, (h, w, 3)), tf.uint8)
    new = preprocess.eval_size(tf.shape(img)[:2], 16)
    full = preprocess._resize_then_crop(img, new, 16).numpy()
    sampled = preprocess._sampled_crop(img, new, 16).numpy()
    np.testing.assert_allclose(sampled, full, atol=5e-3, rtol=0)


def test_ordinary_images_keep_the_exact_resize():
    img = tf.constant(np.random.default_rng(0).integers(0, 256, (30, 45, 3)), tf.uint8)
    new = preprocess.eval_size(tf.shape(img)[:2], 16)
    np.testing.assert_array_equal(
        preprocess.eval_transform(img, image_size=16, norm="").numpy(),
        preprocess._resize_then_crop(img, new, 16).numpy(),
    )


def test_bytes_and_arrays_get_the_pixel_limit(monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    with pytest.raises(ValueError, match="MAX_IMAGE_PIXELS"):
        embed_inputs.eval_image(_png(50, 30), image_size=16, normalization="")
    with pytest.raises(ValueError, match="MAX_IMAGE_PIXELS=1000"):
        embed_inputs.eval_image(np.zeros((50, 30, 3), np.uint8), image_size=16, normalization="")
    with pytest.raises(ValueError, match="not an image"):
        embed_inputs.eval_image(b"not an image at all", image_size=16, normalization="")
    out = embed_inputs.eval_image(np.zeros((20, 30, 3), np.uint8), image_size=16, normalization="")
    assert out.shape == (16, 16, 3)


def test_folder_entry_linking_outside_the_folder_is_refused(tmp_path):
    from universal_embedding.data import image_files

    (tmp_path / "secret").mkdir()
    (tmp_path / "secret" / "s.png").write_bytes(_png(8, 8))
    base = tmp_path / "images"
    (base / "sub").mkdir(parents=True)
    (base / "a.png").write_bytes(_png(8, 8))
    (base / "sub" / "inside.png").symlink_to(base / "a.png")  # inside: kept
    (base / "leak.png").symlink_to(tmp_path / "secret" / "s.png")
    good, bad = image_files.scan_folder(str(base))
    assert good == ["a.png", "sub/inside.png"]
    assert bad == [("leak.png", f"a symlink leading outside {base}; refused")]


def test_index_page_reads_no_indexed_path_outside_the_images_folder(tmp_path):
    from universal_embedding import index

    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "in.png").write_bytes(_png(8, 8))
    (tmp_path / "secret.png").write_bytes(_png(8, 8))
    query = str(tmp_path / "images" / "in.png")
    hits = [
        {"path": p, "score": 1.0} for p in ("in.png", "../secret.png", str(tmp_path / "secret.png"))
    ]
    page = index.write_html(str(tmp_path / "q.html"), [{"query": query, "neighbours": hits}],
                            str(tmp_path / "images"))  # fmt: skip
    html = open(page).read()
    assert html.count("<img") == 2  # the query and in.png
    assert html.count('class="missing"') == 2  # ../secret.png and the absolute path
