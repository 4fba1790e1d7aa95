"""Build a saved faiss index from descriptor files and query it with new images.

    python -m universal_embedding.index build --descriptors=FILE.npz --out=INDEX \
        [--kind=flat|ivf|hnsw] [--key=domain/split] [--info_files_dir=I] [--images_dir=D]
    python -m universal_embedding.index query --index=INDEX (--workdir=W | --weights=FILE \
        --model_class=... --model_type=...) --images=PATH[,PATH...] [--k=10] \
        [--out=FILE.json] [--html=FILE.html]
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence

from universal_embedding.errors import limits
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


def expand_images(spec: Sequence[str]) -> list[str]:
    """Image paths from files and folders (folders: every readable image inside, sorted)."""
    out: list[str] = []
    for item in spec:
        if os.path.isdir(item):
            from universal_embedding.data import image_files

            found, _ = image_files.scan_folder(item)
            out += [os.path.join(item, p) for p in found]
        elif os.path.isfile(item):
            out.append(item)
        else:
            raise FileNotFoundError(f"--images: {item} is neither an image file nor a folder.")
    return out


def query(index_dir: str, embedder, images: Sequence[str], k: int = 10) -> list[dict]:
    """[{'query': path, 'neighbours': [{'path', 'score'}, ...]}, ...] for each query image."""
    index = saved_index.SavedIndex(index_dir)
    found = index.search(embedder.embed(list(images)), k)
    return [
        {"query": q, "neighbours": [{"path": p, "score": s} for p, s in hits]}
        for q, hits in zip(images, found, strict=True)
    ]


def write_html(path: str, results: Sequence[dict], images_dir: str, thumb: int = 128) -> str:
    """A gallery: one row per query, its neighbours with similarity (images when found)."""
    import html

    from universal_embedding.data import image_files
    from universal_embedding.report.neighbour_rows import thumbnail_uri

    def cell(p: str, label: str, base: str | None) -> str:
        # a query is the user's own file; an indexed path (from paths.bin) is read only inside
        # the images folder, with the image size and header checks
        inside = base is None or (base != "" and not image_files.outside_dir(base, [p]))
        full = p if base is None else os.path.join(base, p)
        data = None
        if inside and os.path.isfile(full):
            try:
                data = image_files.read_image_file(full)
            except (OSError, image_files.BadImageError):
                data = None
        uri = thumbnail_uri(data, thumb)
        img = f'<img src="{uri}">' if uri else "<div>image unavailable</div>"
        return f'<td title="{html.escape(p)}">{img}<br>{html.escape(label)}</td>'

    rows = []
    for r in results:
        cells = [cell(r["query"], "query: " + os.path.basename(r["query"]), None)]
        cells += [
            cell(n["path"], f"{rank}. sim {n['score']:.3f}", images_dir)
            for rank, n in enumerate(r["neighbours"], 1)
        ]
        rows.append("<tr>" + "".join(cells) + "</tr>")
    page = (
        "<!DOCTYPE html><html><head><meta charset='utf-8'><title>Query results</title>"
        "<style>td{vertical-align:top;font-size:11px;text-align:center;padding:4px}</style>"
        "</head><body><h1>Query results</h1><table>" + "\n".join(rows) + "</table></body></html>"
    )
    with open(path, "w", encoding="utf-8") as f:
        f.write(page)
    return path


def _define_flags():
    from absl import flags

    flags.DEFINE_string("descriptors", None, "build: .npz from extract_dir_descriptors/knn_main.")
    flags.DEFINE_enum("kind", "flat", list(saved_index.KINDS), "build: flat (exact), ivf, hnsw.")
    flags.DEFINE_string("key", "", "build: array of a knn_main file, e.g. cars/test.")
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
        return
    if not f.index or not f.images:
        raise ValueError("query needs --index=<index folder> and --images=<paths>.")
    results = query(f.index, _embedder(f), expand_images(f.images), f.k)
    for r in results:
        print(r["query"])
        for rank, n in enumerate(r["neighbours"], 1):
            print(f"  {rank:3d}. {n['score']:.4f}  {n['path']}")
    if f.out:
        with open(f.out, "w") as fh:
            json.dump(results, fh, indent=2)
    if f.html:
        base = f.images_dir or saved_index.SavedIndex(f.index).meta.get("images_dir", "")
        write_html(f.html, results, base)


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
