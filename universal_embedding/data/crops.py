"""Final training crops decoded from only the JPEG pixels they need (docs/uned-benchmark.md §4).

The geometry is the spec's (resize to a square, random crop, flip), computed as bilinear sample
positions in the original image, the same positions `tf.image.resize` + slicing use
(half-pixel centres, edge clamping). Then:
- crop-aware decode: `decode_and_crop_jpeg` decodes only the window around those positions;
- reduced-size decode (optional): libjpeg's DCT-domain downscaling by r in {2, 4, 8}, the
  largest r with short side // r >= the resize target, so bilinear never upsamples; the
  sample positions are mapped into the r-times smaller image ((x + 0.5) / r - 0.5);
- `tf.image.crop_and_resize` samples the crop straight from the window (flip = swapped box).
Without reduction the pixels equal full decode + resize + crop up to float rounding (~1e-4).
Non-JPEG images (PNG) are decoded whole and sampled the same way. Evaluation decodes whole
images (`preprocess.eval_transform`); benchmarks/input_pipeline.py measures what reduced decode
would change in eval crops with `crop_of_geometry`.
"""

from __future__ import annotations

import tensorflow as tf

RATIOS = (1, 2, 4, 8)  # the DCT scalings decode_jpeg offers
_MARGIN = 1e-3  # positions closer than this to a window edge get a replicated border


def reduction_ratio(height: tf.Tensor, width: tf.Tensor, min_side: int) -> tf.Tensor:
    """Largest r in (1, 2, 4, 8) with min(height, width) // r >= min_side (int32 scalar)."""
    short = tf.minimum(tf.cast(height, tf.int32), tf.cast(width, tf.int32))
    ratio = tf.constant(1, tf.int32)
    for r in RATIOS[1:]:
        ratio = tf.where(short // r >= min_side, tf.constant(r, tf.int32), ratio)
    return ratio


def _axis_window(size: tf.Tensor, ratio: tf.Tensor, start: tf.Tensor, scale: tf.Tensor, n: int):
    """Sample positions (start + i + 0.5) * scale - 0.5, i < n, of one axis of the original image,
    mapped into the ratio-reduced image: (first, last, window offset, window length)."""
    r = tf.cast(ratio, tf.float32)
    first = (tf.cast(start, tf.float32) + 0.5) * scale / r - 0.5
    last = (tf.cast(start + n - 1, tf.float32) + 0.5) * scale / r - 0.5
    reduced = (size + ratio - 1) // ratio  # libjpeg's scaled size: ceil(size / r)
    # One spare pixel on each side where the image has it: positions stay inside the window.
    lo = tf.clip_by_value(tf.cast(tf.floor(first), tf.int32) - 1, 0, reduced - 1)
    hi = tf.clip_by_value(tf.cast(tf.floor(last), tf.int32) + 2, lo, reduced - 1)
    return first, last, lo, hi - lo + 1


def _sample(window: tf.Tensor, ys, xs, size: int, flip: tf.Tensor) -> tf.Tensor:
    """Bilinear samples [size, size, 3] float32 at the (first, last) positions ys, xs of window."""
    (y0, y1), (x0, x1) = ys, xs
    h, w = tf.shape(window)[0], tf.shape(window)[1]
    # crop_and_resize extrapolates (instead of clamping like resize) outside [0, n - 1]: where
    # positions come within float rounding of the image border (upsampling, exact fits), pad
    # one replicated pixel on each side.
    hf, wf = tf.cast(h, tf.float32), tf.cast(w, tf.float32)
    edge = (tf.minimum(y0, x0) < _MARGIN) | (y1 > hf - 1 - _MARGIN) | (x1 > wf - 1 - _MARGIN)
    pad = tf.cast(edge, tf.int32)
    window = tf.cond(
        edge, lambda: tf.pad(window, [[1, 1], [1, 1], [0, 0]], mode="SYMMETRIC"), lambda: window
    )
    shift = tf.cast(pad, tf.float32)
    hh = tf.cast(h - 1 + 2 * pad, tf.float32)
    ww = tf.cast(w - 1 + 2 * pad, tf.float32)
    left, right = (x0 + shift) / ww, (x1 + shift) / ww
    left, right = tf.where(flip, right, left), tf.where(flip, left, right)
    box = tf.stack([(y0 + shift) / hh, left, (y1 + shift) / hh, right])[None]
    out = tf.image.crop_and_resize(window[None], box, [0], [size, size])[0]
    out.set_shape([size, size, 3])
    return out


def sample_crop(image: tf.Tensor, start: tf.Tensor, scale: tf.Tensor, size: int) -> tf.Tensor:
    """float32 [size, size, 3]: output pixel (i, j) samples the decoded `image` bilinearly at
    ((start[0] + i + 0.5) * scale[0] - 0.5, (start[1] + j + 0.5) * scale[1] - 0.5), reading only
    the window of source pixels those positions need (a resize followed by a crop, without the
    resize)."""
    one = tf.constant(1, tf.int32)
    hw = tf.shape(image)[:2]
    y0, y1, wy, ny = _axis_window(hw[0], one, start[0], scale[0], size)
    x0, x1, wx, nx = _axis_window(hw[1], one, start[1], scale[1], size)
    window = tf.cast(image[wy : wy + ny, wx : wx + nx], tf.float32)
    wyf, wxf = tf.cast(wy, tf.float32), tf.cast(wx, tf.float32)
    flip = tf.constant(False)
    return _sample(window, (y0 - wyf, y1 - wyf), (x0 - wxf, x1 - wxf), size, flip)


def _decode_window(image_bytes: tf.Tensor, ratio: tf.Tensor, window: tf.Tensor) -> tf.Tensor:
    """decode_and_crop_jpeg at DCT scaling `ratio` (window in the reduced image's pixels)."""

    def at(r: int):
        return lambda: tf.io.decode_and_crop_jpeg(image_bytes, window, channels=3, ratio=r)

    index = tf.reduce_sum(tf.cast(ratio >= tf.constant(RATIOS[1:]), tf.int32))
    image = tf.switch_case(index, [at(r) for r in RATIOS])
    image.set_shape([None, None, 3])
    return image


def crop_of_geometry(
    image_bytes: tf.Tensor,
    geometry,
    *,
    size: int,
    min_side: int,
    reduce: bool,
) -> tf.Tensor:
    """The [size, size, 3] float32 crop (pixel values 0..255) that `geometry` describes.

    `geometry(height, width)` -> (top, left, scale_y, scale_x, flip): output pixel (i, j) samples
    the original at ((top + i + 0.5) * scale_y - 0.5, (left + j + 0.5) * scale_x - 0.5).
    `reduce`: decode JPEGs at the largest DCT scaling whose short side stays >= min_side.
    """

    def sample(hw: tf.Tensor, ratio: tf.Tensor, decode_window) -> tf.Tensor:
        top, left, sy, sx, flip = geometry(hw[0], hw[1])
        y0, y1, wy, ny = _axis_window(hw[0], ratio, top, sy, size)
        x0, x1, wx, nx = _axis_window(hw[1], ratio, left, sx, size)
        window = decode_window(tf.stack([wy, wx, ny, nx]))
        wyf, wxf = tf.cast(wy, tf.float32), tf.cast(wx, tf.float32)
        return _sample(window, (y0 - wyf, y1 - wyf), (x0 - wxf, x1 - wxf), size, flip)

    def jpeg() -> tf.Tensor:
        hw = tf.image.extract_jpeg_shape(image_bytes)[:2]
        ratio = reduction_ratio(hw[0], hw[1], min_side) if reduce else tf.constant(1)
        return sample(hw, ratio, lambda win: _decode_window(image_bytes, ratio, win))

    def other() -> tf.Tensor:
        image = tf.io.decode_image(image_bytes, channels=3, expand_animations=False)
        image.set_shape([None, None, 3])
        hw = tf.shape(image)[:2]
        return sample(hw, tf.constant(1), lambda win: image[win[0] : win[0] + win[2],
                                                             win[1] : win[1] + win[3]])  # fmt: skip

    return tf.cond(tf.io.is_jpeg(image_bytes), jpeg, other)


def train_geometry(seed: tf.Tensor, *, image_size: int, resize_size: int):
    """Resize to resize_size square, random crop image_size, random flip; randomness from seed
    [2], drawn exactly as `preprocess.train_transform` draws it."""
    if resize_size < image_size:
        raise ValueError(f"resize_size ({resize_size}) must be >= image_size ({image_size}).")
    u = tf.random.stateless_uniform([3], seed=seed)
    span = float(resize_size - image_size + 1)
    top = tf.minimum(tf.cast(u[0] * span, tf.int32), resize_size - image_size)
    left = tf.minimum(tf.cast(u[1] * span, tf.int32), resize_size - image_size)

    def geometry(height: tf.Tensor, width: tf.Tensor):
        sy = tf.cast(height, tf.float32) / resize_size
        sx = tf.cast(width, tf.float32) / resize_size
        return top, left, sy, sx, u[2] < 0.5

    return geometry


def train_crop(
    image_bytes: tf.Tensor,
    seed: tf.Tensor,
    *,
    image_size: int,
    resize_size: int,
    reduce: bool = False,
) -> tf.Tensor:
    """Training crop [image_size, image_size, 3] float32 in 0..255 (see the module docstring)."""
    geometry = train_geometry(seed, image_size=image_size, resize_size=resize_size)
    return crop_of_geometry(
        image_bytes, geometry, size=image_size, min_side=resize_size, reduce=reduce
    )


def to_uint8(pixels: tf.Tensor) -> tf.Tensor:
    """Float pixels in 0..255 -> uint8, rounded to nearest."""
    return tf.saturate_cast(tf.round(pixels), tf.uint8)
