"""Reading checkpoint files into flat {name: float32 array} dicts.

File containers are told apart by their first bytes: `.npz` (zip of .npy), `.npy` (pickled
dict), TorchScript (zip with constants.pkl), PyTorch (zip with data.pkl, or legacy pickle) and
safetensors (8-byte header length then JSON); a file named `.safetensors` must be one. No code
in a weight file runs: pickles are read by restricted unpicklers (safe_pickle.py; TorchScript
and zip-format torch.save files, without torch). Legacy (non-zip) torch.save pickles are refused
with the command that converts them (their declared storage sizes cannot be bounded).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping

import numpy as np

from universal_embedding.errors import limits
from universal_embedding.pretrained import safe_pickle
from universal_embedding.pretrained.common import CheckpointError


def _is_safetensors(head: bytes, file_size: int) -> bool:
    if len(head) < 9:
        return False
    header_len = int.from_bytes(head[:8], "little")
    return 0 < header_len <= file_size - 8 and head[8:9] == b"{"


def detect_container(path: str) -> str:
    """'npz' | 'npy' | 'torchscript' | 'torch_zip' | 'torch' (legacy pickle) | 'safetensors'
    from the file's content."""
    with limits.open_regular(path, "Checkpoint") as f:
        head = f.read(16)
    if _is_safetensors(head, os.path.getsize(path)):
        return "safetensors"
    if path.endswith(".safetensors"):
        raise CheckpointError(
            f"{path} is named .safetensors but is not a safetensors file (it starts with "
            f"{head[:8]!r}); it was not read. Download the file again."
        )
    if head.startswith(b"\x93NUMPY"):
        return "npy"
    if head.startswith(b"PK"):
        with limits.open_zip(path, "Checkpoint") as z:
            names = z.namelist()
        if names and all(n.endswith(".npy") for n in names):
            return "npz"
        return "torchscript" if safe_pickle.is_torchscript(names) else "torch_zip"
    if head[:1] == b"\x80":
        return "torch"  # legacy (non-zip) torch.save pickle
    raise CheckpointError(
        f"Cannot tell the format of checkpoint {path}: it is neither .npz (AugReg), .npy "
        "(pickled dict, OpenAI CLIP), a PyTorch state dict (.pt/.bin) nor safetensors."
    )


def _as_float32(path: str, arrays: Mapping[str, object]) -> dict[str, np.ndarray]:
    out = {}
    for name, value in arrays.items():
        arr = np.asarray(value)
        if arr.dtype == object:
            raise CheckpointError(
                f"{path}: '{name}' holds {type(value).__name__} objects, not an array of numbers."
            )
        floating = arr.dtype.kind == "f" or arr.dtype.name == "bfloat16"
        out[name] = arr.astype(np.float32) if floating else arr
    return out


SAFETENSORS_ITEMSIZE = {"BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1}
SAFETENSORS_ITEMSIZE |= {"I16": 2, "U16": 2, "F16": 2, "BF16": 2, "I32": 4, "U32": 4, "F32": 4}
SAFETENSORS_ITEMSIZE |= {"F64": 8, "I64": 8, "U64": 8}
MAX_SAFETENSORS_HEADER = 100 << 20  # the safetensors library's own bound on the JSON header


def _safetensors_error(path: str, why: str) -> CheckpointError:
    return CheckpointError(
        f"{limits.short(path)} is not a valid safetensors file ({why}); nothing was read. "
        "Download the file again."
    )


def _tensor_entry_error(name: str, info: object, data_size: int) -> str:
    """Why a header entry is malformed ('' when fine): dtype, shape and offsets that agree."""
    if not isinstance(info, dict):
        return f"entry '{limits.short(name, 80)}' is not an object"
    dtype, shape, offsets = info.get("dtype"), info.get("shape"), info.get("data_offsets")
    if dtype not in SAFETENSORS_ITEMSIZE:
        return f"tensor '{limits.short(name, 80)}' has unknown dtype {limits.short(dtype, 20)!r}"
    ints = lambda v: isinstance(v, list) and all(type(n) is int and n >= 0 for n in v)  # noqa: E731
    if not ints(shape) or not ints(offsets) or len(offsets) != 2:
        return f"tensor '{limits.short(name, 80)}' has a malformed shape or data_offsets"
    begin, end = offsets
    nbytes = int(np.prod(shape, dtype=object)) * SAFETENSORS_ITEMSIZE[dtype]
    if not begin <= end <= data_size or end - begin != nbytes:
        return (
            f"tensor '{limits.short(name, 80)}' declares shape {limits.short(shape, 80)} "
            f"({nbytes:,} bytes) at bytes {begin}..{end} of {data_size:,}"
        )
    return ""


def check_safetensors_header(path: str) -> dict:
    """The JSON header of a safetensors file, checked before any tensor is read: a bounded
    header length, an object of tensors whose dtype, shape and offsets agree and lie in the
    file (so nothing allocates more than the file holds)."""
    size = os.path.getsize(limits.regular_file(path, "Checkpoint"))
    with limits.open_regular(path, "Checkpoint") as f:
        header_len = int.from_bytes(f.read(8), "little")
        if not 0 < header_len <= min(size - 8, MAX_SAFETENSORS_HEADER):
            raise _safetensors_error(path, f"header length {header_len:,} for a {size:,}-byte file")
        raw = f.read(header_len)
    try:
        header = json.loads(raw)
    except (ValueError, RecursionError) as e:
        raise _safetensors_error(path, f"header is not JSON: {limits.short(e, 100)}") from None
    if not isinstance(header, dict):
        raise _safetensors_error(path, f"header is a JSON {type(header).__name__}")
    data_size = size - 8 - header_len
    for name, info in header.items():
        why = "" if name == "__metadata__" else _tensor_entry_error(name, info, data_size)
        if why:
            raise _safetensors_error(path, why)
    return header


def _read_safetensors(path: str, skip: Callable[[str], bool] = lambda n: False) -> dict:
    from safetensors import safe_open

    header = check_safetensors_header(path)
    if any(v.get("dtype") == "BF16" for v in header.values() if isinstance(v, dict)):
        return _read_safetensors_raw(path, header, skip)  # numpy has no bfloat16: by hand
    try:
        with safe_open(path, framework="numpy") as f:
            return {n: f.get_tensor(n) for n in f.keys() if not skip(n)}  # noqa: SIM118
    except Exception as e:  # noqa: BLE001 - SafetensorError and friends: a damaged file
        raise _safetensors_error(path, f"{type(e).__name__}: {limits.short(e, 120)}") from None


def _read_safetensors_raw(path: str, header: dict, skip: Callable[[str], bool]) -> dict:
    import ml_dtypes

    dtypes = {"BF16": ml_dtypes.bfloat16, "F16": np.float16, "F32": np.float32}
    dtypes |= {"F64": np.float64, "I64": np.int64, "I32": np.int32}
    out = {}
    with limits.open_regular(path, "Checkpoint") as f:
        start = 8 + int.from_bytes(f.read(8), "little")
        for name, info in header.items():
            if name == "__metadata__" or skip(name):
                continue
            if info["dtype"] not in dtypes:
                raise _safetensors_error(path, f"tensor '{name}' has dtype {info['dtype']}")
            begin, end = info["data_offsets"]
            f.seek(start + begin)
            arr = np.frombuffer(f.read(end - begin), dtype=dtypes[info["dtype"]])
            out[name] = arr.reshape(info["shape"])
    return out


LEGACY_TORCH_FIX = (
    "python -c \"import torch; torch.save(torch.load('IN', weights_only=True), 'OUT.pth')\""
)


def _refuse_legacy_torch(path: str) -> dict[str, np.ndarray]:
    """Legacy (non-zip) torch.save files are refused unread: their storages declare sizes that
    torch allocates before reading the data, and there is no member size to bound them by."""
    raise CheckpointError(
        f"{limits.short(path)} is a legacy (non-zip) torch.save file, which is not read (it "
        "declares storage sizes that cannot be checked before allocating them). Convert it once "
        f"where you trust the file: {LEGACY_TORCH_FIX} writes a zip-format OUT.pth, which is read."
    )


def _state_dict(path: str, state: object) -> dict:
    """The state dict inside a training checkpoint's 'state_dict' / 'model' wrapper, if any."""
    for wrapper in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(wrapper), dict):
            state = state[wrapper]
    if not isinstance(state, dict):
        raise CheckpointError(f"{path} holds a {type(state).__name__}, not a state dict.")
    return state


def _read_torch_zip(path: str) -> dict[str, np.ndarray]:
    """A zip-format torch.save state dict through the restricted reader (torch not needed)."""
    state = _state_dict(path, safe_pickle.load_torch_zip(path))
    return {k.removeprefix("module."): v for k, v in state.items() if isinstance(v, np.ndarray)}


def _read_npz(path: str, skip: Callable[[str], bool] = lambda n: False) -> dict:
    """Members checked by their headers (object arrays refused, sizes within limits.budget);
    the members `skip` names are never inflated."""
    try:
        return limits.read_npz(path, skip, "Checkpoint")
    except ValueError as e:
        raise CheckpointError(str(e)) from None


READERS = {"npz": _read_npz, "npy": safe_pickle.load_npy_dict}
READERS |= {"torchscript": safe_pickle.load_torchscript}
READERS |= {
    "safetensors": _read_safetensors,
    "torch": _refuse_legacy_torch,
    "torch_zip": _read_torch_zip,
}


def resolve_path(path: str) -> str:
    """The checkpoint file; a Hugging Face model folder resolves to its model.safetensors."""
    if not path:
        raise FileNotFoundError("No checkpoint given: set --config.pretrained_ckpt=PATH.")
    if os.path.isdir(path) and os.path.isfile(os.path.join(path, "model.safetensors")):
        return os.path.join(path, "model.safetensors")
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"Pretrained checkpoint {path} does not exist; check --config.pretrained_ckpt "
            "(`python -m universal_embedding.download_models` fetches the AugReg and CLIP files; "
            "docs/using-a-model.md)."
        )
    return path


SKIPPING = ("npz", "safetensors")  # containers whose tensors are read one by one


def read_checkpoint(
    path: str, skip: Callable[[str], bool] = lambda name: False
) -> tuple[str, dict[str, np.ndarray]]:
    """(container, flat name -> array) with floating arrays as float32; in .npz and
    safetensors files the tensors `skip` names (those a format ignores) are never read."""
    container = detect_container(path)
    reader = READERS[container]
    arrays = reader(path, skip) if container in SKIPPING else reader(path)
    return container, _as_float32(path, arrays)
