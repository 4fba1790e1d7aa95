"""Bounded reading of untrusted files: what every reader checks before it opens or allocates.

- `open_regular` / `regular_file`: a directory, FIFO, device or socket is refused before it is
  read (a FIFO is opened non-blocking, so naming one never hangs).
- `inside`: a path (after symlinks and `..`) must stay inside the folder the user named.
- `check_budget`: the bytes a reader is about to allocate for a file must be at most
  `inflate_ratio()` times the file's size plus INFLATE_SLACK (UE_MAX_INFLATE_RATIO raises it):
  a small compressed file never inflates to gigabytes.
- `npz_headers` / `read_npz`: a `.npz`'s members are judged by their zip and `.npy` headers
  (declared sizes, dtype) before any is inflated; members a caller skips are never inflated.
- `read_json_object`: a JSON object file (config.json and the like) of bounded size, its
  errors naming the file.
- `short`: long names cut in messages.

docs/security.md lists every reader's checks and these limits.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import stat
import zipfile
from collections.abc import Callable, Iterable, Iterator

import numpy as np

DEFAULT_INFLATE_RATIO = 20  # float weights and descriptors deflate by ~1.1x; zeros by ~1000x
INFLATE_SLACK = 64 << 20  # bytes any file may inflate to regardless of its size
MAX_JSON_BYTES = 64 << 20  # config.json, meta.json, info files are far smaller
MAX_NAME_CHARS = 200  # a name longer than this is cut in messages


class LimitError(ValueError):
    """A file declares more than a reader's documented limit allows; nothing was allocated."""


def short(name: object, limit: int = MAX_NAME_CHARS) -> str:
    """`name` as text, cut in the middle to at most `limit` characters."""
    text = str(name)
    if len(text) <= limit:
        return text
    keep = (limit - 5) // 2
    return f"{text[:keep]}[...]{text[-keep:]}"


def inflate_ratio() -> float:
    """The allowed bytes-allocated / file-size ratio (UE_MAX_INFLATE_RATIO, default 20)."""
    text = os.environ.get("UE_MAX_INFLATE_RATIO", "")
    try:
        ratio = float(text) if text else DEFAULT_INFLATE_RATIO
    except ValueError:
        raise ValueError(f"UE_MAX_INFLATE_RATIO={short(text)!r} is not a number.") from None
    if not ratio > 0:
        raise ValueError(f"UE_MAX_INFLATE_RATIO={text!r} must be positive.")
    return ratio


def budget(file_size: int) -> int:
    """The most bytes a reader may allocate for a file of `file_size` bytes."""
    return int(inflate_ratio() * file_size) + INFLATE_SLACK


def check_budget(path: str, declared: int, file_size: int, what: str = "its contents") -> None:
    """LimitError when `declared` bytes exceed budget(file_size)."""
    limit = budget(file_size)
    if declared > limit:
        raise LimitError(
            f"{short(path)}: {what} declare(s) {declared:,} bytes, more than "
            f"{inflate_ratio():g} x the file's {file_size:,} bytes + {INFLATE_SLACK >> 20} MiB; "
            "refused before reading (a damaged or hostile file). If it is genuine, raise "
            "UE_MAX_INFLATE_RATIO."
        )


# ----------------------------------------------------------------------------- files


def _kind(mode: int) -> str:
    for test, name in (
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISFIFO, "a FIFO (named pipe)"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
    ):
        if test(mode):
            return name
    return "not a regular file"


def _refuse_special(path: str, mode: int, what: str) -> None:
    if not stat.S_ISREG(mode):
        err = IsADirectoryError if stat.S_ISDIR(mode) else OSError
        raise err(f"{what} {short(path)} is {_kind(mode)}, not a regular file; refused unread.")


def regular_file(path: str, what: str = "file") -> str:
    """`path` when it is an existing regular file (symlinks followed); else one-line error."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise FileNotFoundError(f"{what} {short(path)} does not exist.") from None
    _refuse_special(path, st.st_mode, what)
    return path


def open_regular(path: str, what: str = "file", mode: str = "rb"):
    """`open(path, mode)` for reading a regular file; a FIFO/device/directory is refused without
    blocking (the file is opened O_NONBLOCK and checked with fstat before any read)."""
    regular_file(path, what)
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    try:
        _refuse_special(path, os.fstat(fd).st_mode, what)  # swapped since the stat above
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        return open(fd, mode, **({} if "b" in mode else {"encoding": "utf-8"}))
    except BaseException:
        os.close(fd)
        raise


def inside(base: str, path: str, what: str = "path", allow: bool = False, hint: str = "") -> str:
    """The real path of `path` (relative names are taken inside `base`), refused in one line
    when it leads outside `base` through a symlink, `..` or an absolute name; `allow` lets it."""
    full = os.path.realpath(os.path.join(base, path))
    root = os.path.realpath(base)
    if not allow and os.path.commonpath([root, full]) != root:
        raise ValueError(
            f"{what} {short(path)} leads outside {short(base)} (to {short(full)}, through a "
            f"symlink, '..' or an absolute name); refused.{' ' + hint if hint else ''}"
        )
    return full


def read_json_object(path: str, what: str = "JSON file", max_bytes: int = MAX_JSON_BYTES) -> dict:
    """The JSON object in `path`; one-line errors naming the file for a special file, a file
    over max_bytes, invalid or too deeply nested JSON, or JSON that is not an object."""
    with open_regular(path, what) as f:
        raw = f.read(max_bytes + 1)
    if len(raw) > max_bytes:
        raise LimitError(f"{what} {short(path)} is larger than {max_bytes:,} bytes; not read.")
    try:
        value = json.loads(raw.decode("utf-8"))
    except (ValueError, RecursionError) as e:  # JSONDecodeError, UnicodeDecodeError, nesting
        why = "nested too deeply" if isinstance(e, RecursionError) else short(e, 160)
        raise ValueError(
            f"{what} {short(path)} is not valid JSON ({why}); fix or remove it."
        ) from None
    if not isinstance(value, dict):
        raise ValueError(
            f"{what} {short(path)} holds a JSON {type(value).__name__}, not an object."
        )
    return value


# ----------------------------------------------------------------------------- .npz


@dataclasses.dataclass(frozen=True)
class NpyMember:
    """A `.npz` member as its headers declare it (nothing inflated)."""

    name: str  # without '.npy'
    info: zipfile.ZipInfo
    shape: tuple[int, ...]
    fortran: bool
    dtype: np.dtype
    header_bytes: int

    @property
    def nbytes(self) -> int:
        return (
            int(np.prod(self.shape, dtype=np.int64)) * self.dtype.itemsize
            if self.dtype.itemsize
            else 0
        )


def _npy_header(f, path: str, name: str) -> tuple[tuple[int, ...], bool, np.dtype, int]:
    try:
        version = np.lib.format.read_magic(f)
        reader = (
            np.lib.format.read_array_header_1_0
            if version == (1, 0)
            else np.lib.format.read_array_header_2_0
        )
        shape, fortran, dtype = reader(f, max_header_size=100_000)
    except (ValueError, EOFError, zipfile.BadZipFile, OSError) as e:
        raise ValueError(
            f"{short(path)}: array '{short(name)}' has no valid .npy header ({short(e, 120)})."
        ) from None
    return tuple(shape), bool(fortran), dtype, f.tell()


@contextlib.contextmanager
def open_zip(path: str, what: str = "file") -> Iterator[zipfile.ZipFile]:
    """A ZipFile of a regular file, or one line naming it (not a zip, damaged directory)."""
    with open_regular(path, what) as f:
        try:
            z = zipfile.ZipFile(f)
        except (zipfile.BadZipFile, OSError, ValueError, EOFError) as e:
            raise ValueError(f"{what} {short(path)} is not a readable zip archive ({e}).") from None
        with z:
            yield z


def npz_headers(
    z: zipfile.ZipFile, path: str, names: Iterable[str] | None = None
) -> list[NpyMember]:
    """The members (all `.npy` ones, or `names`) as their headers declare them; refuses Python
    object arrays, and a member whose zip size disagrees with its `.npy` header (truncated or
    crafted), before inflating anything but the headers."""
    wanted = None if names is None else set(names)
    out = []
    for info in z.infolist():
        if not info.filename.endswith(".npy"):
            continue
        name = info.filename[:-4]
        if wanted is not None and name not in wanted:
            continue
        with z.open(info) as f:
            shape, fortran, dtype, header = _npy_header(f, path, name)
        member = NpyMember(name, info, shape, fortran, dtype, header)
        if dtype.hasobject:
            raise ValueError(
                f"'{short(path)}', key '{short(name)}': holds Python objects (a pickle), not "
                "plain numbers; refused without reading it. Save a float array."
            )
        if info.file_size != header + member.nbytes:
            raise ValueError(
                f"{short(path)}: array '{short(name)}' is truncated or inconsistent: its header "
                f"declares shape {shape} {dtype} ({member.nbytes:,} bytes) but the member holds "
                f"{info.file_size - header:,}; write the file again."
            )
        out.append(member)
    return out


def read_member(z: zipfile.ZipFile, member: NpyMember, path: str) -> np.ndarray:
    """The array of a checked member (its declared size already budgeted)."""
    try:
        with z.open(member.info) as f:
            return np.lib.format.read_array(f, allow_pickle=False)
    except (zipfile.BadZipFile, EOFError, ValueError, OSError) as e:
        raise ValueError(
            f"{short(path)}: array '{short(member.name)}' is truncated or damaged "
            f"({short(e, 120)}); write the file again."
        ) from None


def read_npz(
    path: str, skip: Callable[[str], bool] = lambda name: False, what: str = "file"
) -> dict[str, np.ndarray]:
    """{name: array} of a `.npz` with every member's declared size checked first: the members
    read (those `skip` does not name) may allocate at most budget(file size) bytes in all."""
    size = os.path.getsize(regular_file(path, what))
    with open_zip(path, what) as z:
        members = [m for m in npz_headers(z, path) if not skip(m.name)]
        check_budget(path, sum(m.nbytes for m in members), size, f"{len(members)} arrays")
        return {m.name: read_member(z, m, path) for m in members}


def check_zip_budget(
    path: str, what: str = "file", skip: Callable[[str], bool] = lambda n: False
) -> None:
    """A zip archive's members (not skipped) may inflate to at most budget(file size) bytes."""
    size = os.path.getsize(path)
    with open_zip(path, what) as z:
        infos = [i for i in z.infolist() if not skip(i.filename)]
    check_budget(path, sum(i.file_size for i in infos), size, f"{len(infos)} archive members")


def read_zip_member(z: zipfile.ZipFile, name: str, path: str, limit: int) -> bytes:
    """The bytes of member `name`, refused when it declares more than `limit` bytes."""
    info = z.getinfo(name)
    if info.file_size > limit:
        raise LimitError(
            f"{short(path)}: member '{short(name)}' declares {info.file_size:,} bytes, over the "
            f"{limit:,} left for this file; refused before inflating. Raise UE_MAX_INFLATE_RATIO "
            "if the file is genuine."
        )
    try:
        return z.read(info)
    except (zipfile.BadZipFile, EOFError, OSError) as e:
        raise ValueError(f"{short(path)}: member '{short(name)}' is damaged ({e}).") from None
