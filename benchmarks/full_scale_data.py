"""An UnED-shaped data set at S x the benchmark's real sizes, cheap to make (full_scale.py).

Every split of every domain gets round(S x its registry size) entries (at least 4) and every
training split round(S x the domain's training classes) classes (at least 2); evaluation splits
get classes at the domain's training images per class, met's test queries are labelled with
training classes (its index is its training split, as in the benchmark), met's small_index is
small_train plus val-class images, and a third of gldv2's test queries carry two landmarks.
Images are 32 px renders drawn from a pool of POOL distinct ones; each info-file entry is its
own file: the images the test searches read carry their entry number in a row of pixels (so their
descriptors are distinct, as real images' are), the others are hard links to a pool image, so
info files and TFRecords have their full number of entries while making the data stays cheap.

    .venv/bin/python benchmarks/full_scale_data.py --data_dir W/data --scale 0.01
"""

from __future__ import annotations

import argparse
import io
import json
import multiprocessing
import os

import numpy as np
from PIL import Image

from universal_embedding.data import registry
from universal_embedding.data.synthetic_render import PALETTE, SHAPES, ClassSpec, render

POOL = 4096  # distinct renders
SIDE = 32
MIN_ENTRIES = 4
PER_DIR = 1000  # entries per image folder


def pool_images(folder: str, n: int = POOL, seed: int = 0) -> list[str]:
    """Render n distinct 32 px JPEG images into folder; their paths."""
    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(seed)
    shapes = sorted(SHAPES)
    paths = []
    for i in range(n):
        spec = ClassSpec(
            shape=shapes[i % len(shapes)],
            tex=int(rng.integers(0, 5)),
            freq=float(rng.choice([2.0, 3.0, 4.0])),
            tex_angle=float(rng.uniform(0, np.pi)),
            colour_a=int(rng.integers(len(PALETTE))),
            colour_b=int(rng.integers(len(PALETTE))),
            mark=(float(rng.uniform(-0.5, 0.5)), float(rng.uniform(-0.5, 0.5)), 0.3),
            colour_mark=int(rng.integers(len(PALETTE))),
            angle=float(rng.uniform(-0.5, 0.5)),
        )
        pixels = render(rng, i % 8, [spec], SIDE, SIDE)
        path = os.path.join(folder, f"{i:05d}.jpg")
        Image.fromarray(pixels).save(path, format="JPEG", quality=90)
        paths.append(path)
    return paths


def scaled(n: int, scale: float, least: int = MIN_ENTRIES) -> int:
    return max(least, round(n * scale))


def split_sizes(domain: registry.Domain, scale: float) -> dict[str, int]:
    """Entries per split at `scale` (met's small_index: small_train + 2 images per val query)."""
    sizes = {s: scaled(n, scale) for s, n in domain.split_sizes.items() if n is not None}
    if domain.name == "met":
        sizes["index"] = sizes["train"]
        sizes["small_train"] = min(sizes["small_train"], sizes["train"])
        sizes["small_index"] = sizes["small_train"] + 2 * sizes["val"]
    return sizes


def labels_of(domain: registry.Domain, split: str, n: int, scale: float, rng) -> np.ndarray:
    """Class id of each of the n entries (gldv2 test: a second column, -1 = one label)."""
    train_classes = scaled(domain.num_train_classes, scale, least=2)
    per_class = max(1.0, domain.split_sizes["train"] / domain.num_train_classes)
    if split == "train":
        return np.sort(rng.integers(0, train_classes, n))
    if domain.name == "met" and split == "test":
        return rng.integers(0, train_classes, n)
    if domain.name == "met" and split == "small_train":
        return np.sort(rng.integers(0, max(2, train_classes // 10), n))
    classes = max(2, round(n / per_class))
    return train_classes + rng.integers(0, classes, n)  # new classes, after the training ones


def entries(domain: registry.Domain, split: str, n: int, scale: float, seed: int):
    """(relative paths, label column(s)) of one split."""
    rng = np.random.default_rng([seed, domain.id, list(domain.split_sizes).index(split)])
    labels = labels_of(domain, split, n, scale, rng)
    if domain.name == "met" and split == "small_index":
        small = labels_of(domain, "small_train", n, scale, rng)
        labels = np.concatenate([small[: n - n // 3], labels[: n // 3]])
    second = np.full(n, -1)
    if domain.name == "gldv2" and split == "test":
        second[: n // 3] = labels[: n // 3] + 1
    paths = [f"{domain.name}/{split}/{i // PER_DIR:04d}/{i:07d}.jpg" for i in range(n)]
    return paths, labels, second


def write_info_file(path: str, paths: list[str], labels: np.ndarray, second: np.ndarray) -> None:
    """The info file as JSON text, written chunk by chunk."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path + ".tmp", "w") as f:
        f.write("[")
        for lo in range(0, len(paths), 100_000):
            rows = []
            for i in range(lo, min(lo + 100_000, len(paths))):
                cid = int(labels[i]) if second[i] < 0 else [int(labels[i]), int(second[i])]
                rows.append(json.dumps({"path": paths[i], "class_id": cid}))
            f.write((",\n" if lo else "\n") + ",\n".join(rows))
        f.write("\n]\n")
    os.replace(path + ".tmp", path)


def link_images(images_dir: str, paths: list[str], pool: list[str], offset: int) -> None:
    """Each relative path a hard link to a pool image."""
    for folder in sorted({os.path.dirname(os.path.join(images_dir, p)) for p in paths}):
        os.makedirs(folder, exist_ok=True)
    for i, rel in enumerate(paths):
        full = os.path.join(images_dir, rel)
        if not os.path.exists(full):
            os.link(pool[(offset + i * 7919) % len(pool)], full)


_BITS = np.arange(0, 24, 3)[:, None] + np.arange(3)


def _write_marked(job: tuple[str, list[str], list[str], int]) -> None:
    """Pool images with their entry number drawn into the top row (8 pixels, 3 bits each)."""
    images_dir, paths, pool, first = job
    pixels = [np.asarray(Image.open(p).convert("RGB")) for p in pool]
    for n, rel in enumerate(paths, start=first):
        img = pixels[(n * 7919) % len(pixels)].copy()
        img[0, :8] = ((n >> _BITS) & 1) * 255
        out = io.BytesIO()
        Image.fromarray(img).save(out, format="JPEG", quality=90)
        with open(os.path.join(images_dir, rel), "wb") as f:
            f.write(out.getvalue())


def write_distinct(images_dir: str, paths: list[str], pool: list[str], first: int) -> None:
    """Each relative path its own image (distinct pixels: evaluation images get distinct
    descriptors, so the searches meet no more ties than real data), in a process per core."""
    for folder in sorted({os.path.dirname(os.path.join(images_dir, p)) for p in paths}):
        os.makedirs(folder, exist_ok=True)
    step = 20_000
    jobs = [(images_dir, paths[i : i + step], pool, first + i) for i in range(0, len(paths), step)]
    with multiprocessing.get_context("fork").Pool(os.cpu_count()) as workers:
        list(workers.imap_unordered(_write_marked, jobs))


def make(data_dir: str, scale: float, seed: int = 0, progress=print) -> dict[str, int]:
    """Images and info files of every split of the 8 domains; {'domain/split': n}.
    Splits the test searches read (test, index and met's train, its index) get distinct
    images; the others hard links to the pool."""
    images_dir = os.path.join(data_dir, "images")
    pool = pool_images(os.path.join(images_dir, "_pool"), seed=seed)
    counts, distinct = {}, 0
    for domain in registry.DOMAINS:
        for split, n in split_sizes(domain, scale).items():
            key = f"{domain.name}/{split}"
            if domain.name == "met" and split == "index":  # met's index is its training split
                paths, labels, second = entries(domain, "train", n, scale, seed)
            else:
                paths, labels, second = entries(domain, split, n, scale, seed)
                if split in ("test", "index") or key == "met/train":
                    write_distinct(images_dir, paths, pool, distinct)
                    distinct += n
                else:
                    link_images(images_dir, paths, pool, domain.id * 1009 + len(counts))
            info = registry.info_file_path(os.path.join(data_dir, "info_files"), *key.split("/"))
            write_info_file(info, paths, labels, second)
            counts[key] = n
            progress(f"{key}: {n} entries")
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data_dir", required=True)
    parser.add_argument("--scale", type=float, default=0.01)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    counts = make(args.data_dir, args.scale, args.seed)
    print(f"{sum(counts.values())} entries in {len(counts)} splits")


if __name__ == "__main__":
    main()
