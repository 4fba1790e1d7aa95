"""Numpy rendering of synthetic mini-UnED images: domain backgrounds, clutter, textured objects."""

from __future__ import annotations

import dataclasses

import numpy as np

PALETTE = np.array(
    [
        (220, 40, 40), (240, 140, 20), (235, 215, 30), (40, 170, 60), (30, 190, 200),
        (40, 70, 210), (140, 50, 190), (230, 60, 160), (245, 245, 245), (25, 25, 25),
    ],
    np.float32,
)  # fmt: skip


def _shape_masks() -> dict:
    r = lambda u, v: np.sqrt(u * u + v * v)  # noqa: E731
    return {
        "disk": lambda u, v: r(u, v) < 1.0,
        "square": lambda u, v: np.maximum(abs(u), abs(v)) < 0.85,
        "diamond": lambda u, v: abs(u) + abs(v) < 1.1,
        "triangle": lambda u, v: (v < 0.8) & (v > -0.95 + 2.0 * abs(u)),
        "cross": lambda u, v: ((abs(u) < 0.33) & (abs(v) < 1)) | ((abs(v) < 0.33) & (abs(u) < 1)),
        "ring": lambda u, v: (r(u, v) < 1.0) & (r(u, v) > 0.55),
        "hexagon": lambda u, v: np.maximum(abs(u) * 0.866 + abs(v) * 0.5, abs(v)) < 0.9,
        "ellipse": lambda u, v: u * u + (v / 0.55) ** 2 < 1.0,
        "star": lambda u, v: r(u, v) < 0.62 + 0.33 * np.cos(5 * np.arctan2(v, u)),
        "tee": lambda u, v: (
            ((abs(v + 0.55) < 0.3) & (abs(u) < 1)) | ((abs(u) < 0.45) & (abs(v) < 0.85))
        ),
        "car": lambda u, v: (
            ((abs(u) < 1) & (v > -0.15) & (v < 0.45))
            | ((abs(u) < 0.55) & (v > -0.6) & (v <= -0.15))
        ),
        "dome": lambda u, v: (v < 0.9) & (((v > 0) & (abs(u) < 0.8)) | (r(u, v) < 0.8)),
        "tower": lambda u, v: (abs(v) < 1) & (abs(u) < 0.22 + 0.2 * (v + 1) / 2),
    }


SHAPES = _shape_masks()


def texture(kind: int, u: np.ndarray, v: np.ndarray, freq: float, angle: float) -> np.ndarray:
    """Two-colour pattern in object coordinates: 0 = solid, stripes, checker, dots, rings."""
    a = u * np.cos(angle) + v * np.sin(angle)
    b = -u * np.sin(angle) + v * np.cos(angle)
    if kind == 1:
        return np.sin(freq * np.pi * a) > 0
    if kind == 2:
        return np.sin(freq * np.pi * a) * np.sin(freq * np.pi * b) > 0
    if kind == 3:
        fa, fb = (a * freq) % 1.0 - 0.5, (b * freq) % 1.0 - 0.5
        return fa * fa + fb * fb < 0.09
    if kind == 4:
        return np.sin(freq * np.pi * np.sqrt(u * u + v * v)) > 0
    return np.zeros_like(u, bool)


@dataclasses.dataclass(frozen=True)
class ClassSpec:
    """The visual identity of one class."""

    shape: str
    tex: int
    freq: float
    tex_angle: float
    colour_a: int
    colour_b: int
    mark: tuple[float, float, float]  # x, y, radius of a marker disk in object coordinates
    colour_mark: int
    angle: float


def _background(style: int, rng: np.random.Generator, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Domain-specific backdrop (style = domain id), float32 [H, W, 3]."""
    h, w = x.shape
    t = (y - y.min()) / max(np.ptp(y), 1e-6)
    one = np.ones((h, w, 3), np.float32)
    jit = rng.uniform(0.85, 1.15)
    if style == 0:  # cars: grey gradient with a dark road band
        img = (170 + 50 * t)[..., None] * one
        img[y > 0.45] = (70, 70, 75)
    elif style == 1:  # sop: studio white
        img = (245 - 15 * t)[..., None] * one
    elif style == 2:  # inshop: beige with a vertical light falloff
        img = (
            np.array([225, 205, 180], np.float32)
            * (1 - 0.15 * abs(x) / max(abs(x).max(), 1e-6))[..., None]
        )
    elif style == 3:  # inat: green / brown organic noise
        f = rng.uniform(2, 5, 4)
        n = np.sin(f[0] * x + f[1] * y) + np.sin(f[2] * x * y + f[3] * y)
        img = np.stack([60 + 25 * n, 110 + 30 * n, 40 + 10 * n], -1)
    elif style == 4:  # met: dark wall with a golden frame
        img = np.full((h, w, 3), (45, 30, 28), np.float32)
        m = np.maximum(abs(x) / abs(x).max(), abs(y) / abs(y).max())
        img[(m > 0.85) & (m < 0.95)] = (200, 160, 60)
    elif style == 5:  # gldv2: sky gradient over ground
        img = np.stack([110 + 100 * t, 160 + 70 * t, 235 + 0 * t], -1)
        img[y > rng.uniform(0.5, 0.8)] = (90, 120, 70)
    elif style == 6:  # food2k: wooden table and a white plate
        img = np.stack([150 + 30 * np.sin(9 * y + 3 * np.sin(4 * x))] * 3, -1) * (1, 0.65, 0.35)
        img[x * x + y * y < 0.95] = (238, 236, 230)
    else:  # rp2k: shelf with horizontal boards
        img = np.full((h, w, 3), 200, np.float32)
        img[(y * 3 % 1.0) < 0.1] = (90, 80, 70)
    return img.astype(np.float32) * jit


def _clutter(
    img: np.ndarray, rng: np.random.Generator, x: np.ndarray, y: np.ndarray, n: int
) -> None:
    for _ in range(n):
        cx, cy, rad = rng.uniform(-1.2, 1.2), rng.uniform(-1, 1), rng.uniform(0.06, 0.2)
        colour = rng.uniform(0, 255, 3)
        if rng.random() < 0.5:
            img[(x - cx) ** 2 + (y - cy) ** 2 < rad * rad] = colour
        else:
            ang = rng.uniform(0, np.pi)
            d = abs((x - cx) * np.sin(ang) - (y - cy) * np.cos(ang))
            img[(d < 0.03) & ((x - cx) ** 2 + (y - cy) ** 2 < 0.25)] = colour


def _draw(img, spec: ClassSpec, x, y, rng, centre, size, colour_jit) -> None:  # noqa: ANN001
    ang = spec.angle + rng.normal(0, 0.35)
    stretch = rng.uniform(0.85, 1.15)
    s = size * rng.uniform(0.8, 1.15)
    dx, dy = x - centre[0], y - centre[1]
    u = (np.cos(ang) * dx + np.sin(ang) * dy) / (s * stretch)
    v = (-np.sin(ang) * dx + np.cos(ang) * dy) / (s / stretch)
    if rng.random() < 0.5:
        u = -u
    mask = SHAPES[spec.shape](u, v)
    pattern = texture(spec.tex, u, v, spec.freq, spec.tex_angle)
    colour = np.where(pattern[..., None], PALETTE[spec.colour_b], PALETTE[spec.colour_a])
    img[mask] = (colour[mask] * colour_jit).clip(0, 255)
    mx, my, mr = spec.mark
    img[mask & ((u - mx) ** 2 + (v - my) ** 2 < mr * mr)] = PALETTE[spec.colour_mark] * colour_jit


def render(
    rng: np.random.Generator, style: int, specs: list[ClassSpec], height: int, width: int
) -> np.ndarray:
    """One uint8 [height, width, 3] image of the objects `specs` (side by side when several)."""
    half = min(height, width) / 2.0
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    x, y = (xx - width / 2) / half, (yy - height / 2) / half
    img = _background(style, rng, x, y)
    _clutter(img, rng, x, y, int(rng.integers(2, 6)))
    n = len(specs)
    for i, spec in enumerate(specs):
        cx = (i - (n - 1) / 2) * 0.95 + rng.uniform(-0.2, 0.2)
        centre = (cx, rng.uniform(-0.2, 0.2))
        size = rng.uniform(0.55, 0.8) / (1.0 + 0.6 * (n - 1))
        _draw(
            img, spec, x, y, rng, centre, size, rng.uniform(0.75, 1.2) + rng.uniform(-0.1, 0.1, 3)
        )
    img = img * np.float32(rng.uniform(0.8, 1.15)) + rng.uniform(-15, 15, 3).astype(np.float32)
    img += rng.standard_normal(img.shape, dtype=np.float32) * np.float32(rng.uniform(3, 10))
    return np.clip(img, 0, 255).astype(np.uint8)
