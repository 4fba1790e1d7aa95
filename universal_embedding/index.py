"""Build a saved faiss index from descriptor files and query it with new images.

    python -m universal_embedding.index build --descriptors=FILE.npz --out=INDEX \
        [--kind=flat|ivf|hnsw] [--key=domain/split] [--info_files_dir=I] [--images_dir=D]
    python -m universal_embedding.index query --index=INDEX (--workdir=W | --weights=FILE \
        --model_class=... --model_type=...) --images=PATH[,PATH...] [--k=10] \
        [--out=FILE.json] [--html=FILE.html]
    python -m universal_embedding.index query --index=INDEX --descriptors=FILE.npz \
        [--key=domain/split] [--queries_dir=D] [--k=10] [--out=FILE.json] [--html=FILE.html]

Queries are labelled by their path relative to the --images folder they were found in (a file
given by name keeps the name given); with --descriptors, by the file's paths (or '<key>#<row>').
Each run ends by printing what it wrote ('Wrote <path>' lines).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence

import numpy as np

from universal_embedding.errors import limits
from universal_embedding.errors.command import print_written
from universal_embedding.knn import descriptor_arrays, saved_index


class RowNames(Sequence):
    """'<key>#<row>' names for descriptors stored without paths (knn_main without info files)."""

    def __init__(self, key: str, n: int):
        self.key, self.n = key, n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i):
        return f"{self.key}#{i}"

    def __iter__(self) -> Iterator[str]:
        return (f"{self.key}#{i}" for i in range(self.n))


def build_from_file(
    descriptors: str,
    out: str,
    *,
    kind: str = "flat",
    key: str = "",
    info_files_dir: str = "",
    images_dir: str = "",
    recall_k: int = 10,
    nprobe: int = saved_index.IVF_NPROBE,
) -> dict:
    """Index the descriptor file's rows (memory-mapped); paths from the file or info files."""
    vectors, paths, key = descriptor_arrays.open_descriptors(descriptors, key)
    descriptor_arrays.check_vectors(vectors, descriptors)
    if paths is None and info_files_dir and "/" in key:
        from universal_embedding.data import info_files, registry

        domain, split = key.split("/", 1)  # any domain: its info file is all that is needed
        info_path = registry.info_file_path(info_files_dir, domain, split)
        limits.inside(info_files_dir, info_path, f"Key '{key}' of {descriptors}: info file")
        entries = info_files.read_info_file(info_path)
        paths = [e["path"] for e in entries]
    if paths is None:
        paths = RowNames(key or os.path.basename(descriptors), len(vectors))
    extra = {"descriptors": os.path.abspath(descriptors), "key": key}
    if images_dir:
        extra["images_dir"] = os.path.abspath(images_dir)
    return saved_index.build(
        vectors, paths, out, kind=kind, recall_k=recall_k, nprobe=nprobe, extra_meta=extra
    )


def labelled_images(spec: Sequence[str]) -> tuple[list[str], list[str]]:
    """(image paths, labels) from files and folders: a folder gives every readable image inside
    (sorted), labelled by its path relative to that folder; a file keeps the name given."""
    paths: list[str] = []
    labels: list[str] = []
    for item in spec:
        if os.path.isdir(item):
            from universal_embedding.data import image_files

            found, _ = image_files.scan_folder(item)
            paths += [os.path.join(item, p) for p in found]
            labels += list(found)
        elif os.path.isfile(item):
            paths.append(item)
            labels.append(item)
        else:
            raise FileNotFoundError(f"--images: {item} is neither an image file nor a folder.")
    return paths, labels


def expand_images(spec: Sequence[str]) -> list[str]:
    """Image paths from files and folders (folders: every readable image inside, sorted)."""
    return labelled_images(spec)[0]


def search_results(
    index_dir: str, vectors, queries: Sequence[str], k: int, labels: Sequence[str] | None = None
) -> list[dict]:
    """[{'query', 'label', 'neighbours': [{'path', 'score'}, ...]}] of query vectors [n, d]."""
    found = saved_index.SavedIndex(index_dir).search(vectors, k)
    labels = list(queries) if labels is None else labels
    return [
        {"query": q, "label": lab, "neighbours": [{"path": p, "score": s} for p, s in hits]}
        for q, lab, hits in zip(queries, labels, found, strict=True)
    ]


def query(index_dir: str, embedder, images: Sequence[str], k: int = 10, labels=None) -> list[dict]:
    """search_results of the query images embedded by `embedder` (labels: default the paths)."""
    return search_results(index_dir, embedder.embed(list(images)), list(images), k, labels)


def query_descriptors(index_dir: str, descriptors: str, k: int = 10, key: str = "") -> list[dict]:
    """search_results of the rows of a descriptor file (extract_dir_descriptors' .npz, an array
    of knn_main's file by `key`, a .npy), each labelled by its path in the file, else
    '<key or file name>#<row>'."""
    vectors, paths, key = descriptor_arrays.open_descriptors(descriptors, key)
    descriptor_arrays.check_vectors(vectors, descriptors)
    if paths is None:
        paths = RowNames(key or os.path.basename(descriptors), len(vectors))
    names = [str(p) for p in paths]
    return search_results(index_dir, np.asarray(vectors, np.float32), names, k)


def write_html(
    path: str,
    results: Sequence[dict],
    images_dir: str,
    thumb: int = 96,
    queries_dir: str = "",
    k: int | None = None,
) -> str:
    """The gallery page (report/index_gallery.py): one row per query, labelled by its relative
    path, with its neighbours and their similarity (images when found)."""
    from universal_embedding.report import index_gallery

    k = k if k is not None else max((len(r["neighbours"]) for r in results), default=0)
    return index_gallery.write(path, results, images_dir, queries_dir, k=k, thumb_size=thumb)


def _define_flags():
    from absl import flags

    flags.DEFINE_string(
        "descriptors", None, "build: the descriptors to index; query: query vectors (no model)."
    )
    flags.DEFINE_enum("kind", "flat", list(saved_index.KINDS), "build: flat (exact), ivf, hnsw.")
    flags.DEFINE_string("key", "", "--descriptors: array of a knn_main file, e.g. cars/test.")
    flags.DEFINE_string(
        "queries_dir", "", "query --descriptors --html: folder the file's paths are relative to."
    )
    flags.DEFINE_string("info_files_dir", "", "build: info files giving knn_main rows' paths.")
    flags.DEFINE_string("images_dir", "", "Folder the indexed paths are relative to (for --html).")
    flags.DEFINE_integer("recall_k", 10, "build: k of the recall reported for ivf / hnsw.")
    flags.DEFINE_integer("nprobe", saved_index.IVF_NPROBE, "build --kind=ivf: lists searched.")
    flags.DEFINE_string("index", None, "query: an index folder written by build.")
    flags.DEFINE_string("workdir", None, "query: training workdir of the model.")
    flags.DEFINE_string("checkpoint", "best", "query: 'best', 'latest' or a step.")
    flags.DEFINE_string("weights", None, "query: weight file (or exported params.safetensors).")
    flags.DEFINE_string("model_class", "vit_with_embedding", "query with --weights: model class.")
    flags.DEFINE_string("model_type", "B/16", "query with --weights: model type.")
    flags.DEFINE_integer("image_size", 224, "query with --weights: input size.")
    flags.DEFINE_string("embedd_to_eval", None, "projected | backbone_out (default: as made).")
    flags.DEFINE_list("images", [], "query: image files or folders.")
    flags.DEFINE_integer("k", 10, "query: neighbours per image.")
    flags.DEFINE_string("out", None, "build: index folder; query: results JSON file.")
    flags.DEFINE_string("html", None, "query: also write a gallery HTML file.")
    return flags.FLAGS


def _embedder(f):
    from universal_embedding.api import Embedder

    if f.workdir:
        return Embedder.from_workdir(f.workdir, f.checkpoint, f.embedd_to_eval)
    if f.weights:
        return Embedder.from_pretrained(
            f.weights, f.model_class, f.model_type, f.embedd_to_eval, image_size=f.image_size
        )
    raise ValueError("query needs the model: --workdir=<training workdir> or --weights=<file>.")


def _run(command: str, f) -> None:
    if command == "build":
        if not f.descriptors or not f.out:
            raise ValueError("build needs --descriptors=<file.npz> and --out=<index folder>.")
        meta = build_from_file(
            f.descriptors, f.out, kind=f.kind, key=f.key, info_files_dir=f.info_files_dir,
            images_dir=f.images_dir, recall_k=f.recall_k, nprobe=f.nprobe,
        )  # fmt: skip
        print(json.dumps(meta, indent=2))
        print_written(os.path.join(f.out, n) for n in sorted(os.listdir(f.out)))
        return
    if not f.index or not (f.images or f.descriptors):
        raise ValueError(
            "query needs --index=<index folder> and --images=<paths> or --descriptors=<file>."
        )
    if f.images and f.descriptors:
        raise ValueError("query takes --images or --descriptors, not both.")
    if f.descriptors:
        results = query_descriptors(f.index, f.descriptors, f.k, f.key)
    else:
        paths, labels = labelled_images(f.images)
        results = query(f.index, _embedder(f), paths, f.k, labels)
    for r in results:
        print(r["label"])
        for rank, n in enumerate(r["neighbours"], 1):
            print(f"  {rank:3d}. {n['score']:.4f}  {n['path']}")
    written = []
    if f.out:
        with open(f.out, "w") as fh:
            json.dump(results, fh, indent=2)
        written.append(f.out)
    if f.html:
        base = f.images_dir or saved_index.SavedIndex(f.index).meta.get("images_dir", "")
        written.append(write_html(f.html, results, base, queries_dir=f.queries_dir, k=f.k))
    print_written(written)


def cli() -> None:
    """The `ue-index` command: `build` or `query`."""
    from absl import app

    from universal_embedding.errors import command

    flags = _define_flags()

    def main(argv):
        if len(argv) != 2 or argv[1] not in ("build", "query"):
            raise app.UsageError("Usage: python -m universal_embedding.index build|query --...")
        _run(argv[1], flags)

    command.run(main, positional=True, quiet=True)


if __name__ == "__main__":
    cli()
