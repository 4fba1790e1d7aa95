"""Memory-mapped access to descriptor files: arrays inside an uncompressed .npz (what np.savez,
`knn_main` and `extract_dir_descriptors` write) are read in place, never loaded whole."""

from __future__ import annotations

import os
import struct
import zipfile
from collections.abc import Sequence

import numpy as np

_LOCAL_HEADER = 30  # fixed part of a zip local file header


def npz_member(path: str, name: str) -> np.ndarray:
    """Array `name` of the .npz at `path`, memory-mapped (read-only) when stored uncompressed."""
    with zipfile.ZipFile(path) as z:
        try:
            info = z.getinfo(name + ".npy")
        except KeyError:
            names = [n[:-4] for n in z.namelist() if n.endswith(".npy")]
            held = ", ".join(names)
            raise KeyError(f"{path} has no array '{name}' (it holds: {held}).") from None
        if info.compress_type != zipfile.ZIP_STORED:
            with z.open(info) as f:  # np.savez_compressed: no mapping possible
                return np.lib.format.read_array(f, allow_pickle=False)
    with open(path, "rb") as f:
        f.seek(info.header_offset)
        header = f.read(_LOCAL_HEADER)
        name_len, extra_len = struct.unpack("<HH", header[26:30])
        f.seek(info.header_offset + _LOCAL_HEADER + name_len + extra_len)
        version = np.lib.format.read_magic(f)
        read_header = (
            np.lib.format.read_array_header_1_0
            if version == (1, 0)
            else np.lib.format.read_array_header_2_0
        )
        shape, fortran, dtype = read_header(f)
        offset = f.tell()
    if dtype.hasobject:
        raise ValueError(f"{path}: array '{name}' holds Python objects; refusing to load it.")
    if int(np.prod(shape)) == 0:
        return np.zeros(shape, dtype)
    return np.memmap(path, dtype, "r", offset, shape, order="F" if fortran else "C")


def npz_names(path: str) -> list[str]:
    """Array names of a .npz file."""
    with zipfile.ZipFile(path) as z:
        return [n[:-4] for n in z.namelist() if n.endswith(".npy")]


def open_descriptors(path: str, key: str = "") -> tuple[np.ndarray, Sequence[str] | None, str]:
    """(vectors [n, d] memory-mapped, paths or None, key used) of a descriptor file.

    extract_dir_descriptors files ('descriptors' + 'paths'); knn_main files (one array per
    'domain/split': give `key`, or it is the only one); a bare .npy.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Descriptor file {path} does not exist.")
    if path.endswith(".npy"):
        return np.load(path, mmap_mode="r", allow_pickle=False), None, ""
    if not path.endswith(".npz"):
        raise ValueError(f"{path}: expected a .npz (or .npy) descriptor file.")
    names = npz_names(path)
    if "descriptors" in names and not key:
        paths = npz_member(path, "paths") if "paths" in names else None
        return npz_member(path, "descriptors"), paths, "descriptors"
    if not key:
        if len(names) != 1:
            raise ValueError(
                f"{path} holds several descriptor arrays ({', '.join(names)}): choose one with "
                "--key=<domain/split>."
            )
        key = names[0]
    return npz_member(path, key), None, key


def check_vectors(vectors: np.ndarray, path: str) -> None:
    """A 2-D float array with at least one row, or an error naming the file."""
    if vectors.ndim != 2 or vectors.shape[0] == 0 or vectors.shape[1] == 0:
        raise ValueError(
            f"{path}: descriptors must be a non-empty [n, d] array, got shape {vectors.shape}."
        )
    if vectors.dtype.kind != "f":
        raise ValueError(f"{path}: descriptors must be floating point, got {vectors.dtype}.")
