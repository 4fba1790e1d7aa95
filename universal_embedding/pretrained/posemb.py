"""Resizing a DINOv2 position embedding grid exactly as torch's `F.interpolate(mode='bicubic')`.

DINOv2 checkpoints hold a 37x37 grid (518 px / patch 14); a model trained at another resolution
needs the grid resized, and the reference implementations do it differently (all bicubic,
align_corners=False, in float32; docs/backbones.md):

- 'transformers': `Dinov2Model.interpolate_pos_encoding` resizes to the new size without
  antialias; `Dinov2WithRegistersModel` with antialias.
- 'timm': `checkpoint_filter_fn` -> `resample_abs_pos_embed`: to the new size, with antialias.
- 'meta': facebookresearch/dinov2 `interpolate_pos_encoding`: without registers by the scale
  factor (g + 0.1) / M (its `interpolate_offset`), no antialias; the `_reg` models to the new
  size with antialias (offset 0).

Each is a separable linear map, built here as an [out, in] matrix per axis: torch's cubic
convolution (A = -0.75, edge indices clamped) without antialias, and its antialiased kernel
(PIL's cubic, A = -0.5, stretched by the downscale factor, truncated at the edges and
normalised) with it. The class row is kept as it is.
"""

from __future__ import annotations

import numpy as np

from universal_embedding.pretrained.common import CheckpointError

POS_MODES = ("transformers", "timm", "meta")
A_PLAIN, A_ANTIALIAS = -0.75, -0.5
MIN_SIZE_SCALE = 0.1  # facebookresearch/dinov2 interpolate_offset (models without registers)


def cubic(x: np.ndarray, a: float) -> np.ndarray:
    """Keys' cubic convolution kernel with parameter `a` at distances x."""
    x = np.abs(x)
    near = ((a + 2) * x - (a + 3)) * x * x + 1
    far = ((a * x - 5 * a) * x + 8 * a) * x - 4 * a
    return np.where(x <= 1, near, np.where(x < 2, far, 0.0))


def _source_scale(n_in: int, n_out: int, scale_factor: float | None) -> float:
    """Input pixels per output pixel: 1 / scale_factor when one is given (torch), else in/out."""
    return 1.0 / scale_factor if scale_factor else n_in / n_out


def plain_matrix(n_in: int, n_out: int, scale_factor: float | None = None) -> np.ndarray:
    """[n_out, n_in] weights of torch's bicubic resize without antialias (source coordinates in
    float32, as torch computes them for float32 inputs)."""
    f32 = np.float32
    scale = f32(_source_scale(n_in, n_out, scale_factor))
    src = (np.arange(n_out, dtype=f32) + f32(0.5)) * scale - f32(0.5)
    base = np.floor(src)
    t = (src - base).astype(np.float64)
    out = np.zeros((n_out, n_in))
    for offset in (-1, 0, 1, 2):
        idx = np.clip(base.astype(np.int64) + offset, 0, n_in - 1)
        np.add.at(out, (np.arange(n_out), idx), cubic(t - offset, A_PLAIN))
    return out


def antialias_matrix(n_in: int, n_out: int, scale_factor: float | None = None) -> np.ndarray:
    """[n_out, n_in] weights of torch's bicubic resize with antialias=True."""
    scale = _source_scale(n_in, n_out, scale_factor)
    stretch = max(scale, 1.0)
    support = 2.0 * stretch
    out = np.zeros((n_out, n_in))
    for i in range(n_out):
        center = scale * (i + 0.5)
        lo = max(int(center - support + 0.5), 0)
        hi = min(int(center + support + 0.5), n_in)
        w = cubic((np.arange(lo, hi) - center + 0.5) / stretch, A_ANTIALIAS)
        out[i, lo:hi] = w / w.sum() if w.sum() else w
    return out


def resize_grid(
    grid: np.ndarray, n_out: int, antialias: bool, scale_factor: float | None = None
) -> np.ndarray:
    """[M, M, D] -> [n_out, n_out, D], float32 like the references."""
    build = antialias_matrix if antialias else plain_matrix
    w = build(grid.shape[0], n_out, scale_factor)
    out = np.einsum("ai,ijd,bj->abd", w, grid.astype(np.float64), w)
    return out.astype(np.float32)


def resize_arguments(mode: str, registers: bool, old: int, new: int) -> tuple[bool, float | None]:
    """(antialias, scale_factor or None for 'resize to the new size') of a reference."""
    if mode not in POS_MODES:
        raise CheckpointError(
            f"config.model.pos_interpolation={mode!r} is not one of {', '.join(POS_MODES)} "
            "(or '' for the file's own reference)."
        )
    if mode == "timm" or registers:
        return True, None
    if mode == "meta":
        return False, (new + MIN_SIZE_SCALE) / old
    return False, None


def resize_dinov2_posemb(
    posemb: np.ndarray, num_tokens: int, mode: str, registers: bool
) -> np.ndarray:
    """[1, 1 + M*M, D] -> [1, num_tokens, D] (class row kept) the way `mode` resizes it."""
    n, d = posemb.shape[-2:]
    old, new = round((n - 1) ** 0.5), round((num_tokens - 1) ** 0.5)
    if old * old != n - 1 or new * new != num_tokens - 1:
        raise CheckpointError(
            f"Cannot resize a position embedding of {n} tokens to {num_tokens}: both must be "
            "1 class token + a square grid."
        )
    antialias, scale_factor = resize_arguments(mode, registers, old, new)
    flat = posemb.reshape(n, d)
    grid = resize_grid(flat[1:].reshape(old, old, d), new, antialias, scale_factor)
    return np.concatenate([flat[:1], grid.reshape(new * new, d)]).reshape(1, num_tokens, d)
