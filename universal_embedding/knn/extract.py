"""Embedding whole splits: every device, every process, rows put back in info-file order.

Batches are supplied by the caller (the TensorFlow input pipeline lives in data/), so this
module imports no TensorFlow. Shuffled splits (train) carry record keys, matched against the
info file's paths to restore its order; anything missing or extra raises naming the split.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence

import jax
import numpy as np
from absl import logging
from tqdm import tqdm

from universal_embedding.data import registry
from universal_embedding.knn import descriptors as knn_descriptors

EmbedFn = Callable[[np.ndarray], np.ndarray]


def is_shuffled(key: str) -> bool:
    """Whether 'domain/split' is stored shuffled (train splits), so needs ordering by record key."""
    return key.split("/", 1)[1] in registry.TRAIN_SPLITS


def _lookup(index: Mapping[str, int], key: str) -> int:
    """Path id of a record key (-2: absent); rp2k keys may hold `#U`-escaped names."""
    if key in index or "#U" not in key:
        return index.get(key, -2)
    from universal_embedding.data.image_files import unescape_name

    return index.get(unescape_name(key), -2)


def _with_positions(
    batches: Iterable[dict], index: Mapping[str, int], key: str, unknown: list[str]
) -> Iterator[dict]:
    """Add 'positions' (int64 path id of each record; -1 padding, -2 unknown key), drop 'keys'."""
    for b in batches:
        if "keys" not in b:
            raise ValueError(f"{key}: batches carry no 'keys'; call eval_batches(with_keys=True).")
        mask = np.asarray(b["mask"], bool)
        pos = np.fromiter((_lookup(index, k) for k in b["keys"]), np.int64, len(mask))
        pos[~mask] = -1
        if len(unknown) < 3:
            unknown.extend(str(k) for k in b["keys"][pos == -2][: 3 - len(unknown)])
        yield {k: v for k, v in b.items() if k != "keys"} | {"positions": pos}


def _global_masks(batches: Iterable[dict]) -> Iterator[dict]:
    """With several processes: each local batch gets the global mask (and positions)."""
    if jax.process_count() == 1:
        yield from batches
        return
    from jax.experimental import multihost_utils

    for b in batches:
        local = {k: np.asarray(b[k]) for k in ("mask", "positions") if k in b}
        gathered = multihost_utils.process_allgather(local, tiled=True)
        yield {**b, **{k: np.asarray(v) for k, v in gathered.items()}}


def _record_positions(batches: Iterable[dict], sink: list[np.ndarray]) -> Iterator[dict]:
    """Pass batches through, keeping the positions of their real rows (extract's row order)."""
    for b in batches:
        sink.append(b["positions"][np.asarray(b["mask"], bool)])
        yield b


def path_index(paths: Sequence[str]) -> tuple[dict[str, int], np.ndarray]:
    """({path: its first info row}, int64 [n] first row of each row's path): ids for matching."""
    index: dict[str, int] = {}
    ids = np.fromiter((index.setdefault(p, i) for i, p in enumerate(paths)), np.int64, len(paths))
    return index, ids


def info_order(
    positions: np.ndarray, info_ids: np.ndarray, key: str, unknown: Sequence[str] = ()
) -> np.ndarray:
    """perm with rows[perm] in info-file order; positions[j] = path id of extracted row j.

    Ids come from path_index (negative: key not in the info file). A path listed k times
    must come k times (same file, same descriptor); anything else raises naming the split.
    """
    where = "Domain '{}', split '{}'".format(*key.split("/", 1))
    fix = "Re-convert the split from its info file (python -m universal_embedding.data.prepare)."
    if np.any(positions < 0):
        raise ValueError(
            f"{where}: {int(np.sum(positions < 0))} TFRecord key(s) are not paths of its info "
            f"file, e.g. {list(unknown)} (a record's 'key' must be its info-file path). {fix}"
        )
    n = len(info_ids)
    by_row, by_info = np.argsort(positions, kind="stable"), np.argsort(info_ids, kind="stable")
    if len(positions) != n or not np.array_equal(positions[by_row], info_ids[by_info]):
        have = np.bincount(positions, minlength=n)
        want = np.bincount(info_ids, minlength=n)
        raise ValueError(
            f"{where}: {len(positions)} records for {n} info-file rows; info rows with extra "
            f"records e.g. {np.flatnonzero(have > want)[:3].tolist()}, without a record e.g. "
            f"{np.flatnonzero(have < want)[:3].tolist()}. {fix}"
        )
    perm = np.empty(n, np.int64)
    perm[by_info] = by_row
    return perm


def _extract_by_key(
    embed_fn: EmbedFn, batches: Iterable[dict], paths: Sequence[str], key: str
) -> np.ndarray:
    """Descriptors of a split whose records are in any order, put in info-file order by key."""
    index, info_ids = path_index(paths)
    sink: list[np.ndarray] = []
    unknown: list[str] = []
    batches = _with_positions(batches, index, key, unknown)
    batches = _record_positions(_global_masks(batches), sink)
    rows = knn_descriptors.extract(embed_fn, batches, len(paths))
    positions = np.concatenate(sink) if sink else np.zeros(0, np.int64)
    return rows[info_order(positions, info_ids, key, unknown)]


def extract_splits(
    embed_fn: EmbedFn,
    keys: Sequence[str],
    batches_for: Callable[[str, str], Iterable[dict]],
    num_examples: Mapping[str, int],
    info_paths: Mapping[str, Sequence[str]] | None = None,
) -> dict[str, np.ndarray]:
    """Descriptors of every 'domain/split' key, each split extracted once, rows in info order.

    Splits named in `info_paths` ({key: info-file paths}) may come in any record order: their
    batches must carry 'keys' (eval_batches(with_keys=True)) and their rows are put in
    info-file order by key. Other splits' batches must already be in info-file order.
    """
    info_paths = info_paths or {}
    out: dict[str, np.ndarray] = {}
    for key in tqdm(list(dict.fromkeys(keys)), desc="splits", unit="split"):
        domain, split = key.split("/", 1)
        logging.info("Extracting %s (%d images)", key, num_examples[key])
        batches = batches_for(domain, split)
        if key in info_paths:
            out[key] = _extract_by_key(embed_fn, batches, info_paths[key], key)
        else:
            out[key] = knn_descriptors.extract(embed_fn, _global_masks(batches), num_examples[key])
    return out
