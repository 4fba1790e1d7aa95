"""Image files: rp2k `#U<hex>` names, formats TensorFlow decodes, lossless PNG re-encoding, and
the checks every untrusted image file gets: where it is (inside its folder), how big it is
(`max_bytes`, checked before reading) and what its header says (an image Pillow identifies, with
at most Pillow's MAX_IMAGE_PIXELS pixels). Folder scans name and check files without reading them.
"""

from __future__ import annotations

import concurrent.futures
import io
import json
import os
import re
import stat
from collections.abc import Sequence
from typing import BinaryIO

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402
from PIL import Image  # noqa: E402

# Kept byte for byte: the formats every TensorFlow version decodes. Others are re-encoded as PNG.
KEEP_MAGIC = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n")
_ESCAPE_RE = re.compile(r"#U([0-9a-fA-F]{4,6})")
DEFAULT_MAX_IMAGE_BYTES = 100_000_000  # 100 MB; UnED images are well under 1 MB


def hide_gpus_from_tensorflow() -> None:
    """Make TensorFlow never take a GPU (JAX owns them); a no-op once TF has initialised."""
    try:
        tf.config.set_visible_devices([], "GPU")
    except RuntimeError:  # devices already initialised: visibility can no longer change
        pass


hide_gpus_from_tensorflow()


class BadImageError(ValueError):
    """An image file that neither TensorFlow nor Pillow can decode."""


def escape_name(path: str, upper: bool = False) -> str:
    """rp2k on-disk spelling: every non-ASCII character as `#U` + hex code point."""
    fmt = "#U{:04X}" if upper else "#U{:04x}"
    return "".join(c if ord(c) < 128 else fmt.format(ord(c)) for c in path)


def unescape_name(path: str) -> str:
    """Inverse of escape_name: `#U4e2d` -> the character it names."""
    return _ESCAPE_RE.sub(lambda m: chr(int(m.group(1), 16)), path)


def resolve_path(files_dir: str, rel_path: str) -> str | None:
    """The existing file for an info-file path: as written, `#U`-escaped or unescaped; else None."""
    if rel_path.isascii() and "#U" not in rel_path:  # the common case: one name to try
        full = os.path.join(files_dir, rel_path)
        return full if os.path.isfile(full) else None
    seen = []
    for name in (
        rel_path,
        escape_name(rel_path),
        escape_name(rel_path, True),
        unescape_name(rel_path),
    ):
        if name not in seen:
            seen.append(name)
            full = os.path.join(files_dir, name)
            if os.path.isfile(full):
                return full
    return None


def _tf_decodes(raw: bytes) -> bool:
    try:
        tf.io.decode_image(raw, channels=3, expand_animations=False)
    except (tf.errors.InvalidArgumentError, tf.errors.UnknownError, ValueError):
        return False
    return True


def _reencode_png(raw: bytes) -> bytes:
    try:
        with Image.open(io.BytesIO(raw)) as im:
            im.load()
            rgb = im.convert("RGB")
    except Exception as e:  # Pillow raises many types for bad data
        raise BadImageError(f"undecodable image ({type(e).__name__}: {e})") from e
    out = io.BytesIO()
    rgb.save(out, format="PNG")
    return out.getvalue()


def tf_compatible_bytes(raw: bytes) -> bytes:
    """`raw` itself if it is a JPEG/PNG TensorFlow decodes, else a lossless RGB PNG re-encoding."""
    if not raw:
        raise BadImageError("empty file")
    if raw.startswith(KEEP_MAGIC) and _tf_decodes(raw):
        return raw
    return _reencode_png(raw)


def fast_compatible_bytes(raw: bytes) -> bytes:
    """tf_compatible_bytes without the test decode of JPEG/PNG (cheap; for use inside tf.data)."""
    return raw if raw.startswith(KEEP_MAGIC) else _reencode_png(raw)


def downscaled_bytes(raw: bytes, max_side: int, jpeg_quality: int = 90) -> bytes:
    """`raw` itself when its long side is <= max_side, else the image resized (aspect kept,
    antialiased) to long side max_side and re-encoded (JPEG stays JPEG at `jpeg_quality`,
    anything else becomes PNG)."""
    try:
        with Image.open(io.BytesIO(raw)) as im:
            w, h = im.size
            if max(w, h) <= max_side:
                return raw
            scale = max_side / max(w, h)
            size = (max(1, round(w * scale)), max(1, round(h * scale)))
            fmt = "JPEG" if im.format == "JPEG" else "PNG"
            if fmt == "JPEG":
                im.draft("RGB", size)  # libjpeg DCT scaling to >= size: faster, then resample
            small = im.convert("RGB").resize(size, Image.Resampling.BICUBIC)
    except Exception as e:  # Pillow raises many types for bad data
        raise BadImageError(f"undecodable image ({type(e).__name__}: {e})") from e
    out = io.BytesIO()
    small.save(out, format=fmt, **({"quality": jpeg_quality} if fmt == "JPEG" else {}))
    return out.getvalue()


def outside_dir(files_dir: str, rel_paths: Sequence[str]) -> list[tuple[int, str]]:
    """(index, path) of info-file paths that lead outside files_dir (`..`, absolute paths, also
    once `#U`-unescaped, and symlinks: a file or folder inside files_dir that links outside).
    Each folder's real path is resolved once; a file costs one lstat."""
    root = os.path.realpath(files_dir)
    prefix = root.rstrip(os.sep) + os.sep
    folders: dict[str, str] = {}
    bad = []
    for i, rel in enumerate(rel_paths):
        for name in (rel, unescape_name(rel)):
            full = _real_path(os.path.join(root, name), folders)
            if full != root and not full.startswith(prefix):
                bad.append((i, rel))
                break
    return bad


def _real_path(full: str, folders: dict[str, str]) -> str:
    """os.path.realpath(full), its folder's real path taken from (and added to) `folders`."""
    folder, base = os.path.split(full)
    if base in ("", ".", "..") or os.path.islink(full):
        return os.path.realpath(full)
    if folder not in folders:
        folders[folder] = os.path.realpath(folder)
    return os.path.join(folders[folder], base)


def repeated_paths(entries: Sequence[dict]) -> list[tuple[int, int, str]]:
    """(first index, repeat index, path) of info-file entries naming a path already listed."""
    first: dict[str, int] = {}
    out = []
    for i, entry in enumerate(entries):
        path = entry["path"]
        if path in first:
            out.append((first[path], i, path))
        else:
            first[path] = i
    return out


def read_limited(f: BinaryIO, max_bytes: int) -> bytes:
    """At most max_bytes from f (raises, having read max_bytes + 1, if there is more).

    Reads the file's size + 1, not max_bytes + 1: a read of n bytes allocates n first.
    """
    try:
        size = os.fstat(f.fileno()).st_size
    except (OSError, AttributeError, io.UnsupportedOperation):
        size = max_bytes
    raw = f.read(min(size, max_bytes) + 1)
    if size < len(raw) <= max_bytes:  # the file grew since its size was read
        raw += f.read(max_bytes + 1 - len(raw))
    if len(raw) > max_bytes:
        raise BadImageError(f"more than {max_bytes} bytes, over --max_image_bytes={max_bytes}")
    return raw


def _check_size(full: str, max_bytes: int) -> int:
    st = os.stat(full)
    if not stat.S_ISREG(st.st_mode):
        raise BadImageError("not a regular file")
    if st.st_size > max_bytes:
        raise BadImageError(f"{st.st_size} bytes, over --max_image_bytes={max_bytes}")
    if st.st_size == 0:
        raise BadImageError("empty file")
    return st.st_size


def _check_header(f: BinaryIO) -> None:
    """Pillow identifies an image from the first bytes (pixels are not decoded)."""
    head = f.read(16)
    f.seek(0)
    try:
        with Image.open(f) as im:
            width, height = im.size
    except Exception as e:  # Pillow raises many types for what is not an image
        if isinstance(e, Image.DecompressionBombError):
            raise BadImageError(f"too many pixels ({e})") from None
        raise BadImageError(f"not an image file (starts with {head!r})") from None
    finally:
        f.seek(0)
    limit = Image.MAX_IMAGE_PIXELS
    if limit and width * height > limit:
        raise BadImageError(f"{width}x{height} pixels, over Pillow's MAX_IMAGE_PIXELS={limit}")


def check_image_bytes(raw: bytes, max_bytes: int = DEFAULT_MAX_IMAGE_BYTES) -> bytes:
    """`raw` after the checks a file gets: at most max_bytes, and a header Pillow identifies as
    an image of at most MAX_IMAGE_PIXELS pixels (BadImageError otherwise)."""
    if not raw:
        raise BadImageError("empty image bytes")
    if len(raw) > max_bytes:
        raise BadImageError(f"{len(raw)} bytes, over --max_image_bytes={max_bytes}")
    _check_header(io.BytesIO(raw))
    return raw


def check_pixel_count(height: int, width: int) -> None:
    """BadImageError when an image array has more pixels than Pillow's MAX_IMAGE_PIXELS."""
    limit = Image.MAX_IMAGE_PIXELS
    if limit and height * width > limit:
        raise BadImageError(f"{width}x{height} pixels, over Pillow's MAX_IMAGE_PIXELS={limit}")


def check_image_file(full: str, max_bytes: int = DEFAULT_MAX_IMAGE_BYTES) -> str:
    """'' for a regular file within max_bytes whose header is an image's, else why not; the
    file is not read past its header."""
    try:
        _check_size(full, max_bytes)
        with open(full, "rb") as f:
            _check_header(f)
    except (OSError, BadImageError) as e:
        return str(e)
    return ""


def read_image_file(full: str, max_bytes: int = DEFAULT_MAX_IMAGE_BYTES) -> bytes:
    """The bytes of an image file, after checking its size and header (BadImageError if bad)."""
    _check_size(full, max_bytes)
    with open(full, "rb") as f:
        _check_header(f)
        return read_limited(f, max_bytes)


def load_image_bytes(
    files_dir: str, rel_path: str, max_bytes: int = DEFAULT_MAX_IMAGE_BYTES, test_decode=True
) -> tuple[bytes | None, str]:
    """(bytes to store, '') for a good image, (None, reason) for a missing, oversized, or
    undecodable one. test_decode=False: JPEG/PNG bytes are not test-decoded here (the caller
    does it, e.g. decode_check.checked)."""
    full = resolve_path(files_dir, rel_path)
    if full is None:
        return None, f"missing (no {os.path.join(files_dir, rel_path)} nor its #U-escaped name)"
    try:
        raw = read_image_file(full, max_bytes)
        return (tf_compatible_bytes(raw) if test_decode else fast_compatible_bytes(raw)), ""
    except (OSError, BadImageError) as e:
        return None, str(e)


def _walk(base_dir: str) -> tuple[list[str], list[tuple[str, str]]]:
    """(relative file names, [(name, reason)] of folders that could not be listed)."""
    errors: list[tuple[str, str]] = []

    def folder_error(e: OSError) -> None:
        errors.append((os.path.relpath(e.filename, base_dir), f"cannot list folder: {e.strerror}"))

    names = [
        os.path.relpath(os.path.join(root, name), base_dir)
        for root, _, files in os.walk(base_dir, onerror=folder_error)
        for name in files
    ]
    return sorted(names), errors


def _is_utf8(name: str) -> bool:
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:  # undecodable bytes, kept by os.walk as lone surrogates
        return False
    return True


def links_outside(base_dir: str, names: Sequence[str]) -> list[str]:
    """The names (relative to base_dir) whose real path, symlinks resolved, is outside it."""
    root = os.path.realpath(base_dir)
    return [
        n
        for n in names
        if os.path.commonpath([root, os.path.realpath(os.path.join(base_dir, n))]) != root
    ]


def scan_folder(
    base_dir: str, max_bytes: int = DEFAULT_MAX_IMAGE_BYTES
) -> tuple[list[str], list[tuple[str, str]]]:
    """(sorted relative paths of files that look like images, [(path, reason)] of the others).

    Names that are not valid UTF-8 are skipped (reported with surrogate escapes, which
    os.fsencode turns back into the name's bytes); files get check_image_file (size and
    header, never read whole). Decoding is left to the reader of the good ones.
    """
    names, bad = _walk(base_dir)
    named = [n for n in names if _is_utf8(n)]
    bad += [(n, "file name is not valid UTF-8") for n in names if not _is_utf8(n)]
    outside = set(links_outside(base_dir, named))
    named = [n for n in named if n not in outside]
    bad += [(n, f"a symlink leading outside {base_dir}; refused") for n in sorted(outside)]
    with concurrent.futures.ThreadPoolExecutor(min(32, os.cpu_count() or 1)) as pool:
        full = [os.path.join(base_dir, n) for n in named]
        reasons = list(pool.map(lambda p: check_image_file(p, max_bytes), full))
    good = [n for n, why in zip(named, reasons, strict=True) if not why]
    bad += [(n, why) for n, why in zip(named, reasons, strict=True) if why]
    return good, sorted(bad)


def drop_skipped(
    paths: Sequence[str], unreadable: Sequence[tuple[str, str]], skipped: Sequence[tuple[str, str]]
) -> tuple[list[str], list[tuple[str, str]]]:
    """paths without the files skipped while reading them; those join the unreadable ones."""
    gone = {p for p, _ in skipped}
    return [p for p in paths if p not in gone], sorted([*unreadable, *skipped])


def write_unreadable(path: str, unreadable: Sequence[tuple[str, str]]) -> str:
    """One JSON object {"path": ..., "reason": ...} per line (non-UTF-8 names as \\udcXX)."""
    with open(path, "w", encoding="utf-8") as f:
        for rel, reason in unreadable:
            f.write(json.dumps({"path": rel, "reason": reason}) + "\n")
    return path
