"""The converter with hostile or unlucky input: paths outside files_dir, huge or fake images,
temp shards of killed runs, out-of-range class ids."""

import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from universal_embedding.data import image_files, tfrecords

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _png(path, seed=0):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, (6, 5, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path, format="PNG")


def _info(path, names, class_ids=None):
    class_ids = class_ids or [0] * len(names)
    entries = [{"path": n, "class_id": c} for n, c in zip(names, class_ids, strict=True)]
    path.write_text(json.dumps(entries))
    return str(path)


@pytest.fixture
def outside_set(tmp_path):
    img = tmp_path / "images"
    _png(str(img / "ok.png"))
    _png(str(tmp_path / "secret.png"), 1)  # next to files_dir, not under it
    names = ["ok.png", "../secret.png", str(tmp_path / "secret.png"), "sub/../ok.png"]
    os.makedirs(img / "sub")
    return img, _info(tmp_path / "info.json", names)


def test_paths_outside_files_dir_refused_listing_each(outside_set, tmp_path):
    img, info = outside_set
    out = tmp_path / "out" / "x.test.tfrecord"
    with pytest.raises(ValueError) as e:
        tfrecords.convert(info, str(out), str(img), progress=False)
    msg = str(e.value)
    assert "\n" not in msg and "--allow_outside_files_dir" in msg and info in msg
    assert "entry 1 '../secret.png'" in msg
    assert f"entry 2 '{tmp_path / 'secret.png'}'" in msg
    assert "entry 0" not in msg and "entry 3" not in msg  # inside files_dir
    assert not out.parent.exists() or os.listdir(out.parent) == []


def test_paths_outside_files_dir_allowed_on_request(outside_set, tmp_path):
    img, info = outside_set
    out = str(tmp_path / "out" / "x.test.tfrecord")
    s = tfrecords.convert(info, out, str(img), allow_outside_files_dir=True, progress=False)
    assert s.written == 4 and s.skipped == []


def test_oversized_and_fake_images_are_bad_without_being_read(tmp_path, monkeypatch):
    img = tmp_path / "images"
    _png(str(img / "small.png"))
    size = (img / "small.png").stat().st_size
    _png(str(img / "big.png"), 1)
    with open(img / "big.png", "ab") as f:  # a valid PNG with trailing bytes past the limit
        f.write(b"\0" * 2 * size)
    with open(img / "huge.jpg", "wb") as f:  # sparse: 200 MB of zeros, no disk used
        f.truncate(200_000_000)
    (img / "fake.jpg").write_bytes(b"#!/bin/sh\necho not an image\n" * 10)
    info = _info(tmp_path / "info.json", ["small.png", "big.png", "huge.jpg", "fake.jpg"])
    read_sizes = []
    real_read = image_files.read_limited
    monkeypatch.setattr(
        image_files, "read_limited", lambda f, n: read_sizes.append(n) or real_read(f, n)
    )
    out = str(tmp_path / "o" / "x")
    s = tfrecords.convert(
        info, out, str(img), skip_bad_images=True, max_image_bytes=2 * size, progress=False
    )
    reasons = dict(s.skipped)
    assert s.written == 1 and sorted(reasons) == ["big.png", "fake.jpg", "huge.jpg"]
    assert f"over --max_image_bytes={2 * size}" in reasons["big.png"]
    assert "200000000 bytes" in reasons["huge.jpg"]
    assert "not an image" in reasons["fake.jpg"] and "#!/bin/sh" in reasons["fake.jpg"]
    assert read_sizes == [2 * size]  # only small.png was read, and never past the limit
    s = tfrecords.convert(info, out, str(img), skip_bad_images=True, progress=False)
    assert "over --max_image_bytes=100000000" in dict(s.skipped)["huge.jpg"]  # the default


def _dead_pid():
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_stale_temp_shards_of_dead_runs_are_removed(tmp_path):
    img = tmp_path / "images"
    _png(str(img / "a.png"))
    info = _info(tmp_path / "info.json", ["a.png"])
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    host = tfrecords.host_tag()
    assert host and socket.gethostname().startswith(host[:4])
    dead, alive = _dead_pid(), os.getppid()
    stale = [f".x.val.tfrecord-00000-of-00002.tmp-{host}-{dead}", f".x.val.tfrecord.tmp-{dead}"]
    kept = [
        f".x.val.tfrecord-00001-of-00002.tmp-{host}-{alive}",  # a live conversion's
        f".x.val.tfrecord.tmp-otherhost-{dead}",  # another machine's: its pid means nothing here
        f".y.val.tfrecord.tmp-{host}-{dead}",  # another output's
        ".x.val.tfrecord.tmp-notes",  # not our naming
        "x.val.tfrecord.tmp-1",
    ]
    for name in stale + kept:
        (out_dir / name).write_bytes(b"partial")
    s = tfrecords.convert(info, str(out_dir / "x.val.tfrecord"), str(img), progress=False)
    assert s.written == 1
    left = sorted(os.listdir(out_dir))
    assert left == sorted(kept + ["x.val.tfrecord", "_meta"])


@pytest.mark.parametrize(
    "bad, what",
    [(2**63, "int64"), ([1, 2**64], "int64"), ("3", "non-negative int"), (1.0, "non-negative int")],
)
def test_bad_class_id_names_entry_index_and_path(tmp_path, bad, what):
    img = tmp_path / "images"
    _png(str(img / "a.png"))
    _png(str(img / "b.png"))
    info = _info(tmp_path / "info.json", ["a.png", "b.png"], [0, bad])
    with pytest.raises(ValueError, match=f"entry 1 \\(path 'b.png'\\).*{what}") as e:
        tfrecords.convert(info, str(tmp_path / "o" / "x"), str(img), progress=False)
    assert "\n" not in str(e.value)


def test_symlink_inside_files_dir_leading_outside_is_refused(tmp_path):
    img = tmp_path / "images"
    _png(str(img / "ok.png"))
    _png(str(tmp_path / "secret" / "s.png"), 1)
    os.symlink(tmp_path / "secret" / "s.png", img / "leak.png")  # a file link
    os.symlink(tmp_path / "secret", img / "linked")  # a folder link
    info = _info(tmp_path / "info.json", ["ok.png", "leak.png", "linked/s.png"])
    out = str(tmp_path / "out" / "x.test.tfrecord")
    with pytest.raises(ValueError, match="2 path\\(s\\) lead outside") as e:
        tfrecords.convert(info, out, str(img), progress=False)
    assert "entry 1 'leak.png'" in str(e.value) and "entry 2 'linked/s.png'" in str(e.value)
    s = tfrecords.convert(info, out, str(img), allow_outside_files_dir=True, progress=False)
    assert s.written == 3


def test_path_listed_twice_is_refused(tmp_path):
    img = tmp_path / "images"
    _png(str(img / "a.png"))
    _png(str(img / "b.png"), 1)
    info = _info(tmp_path / "info.json", ["a.png", "b.png", "a.png"], [0, 1, 2])
    out = tmp_path / "out" / "x.test.tfrecord"
    with pytest.raises(ValueError, match="listed twice") as e:
        tfrecords.convert(info, str(out), str(img), progress=False)
    assert "'a.png' as entry 0, class 0, and entry 2, class 2" in str(e.value)
    assert not out.parent.exists() or os.listdir(out.parent) == []
