"""Reading checkpoint files into flat {name: float32 array} dicts.

File containers are told apart by their first bytes: `.npz` (zip of .npy), `.npy` (pickled
dict), TorchScript (zip with constants.pkl), PyTorch (zip with data.pkl, or legacy pickle) and
safetensors (8-byte header length then JSON); a file named `.safetensors` must be one. No code
in a weight file runs: pickles are read by restricted unpicklers (safe_pickle.py; TorchScript
and zip-format torch.save files, without torch) or, for legacy (non-zip) torch pickles only, by
`torch.load(weights_only=True)`.
"""

from __future__ import annotations

import json
import os
import pickle
import zipfile
from collections.abc import Mapping

import numpy as np

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
    with open(path, "rb") as f:
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
        with zipfile.ZipFile(path) as z:
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


def _read_safetensors(path: str) -> dict[str, np.ndarray]:
    from safetensors.numpy import load_file

    try:
        return load_file(path)
    except TypeError:  # bfloat16 tensors: numpy has no such dtype, read them by hand
        return _read_safetensors_raw(path)


def _read_safetensors_raw(path: str) -> dict[str, np.ndarray]:
    import ml_dtypes

    dtypes = {"BF16": ml_dtypes.bfloat16, "F16": np.float16, "F32": np.float32}
    dtypes |= {"F64": np.float64, "I64": np.int64, "I32": np.int32}
    with open(path, "rb") as f:
        header_len = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(header_len))
        data = f.read()
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        start, end = info["data_offsets"]
        arr = np.frombuffer(data[start:end], dtype=dtypes[info["dtype"]])
        out[name] = arr.reshape(info["shape"])
    return out


def _read_torch(path: str) -> dict[str, np.ndarray]:
    try:
        import torch
    except ImportError as e:
        raise ImportError(
            f"{path} is a PyTorch checkpoint and reading it needs torch, which is not installed: "
            "pip install torch (CPU build is enough), or use the .safetensors release."
        ) from e
    try:  # torch's own restricted unpickler: tensors and plain containers only
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        lines = [line.strip() for line in str(e).splitlines() if line.strip()]
        why = next((line for line in lines if "GLOBAL" in line), lines[0] if lines else "")
        raise CheckpointError(
            f"{path}: refused by torch.load(weights_only=True), nothing in it was run ({why}). "
            "Use the original weights or a .safetensors file."
        ) from None
    state = _state_dict(path, state)
    return {
        k.removeprefix("module."): v.detach().to(torch.float32).numpy()
        if v.is_floating_point()
        else v.numpy()
        for k, v in state.items()
        if torch.is_tensor(v)
    }


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


def _read_npz(path: str) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as data:
            return {name: data[name] for name in data.files}
    except ValueError as e:  # object arrays: a pickle inside the zip, never read
        raise CheckpointError(
            f"{path}: refused, an array in it is not plain numbers ({e})."
        ) from None


READERS = {"npz": _read_npz, "npy": safe_pickle.load_npy_dict}
READERS |= {"torchscript": safe_pickle.load_torchscript}
READERS |= {"safetensors": _read_safetensors, "torch": _read_torch, "torch_zip": _read_torch_zip}


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


def read_checkpoint(path: str) -> tuple[str, dict[str, np.ndarray]]:
    """(container, flat name -> array) with floating arrays as float32."""
    container = detect_container(path)
    return container, _as_float32(path, READERS[container](path))
