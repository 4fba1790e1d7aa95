"""Hostile weight files: declared-size bombs in every zip container, ignored tensors never
inflated, malformed safetensors headers, config.json files that are not what they claim."""

from __future__ import annotations

import json
import struct
import zipfile

import pytest

from tests import hostile
from universal_embedding.errors import limits
from universal_embedding.pretrained.common import CheckpointError
from universal_embedding.pretrained.files import read_checkpoint

torch = pytest.importorskip("torch")
BOMB = (320_000, 256)  # 327,680,000 bytes of zeros, about 0.3 MB deflated
READ = "from universal_embedding.pretrained.files import read_checkpoint as r\n"


def _augreg_npz(path, bomb_name: str) -> str:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as z:
        z.writestr("Transformer/encoderblock_0/x.npy", hostile.npy_header((2, 3)) + bytes(24))
        hostile.zero_bomb_member(z, bomb_name + ".npy", BOMB)
    return str(path)


def _with_bomb_storage(src: str, dst: str) -> str:
    """A torch zip archive whose data/0 storage is replaced by a deflated zero bomb."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_DEFLATED, 9) as z:
        for info in zin.infolist():
            if info.filename.endswith("/data/0"):
                hostile.zero_bomb_member(z, info.filename, BOMB)  # (header bytes: harmless)
            else:
                z.writestr(info, zin.read(info))
    return dst


@pytest.fixture(scope="module")
def bomb_runs(tmp_path_factory):
    """read_checkpoint on four bombs in one fresh process: {case: {'error', 'grown_mb'}}."""
    root = tmp_path_factory.mktemp("weights")
    head = _augreg_npz(root / "head.npz", "head/kernel")
    loaded = _augreg_npz(root / "loaded.npz", "Transformer/encoderblock_0/y")
    torch.jit.script(torch.nn.Linear(4, 4)).save(str(root / "ts.pt"))
    torch.save({"w": torch.ones(4)}, str(root / "sd.pt"))
    script = _with_bomb_storage(str(root / "ts.pt"), str(root / "ts_bomb.pt"))
    state = _with_bomb_storage(str(root / "sd.pt"), str(root / "sd_bomb.pt"))
    setup = READ + "from universal_embedding.pretrained.load import never_loaded"
    calls = {
        "ignored_head": f"assert sorted(r({head!r}, skip=never_loaded)[1]) == "
        "['Transformer/encoderblock_0/x']",
        "npz": f"r({loaded!r}, skip=never_loaded)",
        "torchscript": f"r({script!r})",
        "torch": f"r({state!r})",
    }
    return hostile.peak_runs(setup, calls)


def test_ignored_augreg_head_is_never_inflated(bomb_runs):
    assert bomb_runs["ignored_head"]["error"] == ""
    assert bomb_runs["ignored_head"]["grown_mb"] < hostile.PEAK_BOUND_MB


@pytest.mark.parametrize(
    "case, declared",
    [("npz", "327,680,024"), ("torchscript", "327,680,128"), ("torch", "327,680,")],
)
def test_bomb_in_a_zip_container_is_refused_before_inflating(bomb_runs, case, declared):
    error, grown = bomb_runs[case]["error"], bomb_runs[case]["grown_mb"]
    assert "UE_MAX_INFLATE_RATIO" in error and declared in error, error
    assert grown < hostile.PEAK_BOUND_MB, f"grew {grown:.0f} MB"


def _safetensors(path, header: object, data: bytes = b"") -> str:
    raw = json.dumps(header).encode() if not isinstance(header, bytes) else header
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(raw)) + raw + data)
    return str(path)


@pytest.mark.parametrize(
    "header, data, why",
    [
        (b"{not json", b"", "header is not JSON"),
        (b"[1, 2]", b"", "not a safetensors file"),
        (
            {"w": {"dtype": "F32", "shape": [25000, 25000], "data_offsets": [0, 2500000000]}},
            b"\0" * 16,
            "declares shape",
        ),  # fmt: skip
        ({"w": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 8]}}, b"\0" * 16, "shape"),
        ({"w": {"dtype": "Q7", "shape": [1], "data_offsets": [0, 4]}}, b"\0" * 4, "unknown dtype"),
        ({"w": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]}}, b"\0" * 4, "malformed"),
    ],
)
def test_malformed_safetensors_header_is_one_line(tmp_path, header, data, why):
    path = _safetensors(tmp_path / "model.safetensors", header, data)
    with pytest.raises(CheckpointError, match=why) as e:
        read_checkpoint(path)
    assert "\n" not in str(e.value) and "model.safetensors" in str(e.value)


def test_safetensors_header_length_beyond_the_file(tmp_path):
    path = tmp_path / "model.safetensors"
    path.write_bytes(struct.pack("<Q", 10**12) + b"{}")
    with pytest.raises(CheckpointError, match="not a safetensors file|header length"):
        read_checkpoint(str(path))


def test_fifo_checkpoint_is_refused_without_hanging(tmp_path):
    import os

    fifo = tmp_path / "w.npz"
    os.mkfifo(fifo)
    with pytest.raises(OSError, match="FIFO"):
        read_checkpoint(str(fifo))


@pytest.mark.parametrize(
    "text, why",
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "holds a JSON list"),
        ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
    ],
)
def test_bad_json_object_files_name_the_file(tmp_path, text, why):
    path = tmp_path / "config.json"
    path.write_text(text)
    with pytest.raises(ValueError, match=why) as e:
        limits.read_json_object(str(path), "Training config")
    assert str(path) in str(e.value) and "\n" not in str(e.value)
