"""The images of neighbours.html: original files on disk, else the bytes in the TFRecords.

`write_neighbours` samples the queries, finds their images and writes the gallery pages
(report/gallery_page.py); every argument is a plain value, so any program can call it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

from absl import logging

from universal_embedding.data import info_files
from universal_embedding.report import gallery_page, neighbour_rows

Infos = Mapping[str, info_files.InfoSplit]


def default_images_dir(info_files_dir: str) -> str:
    """<info_files_dir>/../images: where the original image files sit next to the info files."""
    return os.path.join(os.path.dirname(os.path.normpath(info_files_dir)), "images")


def original_files(images_dir: str, infos: Infos) -> neighbour_rows.OriginalFiles:
    """(key, position) -> the original image file under images_dir, or None when absent."""
    from universal_embedding.data import image_files  # TensorFlow only when drawing a gallery

    def find(key: str, p: int) -> str | None:
        name = infos[key].paths[p]
        if image_files.outside_dir(images_dir, [name]):  # `..`, absolute or a symlink out
            logging.warning("neighbours.html: %s leads outside %s; not read.", name, images_dir)
            return None
        return image_files.resolve_path(images_dir, name)

    return find


def image_loader(images_dir: str, tfds_dir: str, infos: Infos) -> neighbour_rows.ImageLoader:
    """Loader for neighbours.html: original files under images_dir, else the TFRecord bytes
    (records in tfds_dir found by their keys); None for an image found in neither."""
    from universal_embedding.data import image_files, record_images

    original = original_files(images_dir, infos)

    def load(key: str, positions: Sequence[int]) -> dict[int, bytes | None]:
        paths = infos[key].paths
        out: dict[int, bytes | None] = {}
        for p in positions:
            full = original(key, p)
            if full is not None:  # size (--max_image_bytes default) and header checked first
                try:
                    out[p] = image_files.read_image_file(full)
                except (OSError, image_files.BadImageError) as e:
                    logging.warning("neighbours.html: %s not shown: %s", full, e)
        missing = [p for p in positions if p not in out]
        if missing:
            domain, split = key.split("/", 1)
            try:
                found = record_images.read_images_by_key(
                    tfds_dir, domain, split, [paths[p] for p in missing]
                )
            except FileNotFoundError as e:
                logging.warning("No images for %s in neighbours.html: %s", key, e)
                found = {}
            out.update({p: found.get(paths[p]) for p in missing})
        return out

    return load


def write_neighbours(
    workdir: str,
    found: Mapping,
    infos: Infos,
    *,
    images_dir: str,
    tfds_dir: str,
    num_queries: int,
    seed: int,
    k: int,
    thumb_size: int,
    per_page: int,
) -> list[str]:
    """W/neighbours.html (+ _2, ...) from the evaluation's neighbour lists (every setup):
    `num_queries` sampled queries per domain (seeded by `seed`), their top `k`, thumbnails of
    at most `thumb_size` pixels, `per_page` queries a page. Returns the page paths."""
    labels = {key: info.labels for key, info in infos.items()}
    sections = neighbour_rows.build_sections(found, labels, num_queries=num_queries, seed=seed)
    return gallery_page.write_gallery(
        workdir,
        sections,
        image_loader(images_dir, tfds_dir, infos),
        {key: info.paths for key, info in infos.items()},
        k=k,
        thumb_size=thumb_size,
        per_page=per_page,
        originals=original_files(images_dir, infos),
    )
