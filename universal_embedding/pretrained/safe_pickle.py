"""Restricted unpicklers for weight files: arrays, dicts, lists, strings and numbers only.

A pickle names the callables that rebuild its objects, and the standard unpickler imports and
calls whatever it names, so a crafted weight file could run any code. These unpicklers look
every name up in a fixed table (importing nothing) and refuse any other, naming it. Two
containers are read this way: OpenAI's `vit_b16.npy` (an object .npy holding a pickled dict of
arrays), TorchScript archives (OpenAI's `ViT-B-16.pt`), whose `data.pkl` is read for its
tensors while the TorchScript code next to it is never compiled or run, and the zip archives
of `torch.save` (DINOv2's torch hub `.pth`), read the same way without importing torch.
"""

from __future__ import annotations

import collections
import io
import os
import pickle
import re
import zipfile
from collections.abc import Callable
from typing import Any, BinaryIO

import ml_dtypes
import numpy as np

from universal_embedding.errors import limits
from universal_embedding.pretrained.common import CheckpointError

ALLOWED = "numpy arrays, dicts, lists, strings and numbers"
_RECONSTRUCT = np.ndarray.__reduce__(np.zeros(1))[0]  # numpy's array and scalar rebuilders,
_SCALAR = np.float32(0).__reduce__()[0]  # whichever module this numpy version keeps them in

NUMPY_GLOBALS: dict[tuple[str, str], Any] = {
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("ml_dtypes", "bfloat16"): ml_dtypes.bfloat16,
    ("collections", "OrderedDict"): collections.OrderedDict,
}
for _module in ("numpy.core.multiarray", "numpy._core.multiarray"):  # numpy 1.x and 2.x names
    NUMPY_GLOBALS[(_module, "_reconstruct")] = _RECONSTRUCT
    NUMPY_GLOBALS[(_module, "scalar")] = _SCALAR


class RefusedPickle(pickle.UnpicklingError):
    """The pickle names a global outside the allowed table."""


class _Restricted(pickle.Unpickler):
    globals_table: dict[tuple[str, str], Any] = NUMPY_GLOBALS

    def find_class(self, module: str, name: str) -> Any:
        found = self.globals_table.get((module, name))
        if found is None:
            raise RefusedPickle(f"{module}.{name}")
        return found


def _refusal(path: str, e: Exception) -> CheckpointError:
    if isinstance(e, RefusedPickle):
        return CheckpointError(
            f"{path} holds a pickled {e}, which is none of the {ALLOWED} a weight file may hold: "
            "refused, nothing in it was run. Use the original weights or a .safetensors file."
        )
    return CheckpointError(f"{path}: unreadable pickle ({type(e).__name__}: {e}).")


def _load(unpickler: pickle.Unpickler, path: str) -> Any:
    try:
        return unpickler.load()
    except limits.LimitError:  # a storage declaring more than the file may inflate to
        raise
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError) as e:
        raise _refusal(path, e) from None


def load_npy_dict(path: str) -> dict[str, Any]:
    """The dict pickled in an object-dtype .npy file (np.save(path, dict, allow_pickle=True))."""
    with limits.open_regular(path, "Checkpoint") as f:
        version = np.lib.format.read_magic(f)
        reader = {(1, 0): np.lib.format.read_array_header_1_0}.get(
            version, np.lib.format.read_array_header_2_0
        )
        shape, _, dtype = reader(f)
        if not dtype.hasobject:
            raise CheckpointError(
                f"{path} holds a plain {dtype} array of shape {shape}, not a pickled dict of "
                "arrays (keys as in the OpenAI CLIP state dict)."
            )
        obj = _load(_Restricted(f), path)
    if isinstance(obj, np.ndarray) and obj.dtype == object and obj.shape == ():
        obj = obj[()]
    if not isinstance(obj, dict):
        raise CheckpointError(
            f"{path} holds a {type(obj).__name__}, not a pickled dict of arrays "
            "(keys as in the OpenAI CLIP state dict)."
        )
    return dict(obj)


# ----------------------------------------------------------------------------- TorchScript

_STORAGE_DTYPES = {
    "FloatStorage": np.float32,
    "HalfStorage": np.float16,
    "BFloat16Storage": ml_dtypes.bfloat16,
    "DoubleStorage": np.float64,
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ShortStorage": np.int16,
    "CharStorage": np.int8,
    "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
}


class _ScriptObject:
    """Stands in for a TorchScript class instance: holds its pickled state, runs nothing."""

    def __new__(cls, *args: Any) -> _ScriptObject:
        return super().__new__(cls)

    def __init__(self, *args: Any) -> None:
        self.state: Any = None

    def __setstate__(self, state: Any) -> None:
        self.state = state


class _StorageType:
    def __init__(self, dtype: Any) -> None:
        self.dtype = np.dtype(dtype)


def _rebuild_tensor(storage, offset, size, stride, *unused) -> np.ndarray:
    """A tensor as a copy of its (bounds-checked) strided view of a storage array."""
    shape, strides = tuple(size), tuple(stride)
    if not isinstance(storage, np.ndarray) or len(shape) != len(strides):
        raise pickle.UnpicklingError("malformed tensor record")
    if any(not isinstance(n, int) or n < 0 for n in (offset, *shape, *strides)):
        raise pickle.UnpicklingError("negative tensor size, stride or offset")
    if 0 not in shape:
        last = offset + sum((n - 1) * s for n, s in zip(shape, strides, strict=True))
        if last >= storage.size:
            raise pickle.UnpicklingError("tensor extends past its storage")
    item = storage.itemsize
    view = np.lib.stride_tricks.as_strided(
        storage[offset:] if 0 not in shape else storage[:0],
        shape,
        tuple(s * item for s in strides),
        writeable=False,
    )
    return view.copy()


def _identity(value: Any, *unused: Any) -> Any:
    return value


class _TorchScriptUnpickler(_Restricted):
    globals_table = {
        ("collections", "OrderedDict"): collections.OrderedDict,
        ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
        ("torch._utils", "_rebuild_parameter"): _identity,
        ("torch.jit._pickle", "restore_type_tag"): _identity,
        **{("torch.jit._pickle", f"build_{t}list"): _identity for t in ("int", "double", "bool")},
        ("torch.jit._pickle", "build_tensorlist"): _identity,
        **{("torch", n): _StorageType(d) for n, d in _STORAGE_DTYPES.items()},
    }

    def __init__(self, file: BinaryIO, read_record: Callable[[str], bytes]) -> None:
        super().__init__(file)
        self.read_record = read_record
        self.storages: dict[str, np.ndarray] = {}

    def find_class(self, module: str, name: str) -> Any:
        if module == "__torch__" or module.startswith("__torch__."):
            return _ScriptObject
        return super().find_class(module, name)

    def persistent_load(self, pid: Any) -> np.ndarray:
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"):
            raise pickle.UnpicklingError(f"unknown persistent id {str(pid)[:80]}")
        _, storage_type, key, _, numel = pid
        if not isinstance(storage_type, _StorageType) or not re.fullmatch(r"\d+", str(key)):
            raise pickle.UnpicklingError(f"bad storage record {str(pid)[:80]}")
        if key not in self.storages:
            raw = self.read_record(f"data/{key}")
            count = len(raw) // storage_type.dtype.itemsize
            if not isinstance(numel, int) or numel > count:
                raise pickle.UnpicklingError(f"storage {key} is shorter than its {numel} elements")
            self.storages[key] = np.frombuffer(raw, storage_type.dtype, count=numel)
        return self.storages[key]


def _named_tensors(obj: Any, prefix: str, out: dict[str, np.ndarray], seen: set[int]) -> None:
    """Every tensor reachable through TorchScript module attributes, as dotted names."""
    if isinstance(obj, np.ndarray):
        out[prefix.rstrip(".")] = obj
    elif isinstance(obj, _ScriptObject) and id(obj) not in seen:  # (a pickle may hold cycles)
        seen.add(id(obj))
        if not isinstance(obj.state, dict):
            raise CheckpointError(
                f"TorchScript object '{prefix.rstrip('.') or '<root>'}' has a custom state "
                "(its archive's own __setstate__ code would rebuild it); that code is never run."
            )
        for key, value in obj.state.items():
            _named_tensors(value, f"{prefix}{key}.", out, seen)


def is_torchscript(names: list[str]) -> bool:
    return any(n.endswith("constants.pkl") for n in names) and any(
        n.endswith("/data.pkl") for n in names
    )


class _TorchSaveUnpickler(_TorchScriptUnpickler):
    """torch.save archives: tensors and plain containers, no TorchScript objects."""

    def find_class(self, module: str, name: str) -> Any:
        return _Restricted.find_class(self, module, name)


def load_torch_zip(path: str) -> Any:
    """The object a zip-format `torch.save` file holds, tensors as numpy arrays."""
    return _read_archive(path, _TorchSaveUnpickler)


def _read_archive(path: str, unpickler_class: type) -> Any:
    """The unpickled data.pkl of a torch zip archive, its storages read from data/<key>.

    Members are inflated one by one, each only when its declared size fits what is left of
    limits.budget(file size): a small archive never inflates to gigabytes."""
    left = [limits.budget(os.path.getsize(path))]

    def read(z: zipfile.ZipFile, name: str) -> bytes:
        raw = limits.read_zip_member(z, name, path, left[0])
        left[0] -= len(raw)
        return raw

    with limits.open_zip(path, "Checkpoint") as z:
        data_pkl = min((n for n in z.namelist() if n.endswith("/data.pkl")), key=len)
        root = data_pkl.removesuffix("data.pkl")
        byteorder = root + "byteorder"
        if byteorder in z.namelist() and read(z, byteorder).strip() != b"little":
            raise CheckpointError(f"{path}: big-endian TorchScript archives are not supported.")
        unpickler = unpickler_class(
            io.BytesIO(read(z, data_pkl)), lambda name: read(z, root + name)
        )
        try:
            return _load(unpickler, path)
        except KeyError as e:
            raise CheckpointError(f"{path}: missing archive record {e}.") from None


def load_torchscript(path: str) -> dict[str, np.ndarray]:
    """{dotted name: array} of every tensor attribute of a TorchScript archive's modules."""
    obj = _read_archive(path, _TorchScriptUnpickler)
    out: dict[str, np.ndarray] = {}
    try:
        _named_tensors(obj, "", out, set())
    except CheckpointError as e:
        raise CheckpointError(f"{path}: {e}") from None
    return out
