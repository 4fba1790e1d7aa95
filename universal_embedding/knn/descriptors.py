"""Descriptor files (npz native; original and UDON JSON), input checks, and batched extraction.

Descriptor dicts are keyed 'domain/split', rows in info-file order (docs/uned-benchmark.md
§1, §7); files of several embeddings per image (UDON) are keyed
'domain/split/embedding'. JSON layouts (also under the original's `.pkl` name):
original/descriptor_files.py.
Nothing here imports JAX or TensorFlow: `extract` takes any function that maps an image
batch to an array.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Iterable, Mapping, Sequence, Sized
from typing import Any

import numpy as np
from absl import logging
from tqdm import tqdm

from universal_embedding.data import registry
from universal_embedding.errors import limits
from universal_embedding.original import descriptor_files

UNIVERSAL = "universal_student_embedd"  # chosen by default from a several-embedding file


def save_npz(path: str, descriptors: Mapping[str, np.ndarray]) -> None:
    """Write {'domain/split': [n, d]} as float32 arrays into one .npz file (path used as given)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    arrays = {key: np.asarray(value, dtype=np.float32) for key, value in descriptors.items()}
    with open(path, "wb") as f:
        np.savez(f, **arrays)


def save_json(path: str, descriptors: Mapping[str, np.ndarray]) -> None:
    """Write the original JSON layout {"domain": {"split": [ [[...], ...] ]}} (each split a
    one-element list) or, for 'domain/split/embedding' keys, UDON's
    {"domain": {"split": {"embedding": [[...], ...]}}}."""
    descriptor_files.save_original(path, descriptors)


DESCRIPTOR_FORMATS = ("npz", "original")


def descriptor_format(fmt: str | None) -> str:
    """A descriptor_format value ('' or None: 'npz'); one line naming the allowed values else."""
    fmt = fmt or "npz"
    if fmt not in DESCRIPTOR_FORMATS:
        raise ValueError(
            f"config.descriptor_format='{fmt}' is not one of {', '.join(DESCRIPTOR_FORMATS)}."
        )
    return fmt


@dataclasses.dataclass(frozen=True)
class DescriptorOutput:
    """Whether and where descriptors are written: `save` (save_descriptors), the file `format`
    ('npz' | 'original', checked by descriptor_format), the folder of 'original' files
    (descr_save_path, else train_dir, else the workdir), whether the file holds backbone
    outputs (the original's _no_project folder) and `save_json` (also W/descriptors.json)."""

    save: bool = False
    format: str = "npz"
    save_path: str = ""
    train_dir: str = ""
    backbone_out: bool = False
    save_json: bool = False


def descriptor_file(output: DescriptorOutput, workdir: str, step: int | str) -> str:
    """Where save_descriptors writes: W/descriptors.npz (format 'npz') or, for 'original',
    <save_path or train_dir or W>/descriptors[_no_project]/descriptors_step_<step>.pkl (JSON
    text, the original's name; _no_project for backbone_out)."""
    if descriptor_format(output.format) == "npz":
        return os.path.join(workdir, "descriptors.npz")
    base = output.save_path or output.train_dir or workdir
    return descriptor_files.descriptor_path(base, step, output.backbone_out)


def save_descriptor_file(path: str, descriptors: Mapping[str, np.ndarray]) -> None:
    """.npz (native) or, for any other name, the original JSON layout."""
    if path.endswith(".npz"):
        save_npz(path, descriptors)
    else:
        save_json(path, descriptors)


MIN_NORM = 1e-12  # a row shorter than this has no direction to rank by
# Far above any embedding value (unit vectors have |x| <= 1), and small enough that no inner
# product or squared norm overflows float32 (max 3.4e38): d * MAX_ABS**2 = d * 1e12 stays below
# it for any dimension d that fits in memory. 3e38 itself overflows the search to inf/NaN.
MAX_ABS = 1e6


def load_descriptors(path: str, embedding: str | None = None) -> dict[str, np.ndarray]:
    """{'domain/split': float32 [n, d]} from a native .npz or a JSON file (.json, or the
    original's .pkl name) in the original or UDON layout.

    Every array is checked before it is cast to float32: real numbers only, all finite and
    within +-MAX_ABS; errors name the file and key. A file of several embeddings
    ('domain/split/embedding') gives `embedding`'s descriptors (default:
    'universal_student_embedd' when present, else the only embedding).
    """
    return select_embedding(load_all_descriptors(path), embedding, path)


def select_embedding(
    loaded: Mapping[str, np.ndarray], embedding: str | None, path: str
) -> dict[str, np.ndarray]:
    """'domain/split' descriptors of one embedding of a load_all_descriptors dict."""
    names = sorted({k.split("/")[2] for k in loaded if k.count("/") == 2})
    if not names:
        if embedding is not None:
            raise ValueError(
                f"Descriptor file '{path}' holds one unnamed embedding; drop the embedding choice."
            )
        return dict(loaded)
    if embedding is None:
        embedding = UNIVERSAL if UNIVERSAL in names or len(names) != 1 else names[0]
    if embedding not in names:
        raise ValueError(
            f"Descriptor file '{path}' has no embedding '{embedding}'; it holds {names}."
        )
    suffix = f"/{embedding}"
    return {k[: -len(suffix)]: v for k, v in loaded.items() if k.endswith(suffix)}


def load_all_descriptors(path: str) -> dict[str, np.ndarray]:
    """Every array of a descriptor file, keyed 'domain/split' or 'domain/split/embedding'."""
    if not os.path.exists(path):
        raise FileNotFoundError(
            f"Descriptor file '{limits.short(path)}' does not exist. "
            "Pass --config.descr_path=<.npz, .json or .pkl>."
        )
    limits.regular_file(path, "Descriptor file")  # a FIFO or device would block or never end
    if path.endswith(descriptor_files.JSON_EXTENSIONS):  # JSON text, also under '.pkl'
        arrays = descriptor_files.load_json_arrays(path)
        return {  # popped one by one: the float64 parse and its float32 copy never all coexist
            key: _as_float32(arrays.pop(key), f"Descriptor file '{path}', key '{key}'")
            for key in list(arrays)
        }
    if not path.endswith(".npz"):
        raise ValueError(
            f"Descriptor file '{path}': expected a .npz, .json or (original JSON) .pkl file."
        )
    size = os.path.getsize(limits.regular_file(path, "Descriptor file"))
    with limits.open_zip(path, "Descriptor file") as z:
        members = limits.npz_headers(z, path)  # declared shapes, object arrays refused
        for m in members:
            _split_key(m.name, path, allow_embedding=True)
        limits.check_budget(path, sum(m.nbytes for m in members), size, "its descriptor arrays")
        return {
            m.name: _as_float32(
                limits.read_member(z, m, path),
                f"Descriptor file '{limits.short(path)}', key '{m.name}'",
            )
            for m in members
        }


def _as_float32(arr: np.ndarray, where: str) -> np.ndarray:
    check_numbers(arr, where)
    return np.asarray(arr, dtype=np.float32)


def check_numbers(arr: np.ndarray, where: str) -> None:
    """Raise unless arr holds real numbers, all finite and within +-MAX_ABS (row named)."""
    if arr.dtype.kind == "c":
        raise ValueError(
            f"{where}: complex values; descriptors must be real (the imaginary part would be "
            "dropped)."
        )
    if arr.dtype.kind not in "iuf":
        raise ValueError(f"{where}: holds {arr.dtype} values, not numbers; save a float array.")
    rows = arr.reshape(len(arr), -1) if arr.ndim else arr.reshape(1, 1)
    for bad, what in (
        (~np.isfinite(rows).all(axis=1), "hold NaN or inf"),
        ((np.abs(rows) > MAX_ABS).any(axis=1), f"hold values beyond +-{MAX_ABS:.0e}"),
    ):
        if bad.any():
            raise ValueError(
                f"{where}: {int(bad.sum())} rows {what} (first: row {int(np.argmax(bad))}); "
                "expected finite descriptors of moderate size."
            )


def _split_key(key: str, path: str, allow_embedding: bool = False) -> tuple[str, ...]:
    parts = key.split("/")
    if len(parts) not in ((2, 3) if allow_embedding else (2,)) or not all(parts):
        form = "'domain/split' or 'domain/split/embedding'" if allow_embedding else "'domain/split'"
        raise ValueError(
            f"Descriptor file '{path}': key '{key}' is not of the form {form} "
            "(a folder's descriptors from extract_dir_descriptors cannot be evaluated)."
        )
    return tuple(parts)


def validate_inputs(
    descriptors: Mapping[str, np.ndarray],
    labels: Mapping[str, Sequence],
    domains: Sequence[str],
    knn_names: Sequence[str],
) -> int:
    """Check descriptors against labels for every split the setups need; returns the dimension.

    Raises ValueError naming domain, split and what was expected: unknown domain or
    split, missing split, row count != info file, non-finite values, differing dims.
    """
    for key in descriptors:
        domain, split = _split_key(key, "descriptors")
        if domain not in registry.domain_names():
            raise ValueError(
                f"Descriptors for unknown domain '{domain}' (key '{key}'). "
                f"Valid domains: {', '.join(registry.domain_names())}."
            )
        if split not in registry.get_domain(domain).splits:
            raise ValueError(
                f"Descriptors for unknown split '{split}' of domain '{domain}' (key '{key}'). "
                f"Valid splits: {', '.join(registry.get_domain(domain).splits)}."
            )
    needs: dict[str, str] = {}
    for knn in knn_names:
        for d in registry.parse_domains(domains):
            setup = d.knn_setup(knn)
            needs.setdefault(f"{d.name}/{setup.query}", f"queries of {knn}")
            needs.setdefault(f"{d.name}/{setup.index}", f"index of {knn}")
    dim_key, dim = "", -1
    for key, why in needs.items():
        domain, split = key.split("/")
        where = f"Domain '{domain}', split '{split}' ({why})"
        if key not in descriptors:
            raise ValueError(
                f"{where}: no descriptors (expected key '{key}'; present: "
                f"{', '.join(sorted(descriptors)) or 'none'}). Extract that split or disable "
                "the setup (disabled_separate_knns / disabled_merged_knns / knn_eval_names)."
            )
        if key not in labels:
            raise ValueError(f"{where}: no labels; its info file '{split}.json' was not read.")
        _check_array(np.asarray(descriptors[key]), len(labels[key]), where)
        if dim < 0:
            dim_key, dim = key, descriptors[key].shape[1]
        elif descriptors[key].shape[1] != dim:
            raise ValueError(
                f"{where}: descriptors are {descriptors[key].shape[1]}-d but '{dim_key}' is "
                f"{dim}-d; every split must come from the same model and embedding."
            )
    return dim


def _check_array(arr: np.ndarray, expected_rows: int, where: str) -> None:
    if arr.ndim != 2:
        raise ValueError(f"{where}: expected a 2-D [images, dim] array, got shape {arr.shape}.")
    check_numbers(arr, where)
    if len(arr) != expected_rows:
        raise ValueError(
            f"{where}: {len(arr)} descriptor rows but the info file lists {expected_rows} "
            "images; rows must be the info file's images, in its order."
        )
    norms = np.linalg.norm(arr.astype(np.float64), axis=1)
    short = norms < MIN_NORM
    if short.any():
        raise ValueError(
            f"{where}: {int(short.sum())} rows have norm below {MIN_NORM:.0e} (first: row "
            f"{int(np.argmax(short))}); a zero vector has no direction to rank by."
        )
    if len(arr) and np.abs(norms - 1).max() > 1e-3:
        logging.warning("%s: descriptors are not L2-normalised; ranking by inner product.", where)


def extract(
    embed_fn: Callable[[np.ndarray], Any],
    batches: Iterable[dict],
    num_examples: int,
    dropped: Sized = (),
) -> np.ndarray:
    """float32 [num_examples, d]: embed_fn over batches, padded rows (mask False) removed, in order.

    `dropped` is filled by the batches with the examples they left out (unreadable files),
    which the final count allows for. The next batch is dispatched before the previous result
    is copied to the host, so an asynchronous embed_fn (a jitted JAX function) overlaps with
    the copy.
    """
    rows: list[np.ndarray] = []
    pending = None
    with tqdm(total=num_examples, desc="extract", unit="img", leave=False) as bar:
        for batch in batches:
            out = embed_fn(batch["images"])
            if pending is not None:
                rows.append(_unpad(*pending))
                bar.update(len(rows[-1]))
            pending = (out, batch.get("mask"))
        if pending is not None:
            rows.append(_unpad(*pending))
            bar.update(len(rows[-1]))
    count = sum(len(r) for r in rows)
    if count != num_examples - len(dropped):
        raise ValueError(
            f"Extracted {count} descriptors but {num_examples - len(dropped)} were expected."
        )
    if not rows:
        return np.zeros((0, 0), dtype=np.float32)
    return np.concatenate(rows).astype(np.float32, copy=False)


def _unpad(out: Any, mask: Any) -> np.ndarray:
    out = np.asarray(out, dtype=np.float32)
    if mask is None:
        return out
    mask = np.asarray(mask, dtype=bool)
    if mask.shape != out.shape[:1]:
        raise ValueError(f"Batch mask has shape {mask.shape}, embeddings {out.shape}.")
    return out[mask]
