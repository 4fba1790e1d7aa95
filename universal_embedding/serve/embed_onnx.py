"""Embed images with an exported ONNX model: numpy, Pillow, onnxruntime (and simplejpeg).

`python -m universal_embedding.export --workdir=W --out=DIR --format=onnx` writes this file as
DIR/embed_onnx.py beside DIR/model.onnx; it imports nothing from universal_embedding, so DIR
works on its own with `pip install numpy pillow onnxruntime simplejpeg`:

    import embed_onnx                              # DIR on sys.path
    vectors = embed_onnx.embed(["a.jpg", "b.png"], batch_size=32)   # float32 [2, d], unit rows

    python DIR/embed_onnx.py a.jpg b.png --out vectors.npy [--device cpu|cuda]

The preprocessing is the framework's evaluation transform (docs/evaluation.md): decode to RGB,
resize (bilinear, half-pixel centres, no antialiasing) so the shorter side is image_size and the
longer int(long / short * image_size), truncated, then the centre image_size square. The model
takes those float32 pixels in 0..255 and normalises them itself. Decoding gives TensorFlow's
pixels: JPEGs through simplejpeg's libjpeg-turbo with the fast integer IDCT and smooth chroma
upsampling (TensorFlow's defaults; Pillow's accurate IDCT would be a few grey levels off), other
files through Pillow, as the framework re-encodes them (docs/using-a-model.md#onnx).
Untrusted files are checked before decoding: at most MAX_IMAGE_BYTES bytes, at most Pillow's
MAX_IMAGE_PIXELS pixels.
"""

from __future__ import annotations

import argparse
import functools
import io
import os
import sys
import warnings
from collections.abc import Iterable, Sequence

import numpy as np
import onnxruntime as ort
import simplejpeg
from PIL import Image

MODEL = os.path.join(os.path.dirname(os.path.abspath(__file__)), "model.onnx")
MAX_IMAGE_BYTES = 100_000_000  # as the framework's --max_image_bytes default
JPEG_MAGIC = b"\xff\xd8\xff"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


# ------------------------------------------------------------------ decoding
def read_image_bytes(path: str, max_bytes: int = MAX_IMAGE_BYTES) -> bytes:
    """The bytes of an image file of at most max_bytes (ValueError naming the file if not)."""
    size = os.path.getsize(path)
    if size > max_bytes:
        raise ValueError(f"{path}: {size} bytes, over the limit of {max_bytes}.")
    with open(path, "rb") as f:
        raw = f.read(min(size, max_bytes) + 1)
    if len(raw) > max_bytes:  # the file grew since its size was read
        raise ValueError(f"{path}: more than {max_bytes} bytes, over the limit.")
    return raw


class TooManyPixels(ValueError):
    """An image over Pillow's MAX_IMAGE_PIXELS, refused before its pixels are decoded."""


def check_pixels(width: int, height: int) -> None:
    """TooManyPixels when width x height is over Pillow's MAX_IMAGE_PIXELS (decompression
    bombs)."""
    limit = Image.MAX_IMAGE_PIXELS
    if limit and width * height > limit:
        raise TooManyPixels(f"{width}x{height} pixels, over Pillow's MAX_IMAGE_PIXELS={limit}.")


def decode_jpeg_fast(raw: bytes) -> np.ndarray:
    """uint8 [H, W, 3] with libjpeg-turbo's fast integer IDCT and smooth upsampling, as
    TensorFlow's default decode_jpeg (CMYK: R = C * K // 255, and so on, as TensorFlow)."""
    height, width, colorspace, _ = simplejpeg.decode_jpeg_header(raw)
    check_pixels(width, height)
    if colorspace == "CMYK":
        cmyk = simplejpeg.decode_jpeg(raw, "CMYK", fastdct=True, fastupsample=False)
        return (cmyk[..., :3].astype(np.uint16) * cmyk[..., 3:] // 255).astype(np.uint8)
    if colorspace == "Gray":
        gray = simplejpeg.decode_jpeg(raw, "Gray", fastdct=True, fastupsample=False)
        return np.repeat(gray.reshape(height, width, 1), 3, axis=2)
    return simplejpeg.decode_jpeg(raw, "RGB", fastdct=True, fastupsample=False)


def decode_pillow(raw: bytes) -> np.ndarray:
    """uint8 [H, W, 3] through Pillow: alpha dropped, grayscale and palettes expanded; 16-bit
    grayscale PNGs keep their high byte, as TensorFlow's PNG decoder does."""
    with warnings.catch_warnings():  # the size is checked here, not warned about
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        im = Image.open(io.BytesIO(raw))
    with im:
        check_pixels(*im.size)
        if raw.startswith(PNG_MAGIC) and im.mode.startswith("I;16"):
            high = (np.asarray(im).astype(np.uint16) >> 8).astype(np.uint8)
            return np.repeat(high[:, :, None], 3, axis=2)
        return np.asarray(im.convert("RGB"), dtype=np.uint8)


def decode(raw: bytes) -> np.ndarray:
    """Encoded image bytes -> uint8 [H, W, 3], the pixels the framework's evaluation decodes."""
    try:
        if raw.startswith(JPEG_MAGIC):
            return decode_jpeg_fast(raw)
        return decode_pillow(raw)
    except TooManyPixels:
        raise
    except Exception as e:  # decoders raise many types for bad data
        raise ValueError(f"undecodable image ({type(e).__name__}: {e})") from e


# ------------------------------------------------------------------ geometry
def eval_size(height: int, width: int, image_size: int) -> tuple[int, int]:
    """The shorter side (the height when square) becomes image_size, the longer
    int(long / short * image_size), truncated in float64: 451 x 300 at 224 -> (336, 224)."""
    if height <= width:
        return image_size, int(width / height * image_size)
    return int(height / width * image_size), image_size


def _axis_weights(out_size: int, in_size: int, start: int, count: int):
    """(lower, upper, lerp) of output positions start..start+count along one axis, in float32
    with half-pixel centres: source = (i + 0.5) * in / out - 0.5."""
    scale = np.float32(in_size) / np.float32(out_size)
    pos = (np.arange(start, start + count, dtype=np.float32) + np.float32(0.5)) * scale
    pos = pos - np.float32(0.5)
    floor = np.floor(pos)
    lower = np.maximum(floor.astype(np.int64), 0)
    upper = np.minimum(np.ceil(pos).astype(np.int64), in_size - 1)
    return lower, upper, (pos - floor).astype(np.float32)


def eval_pixels(image: np.ndarray, image_size: int) -> np.ndarray:
    """uint8 [H, W, 3] -> float32 [S, S, 3] in 0..255: bilinear resize to eval_size (no
    antialiasing), centre crop; only the cropped pixels are computed."""
    height, width = image.shape[:2]
    new_h, new_w = eval_size(height, width, image_size)
    top, left = (new_h - image_size) // 2, (new_w - image_size) // 2
    y0, y1, ly = _axis_weights(new_h, height, top, image_size)
    x0, x1, lx = _axis_weights(new_w, width, left, image_size)
    pixels = image.astype(np.float32)
    rows0, rows1 = pixels[y0], pixels[y1]
    lx = lx[None, :, None]
    top_row = rows0[:, x0] + (rows0[:, x1] - rows0[:, x0]) * lx
    bottom_row = rows1[:, x0] + (rows1[:, x1] - rows1[:, x0]) * lx
    return top_row + (bottom_row - top_row) * ly[:, None, None]


# ------------------------------------------------------------------ the model
def providers_for(device: str | None) -> list[str]:
    """onnxruntime providers: 'cpu', 'cuda' (ValueError if this onnxruntime has none) or None
    (CUDA when available, else CPU)."""
    available = ort.get_available_providers()
    if device in (None, "auto"):
        return [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available]
    name = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider"}.get(device)
    if name is None:
        raise ValueError(f"Unknown device '{device}': use 'cpu', 'cuda' or None.")
    if name not in available:
        raise ValueError(f"onnxruntime has no {name} here (it has {available}); for a GPU "
                         f"install onnxruntime-gpu, or use device='cpu'.")  # fmt: skip
    return [name]


class OnnxEmbedder:
    """An exported model.onnx: `embed(paths)` -> float32 [n, d]; image_size read from it."""

    def __init__(self, model: str = MODEL, device: str | None = None):
        self.session = ort.InferenceSession(model, providers=providers_for(device))
        inp = self.session.get_inputs()[0]
        self.input_name = inp.name
        self.image_size = int(inp.shape[1])
        self.dim = int(self.session.get_outputs()[0].shape[1])

    def preprocess(self, item) -> np.ndarray:
        """A path or encoded bytes -> float32 [S, S, 3] model input."""
        raw = item if isinstance(item, bytes) else read_image_bytes(os.fspath(item))
        try:
            return eval_pixels(decode(raw), self.image_size)
        except ValueError as e:
            raise ValueError(f"{item if not isinstance(item, bytes) else 'image'}: {e}") from e

    def embed(self, paths: Iterable, batch_size: int = 32) -> np.ndarray:
        """float32 [n, d] (unit rows) for image paths or encoded bytes, in order."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}.")
        items = [paths] if isinstance(paths, (str, bytes, os.PathLike)) else list(paths)
        rows = [np.zeros((0, self.dim), np.float32)]
        for start in range(0, len(items), batch_size):
            batch = np.stack([self.preprocess(p) for p in items[start : start + batch_size]])
            rows.append(self.session.run(None, {self.input_name: batch})[0].astype(np.float32))
        return np.concatenate(rows)


@functools.lru_cache(maxsize=4)
def _embedder(model: str, device: str | None) -> OnnxEmbedder:
    return OnnxEmbedder(model, device)


def embed(
    paths: Iterable, batch_size: int = 32, model: str = MODEL, device: str | None = None
) -> np.ndarray:
    """float32 [n, d], unit rows: the embeddings of image files (or encoded bytes), in order."""
    return _embedder(os.path.abspath(model), device).embed(paths, batch_size=batch_size)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Embed image files with an exported model.")
    parser.add_argument("images", nargs="+", help="image files (JPEG, PNG, ...)")
    parser.add_argument("--out", required=True, help="output .npy: float32 [n, d]")
    parser.add_argument("--model", default=MODEL, help="model.onnx (default: beside this file)")
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--device", default=None, choices=["cpu", "cuda"])
    args = parser.parse_args(argv)
    try:
        vectors = embed(args.images, args.batch_size, args.model, args.device)
    except (OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    np.save(args.out, vectors)
    print(f"Embeddings {vectors.shape[0]} x {vectors.shape[1]}: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
