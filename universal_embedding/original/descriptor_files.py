"""Descriptor and results files in the layouts of the original UnED code and of UDON.

Descriptors (docs/uned-benchmark.md §7): JSON text, even under the original's `.pkl` name
(`<base>/descriptors/descriptors_step_<step>.pkl`, step -1 = best checkpoint;
`descriptors_no_project/` for backbone features). The original wraps each split's n x d array
in a ONE-element list, `{"domain": {"split": [ [[...], ...] ]}}`; UDON names the embedding,
`{"domain": {"split": {"embedding": [[...], ...]}}}`. The original extract_dir_descriptors wrote
a folder's descriptors to `<workdir>/descriptors.json`, `{"descriptors": [[...], ...], "paths":
[...]}` (n x d, not wrapped; paths as listed, under base_dir). Reading parses JSON only (a pickle is
refused, never loaded), a block of rows at a time (original/json_stream.py), so memory holds
the arrays, not the text nor its number lists; a file in another layout is parsed whole to name
what is wrong. A file whose estimate (stream_memory_needed, json_memory_needed for the whole
parse) exceeds the memory available stops before parsing.

Results: the original writes a JSON list of three objects `[top_1, mp_k, map_k]`, each value
`np.round(fraction, 3)` (numpy rounds half to even on the scaled value: 0.0025 -> 0.002,
where Python's round gives 0.003), and each average is the rounded mean of the domains'
already rounded values (domains without a value left out).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from typing import Any

import numpy as np

from universal_embedding.original import json_stream

DECIMALS = 3  # the original's np.round(value, 3)
RESULTS_FILE = "results_original.json"
DIR_DESCRIPTORS_FILE = "descriptors.json"  # the original extract_dir_descriptors' output
JSON_EXTENSIONS = (".json", ".pkl")
# Bytes per parsed item while its Python lists exist: a number is a float object and a list slot
# (32) plus its float64 array entry (8); a list ('[') is a list object with spare slots (~64).
BYTES_PER_NUMBER = 40
BYTES_PER_LIST = 64
_PICKLE_START = b"\x80"  # every pickle protocol >= 2 starts with the PROTO opcode


def round_like_original(value: float | None) -> float | None:
    """np.round(value, 3) as a Python float; None for missing or NaN (JSON has no NaN)."""
    if value is None or math.isnan(value):
        return None
    return float(np.round(np.float64(value), DECIMALS))


def _metric_group(metric: str) -> int | None:
    """0 for top_1, 1 for mp_K, 2 for map_K, None for anything else (skipped_queries)."""
    if metric == "top_1":
        return 0
    if metric.startswith("mp_"):
        return 1
    if metric.startswith("map_"):
        return 2
    return None


def results_original(results: Mapping[str, float]) -> list[dict[str, float | None]]:
    """[top_1, mp_k, map_k] dicts of flat results, rounded and averaged as the original did.

    Domain values are rounded; each 'average:<protocol>:<knn>:<metric>' is the rounded mean of
    the rounded domain values of that protocol, kNN setup and metric. Domains without a value
    (every query skipped: NaN, written as null) are left out of the mean, as in results.json.
    Keys of further embeddings ('<embedding>/<domain>:...') are averaged among themselves.
    """
    groups: list[dict[str, float | None]] = [{}, {}, {}]
    domains_of: dict[tuple[str, str], list[float | None]] = {}
    for key, value in results.items():
        embedding, _, body = key.rpartition("/")  # 'teacher_embedd/cars:...': another embedding
        domain, _, rest = body.partition(":")
        group = _metric_group(key.rsplit(":", 1)[-1])
        if group is None or domain == "average" or not rest:
            continue
        groups[group][key] = round_like_original(value)
        domains_of.setdefault((embedding, rest), []).append(groups[group][key])
    for (embedding, rest), values in domains_of.items():
        present = [v for v in values if v is not None]
        mean = float(np.mean(present)) if present else None
        average = f"{embedding}/average:{rest}" if embedding else f"average:{rest}"
        groups[_metric_group(rest.rsplit(":", 1)[-1])][average] = round_like_original(mean)
    return groups


def write_results_original(workdir: str, results: Mapping[str, float]) -> str:
    """workdir/results_original.json (the original's three-object layout); returns its path."""
    path = os.path.join(workdir, RESULTS_FILE)
    with open(path, "w") as f:
        json.dump(results_original(results), f, indent=1)
    return path


def descriptor_path(base: str, step: int | str, backbone: bool = False) -> str:
    """<base>/descriptors[_no_project]/descriptors_step_<step>.pkl, as the original names it."""
    folder = "descriptors_no_project" if backbone else "descriptors"
    return os.path.join(base, folder, f"descriptors_step_{step}.pkl")


def _tolist(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"cannot write {type(value).__name__} into a descriptor file")


def save_original(path: str, descriptors: Mapping[str, np.ndarray]) -> None:
    """Write 'domain/split' arrays in the original layout (each split a one-element list) and
    'domain/split/embedding' arrays in UDON's; JSON text whatever the extension."""
    nested: dict[str, dict[str, Any]] = {}
    for key, value in descriptors.items():
        parts = key.split("/")
        if len(parts) not in (2, 3) or not all(parts):
            raise ValueError(f"Descriptor key '{key}' is not 'domain/split[/embedding]'.")
        arr = np.asarray(value, dtype=np.float32)
        if len(parts) == 3:
            nested.setdefault(parts[0], {}).setdefault(parts[1], {})[parts[2]] = arr
        else:
            nested.setdefault(parts[0], {})[parts[1]] = [arr]
    write_json(path, nested)


def save_dir_original(workdir: str, descriptors: np.ndarray, paths: list[str]) -> str:
    """workdir/descriptors.json as the original extract_dir_descriptors wrote it:
    {"descriptors": [[...], ...] (n x d, no one-element list), "paths": [...]}; returns its path."""
    path = os.path.join(workdir, DIR_DESCRIPTORS_FILE)
    write_json(path, {"descriptors": np.asarray(descriptors, np.float32), "paths": list(paths)})
    return path


def write_json(path: str, tree: Any) -> None:
    """The text json.dump(tree) writes (arrays as nested lists, the original's encoding: default
    separators, non-ASCII escaped), streamed: an array is encoded ROWS_PER_WRITE rows at a time,
    so memory holds one block's lists, not the whole file's; written to a temporary name and
    renamed into place."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    tmp = os.path.join(folder, f".{os.path.basename(path)}.tmp-{os.getpid()}")
    try:
        with open(tmp, "w") as f:
            _write_value(f, tree)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


ROWS_PER_WRITE = 20_000


def _write_value(f: Any, value: Any) -> None:
    if isinstance(value, dict):
        f.write("{")
        for i, (key, item) in enumerate(value.items()):
            f.write(f"{', ' if i else ''}{json.dumps(key)}: ")
            _write_value(f, item)
        f.write("}")
    elif isinstance(value, np.ndarray) and value.ndim == 2 and len(value):
        f.write("[[")
        for lo in range(0, len(value), ROWS_PER_WRITE):
            block = json.dumps(value[lo : lo + ROWS_PER_WRITE].tolist())
            f.write(("], [" if lo else "") + block[2:-2])
        f.write("]]")
    elif isinstance(value, list) and any(isinstance(v, (dict, np.ndarray)) for v in value):
        f.write("[")
        for i, item in enumerate(value):
            f.write(", " if i else "")
            _write_value(f, item)
        f.write("]")
    else:
        f.write(json.dumps(value, default=_tolist))


class _Bad:
    """A split that could not become an array; reported with its domain and split."""

    def __init__(self, reason: str):
        self.reason = reason


def _to_array(value: Any) -> Any:
    """A parsed split (or UDON embedding) as an array; _Bad when its layout is wrong."""
    if not isinstance(value, list):
        return value
    if not value:
        return _Bad("is an empty list; expected its n x d descriptor array")
    first = value[0]
    if isinstance(first, list) and first and isinstance(first[0], list):
        if len(value) != 1:
            return _Bad(
                f"is a list of {len(value)} arrays; the original layout wraps each split's "
                "n x d array in a ONE-element list"
            )
        value = first
    try:
        arr = np.asarray(value)
    except ValueError:
        return _Bad("has rows of different lengths (ragged); every row must have d numbers")
    if arr.ndim != 2 or arr.shape[1] == 0:
        return _Bad(f"is an array of shape {arr.shape}; expected n x d rows of numbers")
    return arr


def _convert_lists(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    return {key: _to_array(value) for key, value in pairs}


def available_memory() -> int:
    """Bytes of memory available now (MemAvailable on Linux, else all physical memory)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def _count_commas_and_lists(path: str) -> tuple[int, int]:
    commas = lists = 0
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            commas += chunk.count(b",")
            lists += chunk.count(b"[")
    return commas, lists


def json_memory_needed(path: str) -> int:
    """Upper estimate of the peak memory of parsing a JSON descriptor file whole (json.load): its
    text plus, per number (counted by its commas) and per list, its Python objects, as if all
    lived at once. About 3x the size for real descriptors (~20 characters a number)."""
    commas, lists = _count_commas_and_lists(path)
    return os.path.getsize(path) + BYTES_PER_NUMBER * (commas + 1) + BYTES_PER_LIST * lists


def stream_memory_needed(path: str) -> int:
    """Upper estimate of the peak memory of reading a descriptor file block by block
    (original/json_stream.py): 16 bytes a number (its float64 entry, once more while a split's
    blocks are joined) plus the text buffer and one block's Python lists."""
    commas, _ = _count_commas_and_lists(path)
    return 16 * (commas + 1) + 32 * json_stream.CHUNK


def _check_memory(path: str, needed: int) -> None:
    available = available_memory()
    if needed > available:
        raise ValueError(
            f"Descriptor file '{path}' is {os.path.getsize(path) / 1e9:.2f} GB of JSON; reading "
            f"it needs about {needed / 1e9:.1f} GB of memory but {available / 1e9:.1f} GB are "
            "available. Read it on a machine with more memory, or save the descriptors as .npz."
        )


def _check_not_pickle(path: str) -> None:
    with open(path, "rb") as f:
        if f.read(1) == _PICKLE_START:
            raise ValueError(
                f"Descriptor file '{path}' is a Python pickle, which is never loaded (unpickling "
                "can run any code). The original code writes JSON under this name: save the "
                "descriptors as JSON or .npz."
            )


def load_json_arrays(path: str) -> dict[str, np.ndarray]:
    """{'domain/split' or 'domain/split/embedding': array as parsed} of a JSON descriptor file
    (original, UDON, or one n x d list per split); numbers are checked by the caller. The usual
    layouts are read a block of rows at a time (json_stream); anything else is parsed whole by
    json.load, which names what is wrong."""
    _check_not_pickle(path)
    _check_memory(path, stream_memory_needed(path))
    try:
        with open(path, encoding="utf-8") as f:
            return json_stream.read_arrays(f)
    except (json_stream.Unexpected, UnicodeDecodeError, RecursionError):
        pass
    _check_memory(path, json_memory_needed(path))
    try:
        with open(path, encoding="utf-8") as f:
            tree = json.load(f, object_pairs_hook=_convert_lists)
    except (ValueError, UnicodeDecodeError) as e:  # JSONDecodeError, a 5000-digit number, ...
        raise ValueError(
            f"Descriptor file '{path}' is not valid JSON ({e}); it may be truncated: write it "
            "again."
        ) from None
    except RecursionError:
        raise ValueError(
            f"Descriptor file '{path}': lists nested too deeply; expected "
            '{"domain": {"split": [ [[...], ...] ]}}.'
        ) from None
    if not isinstance(tree, dict) or not all(isinstance(v, dict) for v in tree.values()):
        raise ValueError(
            f'Descriptor file \'{path}\': expected {{"domain": {{"split": [ [[...], ...] ]}}}} '
            '(original) or {"domain": {"split": {"embedding": [[...], ...]}}} (UDON).'
        )
    out: dict[str, np.ndarray] = {}
    for domain, splits in tree.items():
        for split, value in splits.items():
            named = value.items() if isinstance(value, dict) else [(None, value)]
            for name, arr in named:
                key = "/".join(p for p in (domain, split, name) if p is not None)
                if isinstance(arr, _Bad):
                    raise ValueError(f"Descriptor file '{path}', key '{key}': {arr.reason}.")
                if not isinstance(arr, np.ndarray):
                    raise ValueError(
                        f"Descriptor file '{path}', key '{key}': holds {type(arr).__name__} "
                        "where the n x d descriptor array belongs."
                    )
                out[key] = arr
    return out
