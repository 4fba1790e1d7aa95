"""Memory-mapped access to descriptor files: arrays inside an uncompressed .npz (what np.savez,
`knn_main` and `extract_dir_descriptors` write) are read in place, never loaded whole."""

from __future__ import annotations

import os
import struct
import zipfile
from collections.abc import Sequence

import numpy as np

from universal_embedding.errors import limits

_LOCAL_HEADER = 30  # fixed part of a zip local file header


def npz_member(path: str, name: str) -> np.ndarray:
    """Array `name` of the .npz at `path`, memory-mapped (read-only) when stored uncompressed.

    Its zip and .npy headers are checked first (limits.npz_headers): a compressed member is
    inflated only within limits.budget of the file's size, a stored one must lie in the file.
    """
    size = os.path.getsize(limits.regular_file(path, "Descriptor file"))
    with limits.open_zip(path, "Descriptor file") as z:
        found = limits.npz_headers(z, path, [name])
        if not found:
            held = ", ".join(limits.short(n, 80) for n in npz_names_of(z))
            raise KeyError(
                f"{limits.short(path)} has no array '{limits.short(name)}' (it holds: {held})."
            )
        member = found[0]
        if member.info.compress_type != zipfile.ZIP_STORED:  # np.savez_compressed: no mapping
            limits.check_budget(path, member.nbytes, size, f"array '{limits.short(name)}'")
            return limits.read_member(z, member, path)
    info = member.info
    with open(path, "rb") as f:
        f.seek(info.header_offset)
        header = f.read(_LOCAL_HEADER)
        name_len, extra_len = struct.unpack("<HH", header[26:30])
    offset = info.header_offset + _LOCAL_HEADER + name_len + extra_len + member.header_bytes
    if offset + member.nbytes > size:
        raise ValueError(
            f"{limits.short(path)}: array '{limits.short(name)}' declares {member.nbytes:,} bytes "
            "past the end of the file (truncated); write the file again."
        )
    if member.nbytes == 0:
        return np.zeros(member.shape, member.dtype)
    order = "F" if member.fortran else "C"
    return np.memmap(path, member.dtype, "r", offset, member.shape, order=order)


def npz_names_of(z: zipfile.ZipFile) -> list[str]:
    """Array names of an open .npz."""
    return [n[:-4] for n in z.namelist() if n.endswith(".npy")]


def npz_names(path: str) -> list[str]:
    """Array names of a .npz file."""
    with limits.open_zip(path, "Descriptor file") as z:
        return npz_names_of(z)


def open_descriptors(path: str, key: str = "") -> tuple[np.ndarray, Sequence[str] | None, str]:
    """(vectors [n, d] memory-mapped, paths or None, key used) of a descriptor file.

    extract_dir_descriptors files ('descriptors' + 'paths'); knn_main files (one array per
    'domain/split': give `key`, or it is the only one); a bare .npy.
    """
    limits.regular_file(path, "Descriptor file")
    if path.endswith(".npy"):
        try:
            return np.load(path, mmap_mode="r", allow_pickle=False), None, ""
        except ValueError as e:  # object arrays, a header declaring more than the file holds
            raise ValueError(
                f"{limits.short(path)}: not a plain numeric .npy array ({e})."
            ) from None
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


CHECK_ROWS = 65536  # rows checked at a time: memory-mapped files are never read whole


def check_vectors(vectors: np.ndarray, path: str) -> None:
    """A non-empty 2-D float array whose rows pass descr_eval's checks (finite, within
    +-MAX_ABS, norm at least MIN_NORM), read in batches; else an error naming file and row."""
    from universal_embedding.knn.descriptors import MIN_NORM, check_numbers

    if vectors.ndim != 2 or vectors.shape[0] == 0 or vectors.shape[1] == 0:
        raise ValueError(
            f"{limits.short(path)}: descriptors must be a non-empty [n, d] array, got shape "
            f"{vectors.shape}."
        )
    if vectors.dtype.kind != "f":
        raise ValueError(
            f"{limits.short(path)}: descriptors must be floating point, got {vectors.dtype}."
        )
    for lo in range(0, len(vectors), CHECK_ROWS):
        rows = np.asarray(vectors[lo : lo + CHECK_ROWS])
        where = f"{limits.short(path)}, rows {lo}..{lo + len(rows) - 1}"
        check_numbers(rows, where)
        short = np.linalg.norm(rows.astype(np.float64), axis=1) < MIN_NORM
        if short.any():
            raise ValueError(
                f"{where}: {int(short.sum())} rows have norm below {MIN_NORM:.0e} (first: row "
                f"{lo + int(np.argmax(short))}); a zero vector has no direction to rank by."
            )
