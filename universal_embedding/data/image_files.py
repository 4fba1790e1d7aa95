"""Image files: rp2k `#U<hex>` names, formats TensorFlow decodes, lossless PNG re-encoding."""

from __future__ import annotations

import io
import os
import re

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402
from PIL import Image  # noqa: E402

# Kept byte for byte: the formats every TensorFlow version decodes. Others are re-encoded as PNG.
_KEEP_MAGIC = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n")
_ESCAPE_RE = re.compile(r"#U([0-9a-fA-F]{4,6})")


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
    if raw.startswith(_KEEP_MAGIC) and _tf_decodes(raw):
        return raw
    return _reencode_png(raw)


def fast_compatible_bytes(raw: bytes) -> bytes:
    """tf_compatible_bytes without the test decode of JPEG/PNG (cheap; for use inside tf.data)."""
    return raw if raw.startswith(_KEEP_MAGIC) else _reencode_png(raw)


def load_image_bytes(files_dir: str, rel_path: str) -> tuple[bytes | None, str]:
    """(bytes to store, '') for a good image, (None, reason) for a missing or undecodable one."""
    full = resolve_path(files_dir, rel_path)
    if full is None:
        return None, f"missing (no {os.path.join(files_dir, rel_path)} nor its #U-escaped name)"
    try:
        with open(full, "rb") as f:
            return tf_compatible_bytes(f.read()), ""
    except (OSError, BadImageError) as e:
        return None, str(e)
