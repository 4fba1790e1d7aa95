"""The images of neighbours.html: the image bytes stored in the TFRecords, never re-read
from the files the info files name (those are only linked, when under images_dir).

`write_neighbours` samples the queries, reads their images and writes the gallery pages
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
    """(key, position) -> the original image file under images_dir, or None when absent or
    outside it: the page links to it ("open the original") and never reads it."""
    from universal_embedding.data import image_files  # TensorFlow only when drawing a gallery

    def find(key: str, p: int) -> str | None:
        name = infos[key].paths[p]
        if image_files.outside_dir(images_dir, [name]):  # `..`, absolute or a symlink out
            logging.warning("neighbours.html: %s leads outside %s; not linked.", name, images_dir)
            return None
        return image_files.resolve_path(images_dir, name)

    return find


def image_loader(tfds_dir: str, infos: Infos) -> neighbour_rows.ImageLoader:
    """Loader for neighbours.html: the image bytes stored in each split's TFRecords for the
    wanted info-file rows (data/record_images.py; one pass per split, at most
    MAX_GALLERY_IMAGE_BYTES an image); None for a row not found. No file named in an info
    file or a record is read."""
    from universal_embedding.data import record_images  # TensorFlow only when drawing a gallery

    def load(key: str, positions: Sequence[int]) -> dict[int, bytes | None]:
        domain, split = key.split("/", 1)
        try:
            return record_images.read_images_at(
                tfds_dir, domain, split, positions, infos[key].paths
            )
        except FileNotFoundError as e:
            logging.warning("No images for %s in neighbours.html: %s", key, e)
            return {p: None for p in positions}

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
    at most `thumb_size` pixels made from the TFRecords' bytes, `per_page` queries a page;
    images under `images_dir` are linked, not read. Returns the page paths."""
    labels = {key: info.labels for key, info in infos.items()}
    sections = neighbour_rows.build_sections(found, labels, num_queries=num_queries, seed=seed)
    return gallery_page.write_gallery(
        workdir,
        sections,
        image_loader(tfds_dir, infos),
        {key: info.paths for key, info in infos.items()},
        k=k,
        thumb_size=thumb_size,
        per_page=per_page,
        originals=original_files(images_dir, infos),
    )
