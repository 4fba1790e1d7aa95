"""Synthetic mini-UnED: small images + info files for all 8 domains with UnED's split structure.

Each class is a visual identity (shape, texture, colours, marker, pose) rendered with intra-class
variation (pose, scale, offset, colour jitter, noise, clutter) on a domain-specific backdrop.
Evaluation classes are new (disjoint from training classes) except met test, whose index is train.

    python -m universal_embedding.data.synthetic --data_dir DIR [--seed S] [--scale X]
"""

from __future__ import annotations

import concurrent.futures
import io
import json
import multiprocessing
import os
import sys
from collections.abc import Sequence

import numpy as np
from absl import flags
from PIL import Image

from universal_embedding.data import custom_domains, registry
from universal_embedding.data.synthetic_render import PALETTE, SHAPES, ClassSpec, render
from universal_embedding.errors import command

FAMILIES = {
    "cars": ("car", "ellipse", "square", "hexagon", "diamond"),
    "sop": ("square", "disk", "ellipse", "cross", "hexagon"),
    "inshop": ("tee", "square", "triangle", "ellipse", "diamond"),
    "inat": ("star", "ellipse", "disk", "diamond", "triangle"),
    "met": ("square", "hexagon", "ring", "diamond", "disk"),
    "gldv2": ("dome", "tower", "triangle", "square", "cross"),
    "food2k": ("disk", "ring", "star", "ellipse", "hexagon"),
    "rp2k": ("square", "ellipse", "tower", "cross", "tee"),
}
assert all(s in SHAPES for f in FAMILIES.values() for s in f)
USER_FAMILY = ("ring", "star", "cross", "dome", "tee")  # domains declared by users: train/val/test
UNICODE_DIR = "饮料瓶"  # rp2k: written on disk with #U-escaped characters


def _new_spec(rng: np.random.Generator, family: Sequence[str], used: set) -> ClassSpec:
    while True:
        a, b = rng.choice(len(PALETTE), 2, replace=False)
        spec = ClassSpec(
            shape=str(rng.choice(family)),
            tex=int(rng.integers(0, 5)),
            freq=float(rng.choice([2.0, 3.0, 4.0])),
            tex_angle=float(rng.uniform(0, np.pi)),
            colour_a=int(a),
            colour_b=int(b),
            mark=(float(rng.uniform(-0.5, 0.5)), float(rng.uniform(-0.5, 0.5)), 0.3),
            colour_mark=int(rng.integers(len(PALETTE))),
            angle=float(rng.uniform(-0.5, 0.5)),
        )
        key = (spec.shape, spec.tex, spec.colour_a, spec.colour_b)
        if key not in used:
            used.add(key)
            return spec


def _plan(domain: str, seed: int, scale: float) -> dict[str, list[tuple[tuple[int, ...], int]]]:
    """split -> [(labels, render count) ...]: which classes each split shows and how often."""
    rng = np.random.default_rng([seed, registry.get_domain(domain).id, 1])
    n = lambda k: max(2, round(k * scale))  # noqa: E731
    n_train, n_val, n_test = n(40), n(12), n(16)
    train = [((c,), int(rng.integers(8, 13))) for c in range(n_train)]
    val_cls = range(n_train, n_train + n_val)
    test_cls = range(n_train + n_val, n_train + n_val + n_test)
    plan = {"train": train, "val": [((c,), 5) for c in val_cls]}
    if domain == "met":
        plan["val"] = [((c,), 2) for c in val_cls]
        plan["small_index"] = [((c,), 4) for c in val_cls]
        plan["test"] = [((int(c),), 2) for c in rng.choice(n_train, n_test, replace=False)]
    elif domain in ("inshop", "gldv2"):
        plan["test"] = [((c,), 2) for c in test_cls]
        plan["index"] = [((c,), 4) for c in test_cls]
        if domain == "gldv2":
            extra = test_cls.stop
            plan["index"] += [((c,), 3) for c in range(extra, extra + n(16))]
            pairs = [(int(c), int(rng.choice([d for d in test_cls if d != c]))) for c in test_cls]
            plan["test"] += [(p, 1) for p in pairs[: max(2, len(pairs) // 3)]]
    else:
        plan["test"] = [((c,), 6) for c in test_cls]
    return plan


def _class_specs(domain: str, seed: int, num: int) -> list[ClassSpec]:
    rng = np.random.default_rng([seed, registry.get_domain(domain).id, 2])
    used: set = set()
    family = FAMILIES.get(domain, USER_FAMILY)
    return [_new_spec(rng, family, used) for _ in range(num)]


def _jobs(domain: str, seed: int, scale: float) -> tuple[list[tuple], dict[str, list[dict]]]:
    """Render jobs (disk path, labels, seeds) and the info entries of every split of `domain`."""
    plan = _plan(domain, seed, scale)
    specs = _class_specs(domain, seed, 1 + max(c for v in plan.values() for ls, _ in v for c in ls))
    dom_id = registry.get_domain(domain).id
    jobs, info = [], {}
    for split_id, (split, groups) in enumerate(plan.items()):
        entries = []
        for labels, count in groups:
            folder = f"c{'_'.join(map(str, labels))}"
            if domain == "rp2k" and split == "test" and not entries:
                folder = f"{UNICODE_DIR}{labels[0]}"
            for i in range(count):
                rs = [seed, dom_id, split_id, len(jobs)]
                ext = "png" if np.random.default_rng(rs + [7]).random() < 0.1 else "jpg"
                rel = f"{domain}/{split}/{folder}/{i:03d}.{ext}"
                entries.append(
                    {"path": rel, "class_id": labels[0] if len(labels) == 1 else list(labels)}
                )
                jobs.append((rel, dom_id, [specs[c] for c in labels], rs))
        order = np.random.default_rng([seed, dom_id, split_id, 3]).permutation(len(entries))
        info[split] = [entries[i] for i in order]
    if domain == "met":
        info["index"] = list(info["train"])
        small = {c for c in range(len(plan["train"]) // 4 + 1)}
        info["small_train"] = [e for e in info["train"] if e["class_id"] in small]
        info["small_index"] = info["small_index"] + info["small_train"]
    return jobs, info


def _write_image(job: tuple, images_dir: str) -> None:
    rel, style, specs, rs = job
    rng = np.random.default_rng(rs)
    h, w = (int(v) for v in rng.integers(64, 97, 2))
    pixels = render(rng, style, specs, h, w)
    out = io.BytesIO()
    if rel.endswith(".png"):
        Image.fromarray(pixels).save(out, format="PNG")
    else:
        Image.fromarray(pixels).save(out, format="JPEG", quality=int(rng.integers(70, 96)))
    disk_rel = "".join(c if ord(c) < 128 else f"#U{ord(c):04x}" for c in rel)
    path = os.path.join(images_dir, disk_rel)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(out.getvalue())


def _write_chunk(args: tuple[list[tuple], str]) -> None:
    jobs, images_dir = args
    for job in jobs:
        _write_image(job, images_dir)


def write_synthetic_uned(
    data_dir: str, seed: int = 0, scale: float = 1.0, domains: Sequence[str] | None = None
) -> None:
    """Write `data_dir/images/...` and `data_dir/info_files/<domain>/<split>.json` for all 8 domains
    (or only `domains`; each domain's content does not depend on which others are written)."""
    if scale <= 0:
        raise ValueError(f"scale must be > 0, got {scale}.")
    names = [d.name for d in registry.parse_domains(domains)] if domains else registry.DOMAIN_NAMES
    all_jobs, infos = [], {}
    for domain in names:
        jobs, infos[domain] = _jobs(domain, seed, scale)
        all_jobs += jobs
    _render_all(all_jobs, os.path.join(data_dir, "images"))
    for domain, info in infos.items():  # info files last: they mark the images as complete
        for split, entries in info.items():
            path = registry.info_file_path(os.path.join(data_dir, "info_files"), domain, split)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "w", encoding="utf-8") as f:
                json.dump(entries, f, ensure_ascii=False, indent=0)


def _render_all(all_jobs: list[tuple], images_dir: str) -> None:
    """Render and write every image, in parallel processes when a main file allows spawning."""
    workers = min(len(all_jobs), os.cpu_count() or 1)
    chunks = [(all_jobs[i::workers], images_dir) for i in range(workers)]
    main_file = getattr(sys.modules["__main__"], "__file__", None)
    if workers <= 1 or not (main_file and os.path.isfile(main_file)):  # spawn needs a main file
        for chunk in chunks:
            _write_chunk(chunk)
        return
    context = multiprocessing.get_context("spawn")  # no fork: the caller may run TF/JAX threads
    with concurrent.futures.ProcessPoolExecutor(workers, mp_context=context) as pool:
        list(pool.map(_write_chunk, chunks))


def define_flags() -> None:
    """synthetic's flags (called only when run as a program)."""
    flags.DEFINE_string("data_dir", None, "Output folder (images/ and info_files/).", required=True)
    flags.DEFINE_integer("seed", 0, "Random seed of the whole data set.")
    flags.DEFINE_float("scale", 1.0, "Multiplies class counts.")
    flags.DEFINE_string("domains", "", "Comma-separated; default: the 8 of UnED.")
    flags.DEFINE_string("domains_file", "", "JSON declaring domains of your own.")


def main(argv: Sequence[str]) -> None:
    """absl main: write the synthetic mini-UnED into --data_dir."""
    f = flags.FLAGS
    if f.domains_file:
        custom_domains.load_domains_file(f.domains_file)
    write_synthetic_uned(
        f.data_dir, f.seed, f.scale, [d for d in f.domains.split(",") if d] or None
    )
    print(f"Synthetic mini-UnED written to {f.data_dir}")


def cli() -> None:
    """The `ue-synthetic` command."""
    define_flags()
    command.run(main)


if __name__ == "__main__":
    cli()
