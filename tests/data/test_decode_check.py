"""The converter's batched test decode and its folder-resolving path check agree with the
one-image-at-a-time checks they replace."""

import io
import os

import numpy as np
from PIL import Image

from universal_embedding.data import decode_check, image_files


def _encoded(fmt, seed=0, size=(7, 5)):
    pixels = np.random.default_rng(seed).integers(0, 256, (*size, 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format=fmt)
    return out.getvalue()


def test_batch_keeps_good_images_and_names_only_the_bad_one():
    jpeg, png, bmp = _encoded("JPEG"), _encoded("PNG", 1), _encoded("BMP", 2)
    truncated = jpeg[:40]
    raws = [jpeg, png, truncated, bmp, jpeg]
    out = decode_check.compatible_batch(raws)
    assert [d for d, _ in out] == [jpeg, png, None, out[3][0], jpeg]
    assert out[2][1].startswith("undecodable image") and out[2][0] is None
    assert out[3][0].startswith(b"\x89PNG")  # BMP re-encoded as PNG, pixels kept
    assert np.array_equal(
        np.asarray(Image.open(io.BytesIO(out[3][0]))), np.asarray(Image.open(io.BytesIO(bmp)))
    )
    one_by_one = []
    for raw in raws:
        try:
            one_by_one.append(image_files.tf_compatible_bytes(raw))
        except image_files.BadImageError:
            one_by_one.append(None)
    assert [d for d, _ in out] == one_by_one


def test_checked_keeps_order_and_reasons_across_batches(monkeypatch):
    monkeypatch.setattr(decode_check, "BATCH", 3)
    jpeg = _encoded("JPEG")
    loaded = [(jpeg, ""), (None, "missing"), (jpeg[:30], ""), (jpeg, ""), (None, "too big")]
    out = list(decode_check.checked(iter(loaded)))
    assert [d for d, _ in out] == [jpeg, None, None, jpeg, None]
    assert out[1][1] == "missing" and out[4][1] == "too big"
    assert out[2][1].startswith("undecodable image")


def test_outside_dir_agrees_with_realpath_of_every_path(tmp_path):
    root = tmp_path / "images"
    (root / "a" / "b").mkdir(parents=True)
    (tmp_path / "elsewhere").mkdir()
    for name in ("a/x.png", "a/b/y.png", "../elsewhere/z.png"):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(b"x")
    os.symlink(root / "a", root / "inside_link")  # a folder link staying inside
    os.symlink(tmp_path / "elsewhere", root / "a" / "out_link")  # a folder link leading out
    os.symlink(root / "a" / "out_link" / "z.png", root / "a" / "file_link.png")  # via a link
    os.symlink(root / "a" / "x.png", root / "a" / "b" / "ok_link.png")
    names = [
        "a/x.png", "inside_link/b/y.png", "a/out_link/z.png", "a/file_link.png",
        "a/b/ok_link.png", "inside_link/../a/x.png", "a/out_link/../images/a/x.png",
        "inside_link/out_link/z.png", "a/b/../../../elsewhere/z.png", "missing/q.png", "a/..",
    ]  # fmt: skip
    real_root = os.path.realpath(root)
    expected = [
        (i, n)
        for i, n in enumerate(names)
        if os.path.commonpath([real_root, os.path.realpath(os.path.join(root, n))]) != real_root
    ]
    assert image_files.outside_dir(str(root), names) == expected
    assert [i for i, _ in expected] == [2, 3, 7, 8]
