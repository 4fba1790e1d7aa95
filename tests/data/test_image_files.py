"""Scanning a folder of images: names that are not UTF-8, huge or fake files, header-only checks."""

import os

import numpy as np
import pytest
from PIL import Image

from universal_embedding.data import image_files


def _save(path, seed=0, fmt="PNG"):
    pixels = np.random.default_rng(seed).integers(0, 256, (9, 7, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path, format=fmt)


@pytest.fixture
def folder(tmp_path):
    base = tmp_path / "imgs"
    os.makedirs(base / "sub")
    _save(base / "good.png")
    _save(base / "sub" / "new\nline.jpg", 1, "JPEG")
    with open(os.path.join(os.fsencode(base), b"latin\xe9.png"), "wb") as f:  # not UTF-8
        _save(f, 2)
    with open(base / "huge.jpg", "wb") as f:  # sparse: 200 MB of zeros, no disk used
        f.truncate(200_000_000)
    (base / "notes.txt").write_text("not an image")
    (base / "empty.png").write_bytes(b"")
    return base


def test_scan_skips_what_cannot_be_named_or_read_without_reading_files(folder, monkeypatch):
    def no_reading(*args):
        raise AssertionError("the scan read a whole file")

    monkeypatch.setattr(image_files, "read_limited", no_reading)
    good, bad = image_files.scan_folder(str(folder), max_bytes=1_000_000)
    assert good == ["good.png", "sub/new\nline.jpg"]
    reasons = dict(bad)
    assert sorted(reasons) == ["empty.png", "huge.jpg", "latin\udce9.png", "notes.txt"]
    assert "not valid UTF-8" in reasons["latin\udce9.png"]
    assert "200000000 bytes, over --max_image_bytes=1000000" in reasons["huge.jpg"]
    assert "not an image" in reasons["notes.txt"] and "empty" in reasons["empty.png"]


def test_read_image_file_limits_and_checks_header(folder):
    raw = image_files.read_image_file(str(folder / "good.png"), max_bytes=10_000)
    assert raw == (folder / "good.png").read_bytes()
    size = len(raw)
    with pytest.raises(image_files.BadImageError, match=f"{size} bytes, over"):
        image_files.read_image_file(str(folder / "good.png"), max_bytes=size - 1)
    with pytest.raises(image_files.BadImageError, match="not an image.*b'not an image'"):
        image_files.read_image_file(str(folder / "notes.txt"), max_bytes=10_000)


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
def test_too_many_pixels_refused_from_the_header(tmp_path, monkeypatch):
    _save(tmp_path / "a.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 50)  # the image has 63
    with pytest.raises(image_files.BadImageError, match="7x9 pixels"):
        image_files.read_image_file(str(tmp_path / "a.png"), max_bytes=10_000)


def test_unreadable_list_is_json_lines(tmp_path):
    import json

    path = tmp_path / "unreadable.txt"
    entries = [("a\nb.jpg", "not an image"), ("latin\udce9.png", "file name is not valid UTF-8")]
    image_files.write_unreadable(str(path), entries)
    lines = path.read_text(encoding="utf-8").splitlines()
    assert [json.loads(line) for line in lines] == [{"path": p, "reason": r} for p, r in entries]
    assert os.fsencode(json.loads(lines[1])["path"]) == b"latin\xe9.png"  # the real name back


def test_read_limited_with_and_without_a_file_size(tmp_path):
    import io

    assert image_files.read_limited(io.BytesIO(b"x" * 10), 10) == b"x" * 10  # no fileno
    with pytest.raises(image_files.BadImageError, match="more than 5 bytes"):
        image_files.read_limited(io.BytesIO(b"x" * 10), 5)
    (tmp_path / "f").write_bytes(b"y" * 10)
    with open(tmp_path / "f", "rb") as f:
        assert image_files.read_limited(f, 100) == b"y" * 10
    with open(tmp_path / "f", "rb") as f, pytest.raises(image_files.BadImageError):
        image_files.read_limited(f, 9)
