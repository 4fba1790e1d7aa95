"""Weight files are data: no code in them runs, and non-finite weights are refused."""

import collections
import io
import os
import pickle
import subprocess
import sys
from typing import Tuple  # noqa: UP035  (TorchScript wants typing.Tuple)

import ml_dtypes
import numpy as np
import pytest
import torch

from universal_embedding.pretrained import CheckpointError, files
from universal_embedding.pretrained.files import read_checkpoint


class WritesMarker:
    """Unpickling this calls os.system (a file written means code ran)."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"echo ran > {self.marker}",))


class CallsPrint:
    def __reduce__(self):
        return (print, ("CODE RAN FROM A WEIGHT FILE",))


def evil_npy_bytes(payload):
    buf = io.BytesIO()
    np.save(buf, {"visual.conv1.weight": np.ones((4, 3, 8, 8)), "x": payload}, allow_pickle=True)
    return buf.getvalue()


@pytest.mark.parametrize("name", ["vit_b16.npy", "model.bin", "model.safetensors"])
def test_npy_whose_pickle_runs_code_is_refused(tmp_path, name):
    marker = tmp_path / "marker"
    path = tmp_path / name
    path.write_bytes(evil_npy_bytes(WritesMarker(marker)))
    match = "named .safetensors" if name.endswith(".safetensors") else "posix.system|nt.system"
    with pytest.raises(CheckpointError, match=match):
        read_checkpoint(str(path))
    assert not marker.exists()


def test_refusal_names_the_pickled_type(tmp_path, capsys):
    path = tmp_path / "vit_b16.npy"
    path.write_bytes(evil_npy_bytes(CallsPrint()))
    with pytest.raises(CheckpointError, match=r"builtins\.print") as e:
        read_checkpoint(str(path))
    assert "\n" not in str(e.value) and str(path) in str(e.value)
    assert "CODE RAN" not in capsys.readouterr().out


def test_real_format_npy_loads_every_value(tmp_path):
    state = collections.OrderedDict(
        [
            ("w32", np.arange(6, dtype=np.float32).reshape(2, 3)),
            ("w16", np.array([0.5, -1.25], np.float16)),
            ("bf16", np.array([1.5, 2.0], ml_dtypes.bfloat16)),
            ("fortran", np.asfortranarray(np.arange(6.0).reshape(2, 3))),
            ("ids", np.arange(3)),
            ("scale", np.float32(4.6)),
            ("plain", 2.5),
        ]
    )
    np.save(tmp_path / "a.npy", dict(state), allow_pickle=True)
    np.save(tmp_path / "b.npy", state, allow_pickle=True)
    for name in ("a.npy", "b.npy"):
        container, arrays = read_checkpoint(str(tmp_path / name))
        assert container == "npy" and list(arrays) == list(state)
        for key, want in state.items():
            np.testing.assert_array_equal(arrays[key], np.asarray(want, np.float32))
        assert arrays["ids"].dtype == np.int64 and arrays["w16"].dtype == np.float32


def test_npy_written_by_numpy_1_loads(tmp_path):
    """numpy 1.x pickles name numpy.core.multiarray (numpy 2: numpy._core.multiarray)."""
    state = np.empty((), dtype=object)
    state[()] = {"a": np.ones(3, np.float32), "s": np.float32(2)}
    raw = pickle.dumps(state, protocol=3)  # as numpy 1.x wrote: GLOBAL opcodes, names as text
    assert b"numpy._core.multiarray\n" in raw
    with open(tmp_path / "old.npy", "wb") as f:
        header = {"descr": "|O", "fortran_order": False, "shape": ()}
        np.lib.format.write_array_header_1_0(f, header)
        f.write(raw.replace(b"numpy._core.", b"numpy.core."))
    _, arrays = read_checkpoint(str(tmp_path / "old.npy"))
    np.testing.assert_array_equal(arrays["a"], np.ones(3))
    assert arrays["s"] == 2.0


def test_safetensors_name_with_npy_content_is_refused(tmp_path):
    path = tmp_path / "model.safetensors"
    np.save(path.with_suffix(".npy"), {"a": np.ones(2)}, allow_pickle=True)
    os.replace(path.with_suffix(".npy"), path)
    with pytest.raises(CheckpointError, match="not a safetensors file"):
        read_checkpoint(str(path))


def test_plain_npy_array_is_not_a_dict(tmp_path):
    np.save(tmp_path / "arr.npy", np.ones(3))
    with pytest.raises(CheckpointError, match="not a pickled dict"):
        read_checkpoint(str(tmp_path / "arr.npy"))


def test_legacy_torch_pickle_is_refused_with_the_conversion(tmp_path, monkeypatch):
    (tmp_path / "model.pt").write_bytes(pickle.dumps({}, protocol=2))  # legacy torch pickle
    monkeypatch.setitem(sys.modules, "torch", None)  # refused before torch would be needed
    with pytest.raises(CheckpointError, match="is a legacy \\(non-zip\\) torch.save file") as e:
        read_checkpoint(str(tmp_path / "model.pt"))
    assert files.LEGACY_TORCH_FIX in str(e.value) and "\n" not in str(e.value)


def test_genuine_and_crafted_legacy_torch_saves_are_refused_and_the_fix_works(tmp_path):
    n = 123457  # pickled as BININT 'J' + 4 bytes: the storage's declared numel is easy to patch
    state = {"w": torch.arange(n, dtype=torch.float32), "b": torch.tensor([0.5, 1.5])}
    legacy = tmp_path / "legacy.pt"
    torch.save(state, legacy, _use_new_zipfile_serialization=False)
    data = legacy.read_bytes()
    at = data.index(b"J" + n.to_bytes(4, "little"))  # first: the storage record, not the shape
    crafted = tmp_path / "crafted.pt"  # declares 2**30 floats (4 GiB) in a 0.5 MB file
    crafted.write_bytes(data[:at] + b"J" + (1 << 30).to_bytes(4, "little") + data[at + 5 :])
    for path in (legacy, crafted):
        with pytest.raises(CheckpointError) as e:
            read_checkpoint(str(path))
        assert str(e.value).startswith(f"{path} is a legacy (non-zip) torch.save file")
        assert files.LEGACY_TORCH_FIX in str(e.value) and "\n" not in str(e.value)
    command = files.LEGACY_TORCH_FIX.removeprefix("python -c ").strip('"')
    command = command.replace("'IN'", repr(str(legacy))).replace(
        "'OUT.pth'", repr(str(tmp_path / "zip.pth"))
    )
    subprocess.run([sys.executable, "-c", command], check=True, timeout=120)
    container, arrays = read_checkpoint(str(tmp_path / "zip.pth"))
    assert container == "torch_zip" and sorted(arrays) == ["b", "w"]
    np.testing.assert_array_equal(arrays["w"], np.arange(n, dtype=np.float32))
    np.testing.assert_array_equal(arrays["b"], [0.5, 1.5])


class SetstateRuns(torch.nn.Module):
    """A TorchScript module whose __setstate__ is code stored in the archive."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.ones(2), requires_grad=False)

    @torch.jit.export
    def __getstate__(self) -> Tuple[torch.Tensor, bool]:  # noqa: UP006
        return (self.w, self.training)

    @torch.jit.export
    def __setstate__(self, state: Tuple[torch.Tensor, bool]) -> None:  # noqa: UP006
        print("CODE RAN FROM A WEIGHT FILE")
        self.w = state[0]
        self.training = state[1]


def test_torchscript_code_never_runs(tmp_path, capfd):
    path = tmp_path / "ViT-B-16.pt"
    torch.jit.script(SetstateRuns()).save(str(path))
    with pytest.raises(CheckpointError, match="custom state"):
        read_checkpoint(str(path))
    assert "CODE RAN" not in capfd.readouterr().out


def test_torchscript_read_without_torch(tmp_path, monkeypatch):
    root = torch.nn.Module()
    root.add_module("visual", torch.nn.Module())
    root.visual.register_parameter("w", torch.nn.Parameter(torch.arange(6.0).reshape(2, 3).T))
    root.visual.register_buffer("h", torch.tensor([0.5, 1.5], dtype=torch.float16))
    root.visual.register_buffer("b", torch.tensor([1.0, 3.0], dtype=torch.bfloat16))
    root.register_parameter("s", torch.nn.Parameter(torch.tensor(4.5)))
    big = torch.arange(10.0)
    root.register_buffer("view", big[2:8:2])  # offset and stride into a larger storage
    path = tmp_path / "ts.pt"
    torch.jit.script(root).save(str(path))
    monkeypatch.setitem(sys.modules, "torch", None)
    container, arrays = read_checkpoint(str(path))
    assert container == "torchscript"
    assert sorted(arrays) == ["s", "view", "visual.b", "visual.h", "visual.w"]
    np.testing.assert_array_equal(arrays["visual.w"], np.arange(6.0).reshape(2, 3).T)
    np.testing.assert_array_equal(arrays["visual.h"], [0.5, 1.5])
    np.testing.assert_array_equal(arrays["visual.b"], [1.0, 3.0])
    np.testing.assert_array_equal(arrays["view"], [2.0, 4.0, 6.0])
    assert arrays["s"].shape == () and arrays["s"] == 4.5


@pytest.mark.parametrize("zip_format", [True, False])
def test_torch_pickle_that_runs_code_is_refused(tmp_path, zip_format):
    marker = tmp_path / "marker"
    path = tmp_path / "open_clip.bin"
    state = {"visual.conv1.weight": torch.ones(2), "x": WritesMarker(marker)}
    torch.save(state, path, _use_new_zipfile_serialization=zip_format)
    # zip: the restricted reader of safe_pickle.py; legacy pickles: refused unread
    refusal = r"pickled \w+\.system.*nothing in it was run" if zip_format else r"legacy \(non-zip\)"
    with pytest.raises(CheckpointError, match=refusal) as e:
        read_checkpoint(str(path))
    assert "\n" not in str(e.value)
    assert not marker.exists()


def test_npz_with_pickled_object_array_is_refused(tmp_path):
    np.savez(tmp_path / "w.npz", a=np.ones(2), b=np.array([{"k": 1}], dtype=object))
    with pytest.raises(CheckpointError, match="not plain numbers"):
        read_checkpoint(str(tmp_path / "w.npz"))


def test_torch_save_zip_read_without_torch(tmp_path, monkeypatch):
    """A zip-format torch.save state dict (DINOv2's .pth) through the restricted reader."""
    big = torch.arange(10.0)
    layer = torch.nn.Linear(3, 2)
    state = layer.state_dict()  # an OrderedDict with _metadata, as model.state_dict() saves
    state["half"] = torch.tensor([0.5, 1.5], dtype=torch.float16)
    state["bf16"] = torch.tensor([1.0, 3.0], dtype=torch.bfloat16)
    state["view"] = big[2:8:2]
    state["steps"] = torch.tensor([7], dtype=torch.int64)
    path = tmp_path / "dinov2_vitb14_pretrain.pth"
    torch.save({"model": state, "epoch": 3}, path)
    want_w = layer.weight.detach().numpy().copy()
    monkeypatch.setitem(sys.modules, "torch", None)
    container, arrays = read_checkpoint(str(path))
    assert container == "torch_zip"
    assert sorted(arrays) == ["bf16", "bias", "half", "steps", "view", "weight"]
    np.testing.assert_array_equal(arrays["weight"], want_w)
    np.testing.assert_array_equal(arrays["half"], [0.5, 1.5])
    np.testing.assert_array_equal(arrays["bf16"], [1.0, 3.0])
    np.testing.assert_array_equal(arrays["view"], [2.0, 4.0, 6.0])
    assert arrays["steps"].dtype == np.int64 and arrays["steps"].tolist() == [7]
