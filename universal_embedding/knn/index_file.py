"""Check a saved `index.faiss` before faiss reads it: every size faiss would allocate from.

faiss.read_index trusts the sizes a file declares and allocates them before reading the data
(a 45-byte file can make it allocate gigabytes). This module walks the layout of the three
kinds this project writes (knn/saved_index.py) and refuses, in one line naming the file and
the field, any declared size that the bytes left in the file cannot hold, any count that
disagrees with meta.json or with another field, and any other index type.

On-disk layout (faiss `impl/index_write.cpp` / `impl/index_read.cpp`, v1.15.0; all numbers
little-endian; a "vector" is a uint64 element count followed by the elements):

- index header: fourcc (4 bytes), d (int32), ntotal (int64), two int64 dummies, is_trained
  (1 byte), metric_type (int32), metric_arg (float32, only when metric_type > 1).
- flat, fourcc `IxFI` / `IxF2` / `IxFl`: header, then the codes as a vector whose count is in
  4-byte units (READXBVECTOR): ntotal x d float32.
- IVF flat, fourcc `IwFl`: header, nlist (uint64), nprobe (uint64), the quantizer (a whole
  index, here a flat one holding the nlist centroids), the direct map (type: 1 byte, then a
  vector of int64; type 2 (hashtable) adds a vector of int64 pairs), then the inverted lists:
  fourcc `ilar`, nlist (uint64), code_size (uint64), list_type `full` (a vector of nlist
  uint64 list sizes) or `sprs` (a vector of (list, size) uint64 pairs), then for each
  non-empty list its size x code_size code bytes and size int64 ids, without count prefixes.
  faiss allocates nlist list slots and every list's codes and ids from these sizes.
- HNSW flat, fourcc `IHNf`: header, then the graph: assign_probas (vector of float64),
  cum_nneighbor_per_level (vector of int32), levels (vector of int32, one per vector),
  offsets (vector of uint64, ntotal + 1), neighbors (vector of int32), then entry_point,
  max_level, efConstruction, efSearch and a deprecated int (5 x int32); then the storage
  (a whole flat index of the ntotal vectors).
"""

from __future__ import annotations

import struct

import numpy as np

from universal_embedding.errors import limits

FLAT = (b"IxFI", b"IxF2", b"IxFl")  # faiss IndexFlat (inner product, L2, other metric)
IVF_FLAT, HNSW_FLAT = b"IwFl", b"IHNf"
FOURCC_OF_KIND = {"flat": FLAT, "ivf": (IVF_FLAT,), "hnsw": (HNSW_FLAT,)}
HEADER = struct.Struct("<4siqqq?i")  # fourcc, d, ntotal, 2 dummies, is_trained, metric_type
_REBUILD = "(damaged or crafted); refused before reading it. Rebuild the index."


class _Walker:
    """Reads an index file field by field, never more than the file holds."""

    def __init__(self, f, path: str, size: int):
        self.f, self.path, self.size = f, path, size

    @property
    def left(self) -> int:
        return self.size - self.f.tell()

    def fail(self, text: str) -> None:
        raise ValueError(f"{limits.short(self.path)}: {text}")

    def take(self, fmt: str, field: str) -> tuple:
        layout = struct.Struct("<" + fmt)
        data = self.f.read(layout.size)
        if len(data) < layout.size:
            self.fail(f"ends inside {field} ({self.size:,}-byte file) {_REBUILD}")
        return layout.unpack(data)

    def declared(self, field: str, count: int, item: int) -> None:
        """Refuse `count` items of `item` bytes that the rest of the file cannot hold."""
        if count * item > self.left:
            raise limits.LimitError(
                f"{limits.short(self.path)}: {field} declares {count:,} x {item} bytes, more than "
                f"the {self.left:,} bytes left in its {self.size:,}-byte file {_REBUILD}"
            )

    def vector(self, field: str, item: int, unit: int = 1) -> int:
        """A count-prefixed vector of `item`-byte elements (count in units of `unit`), skipped;
        returns the element count."""
        (count,) = self.take("Q", field)
        count *= unit
        self.declared(field, count, item)
        self.f.seek(count * item, 1)
        return count

    def array(self, field: str, dtype: str) -> np.ndarray:
        """A count-prefixed vector read into memory (its size checked against the file first)."""
        (count,) = self.take("Q", field)
        item = np.dtype(dtype).itemsize
        self.declared(field, count, item)
        return np.frombuffer(self.f.read(count * item), dtype=dtype)


def _header(w: _Walker, kinds: tuple[bytes, ...], role: str) -> tuple[bytes, int, int]:
    fourcc, d, ntotal, _, _, _, metric = w.take(HEADER.format[1:], f"the {role} header")
    if fourcc not in kinds:
        w.fail(f"the {role} is a faiss {fourcc!r} index, expected {' or '.join(map(repr, kinds))}.")
    if metric > 1:
        w.take("f", f"the {role}'s metric_arg")
    if not (0 < d <= 1 << 20 and ntotal >= 0):
        w.fail(f"the {role} header declares dimension {d} and {ntotal} vectors {_REBUILD}")
    return fourcc, d, ntotal


def _flat(w: _Walker, d: int, ntotal: int, role: str) -> None:
    (units,) = w.take("Q", f"the {role}'s codes")
    if units != d * ntotal:
        w.fail(f"the {role}'s codes field declares {units:,} floats for {ntotal} x {d} {_REBUILD}")
    w.declared(f"the {role}'s codes", units, 4)
    w.f.seek(units * 4, 1)


def _inverted_lists(w: _Walker, nlist: int, d: int, ntotal: int) -> None:
    tag, lists, code_size = w.take("4sQQ", "the inverted lists header")
    if (tag, lists, code_size) != (b"ilar", nlist, 4 * d):
        w.fail(
            f"inverted lists {tag!r} of {lists} lists x {code_size} bytes, expected b'ilar' of "
            f"{nlist} x {4 * d} {_REBUILD}"
        )
    (list_type,) = w.take("4s", "the inverted lists' type")
    if list_type == b"full":
        sizes = w.array("the inverted list sizes", "<u8")
        if len(sizes) != nlist:
            w.fail(f"{len(sizes)} inverted list sizes for nlist {nlist} {_REBUILD}")
    elif list_type == b"sprs":
        pairs = w.array("the inverted list sizes", "<u8")
        if len(pairs) % 2 or np.any(pairs[0::2] >= nlist):
            w.fail(f"sparse inverted list sizes do not name lists below nlist {nlist} {_REBUILD}")
        sizes = pairs[1::2]
    else:
        w.fail(f"inverted lists of type {list_type!r}, expected b'full' or b'sprs' {_REBUILD}")
    per_row = code_size + 8  # codes + int64 id
    biggest = int(sizes.max()) if len(sizes) else 0
    w.declared("an inverted list size", biggest, per_row)
    total = sum(sizes.tolist())
    w.declared("the inverted list sizes' sum", total, per_row)
    if total != ntotal:
        w.fail(f"the inverted lists hold {total:,} vectors, the header {ntotal:,} {_REBUILD}")
    w.f.seek(total * per_row, 1)


def _ivf(w: _Walker, d: int, ntotal: int) -> None:
    nlist, _ = w.take("QQ", "nlist and nprobe")
    _, qd, centroids = _header(w, FLAT, "quantizer")
    if (qd, centroids) != (d, nlist):
        w.fail(f"the quantizer holds {centroids} x {qd} centroids for nlist {nlist} {_REBUILD}")
    _flat(w, d, nlist, "quantizer")
    (map_type,) = w.take("B", "the direct map type")
    w.vector("the direct map", 8)
    if map_type == 2:
        w.vector("the direct map's hashtable", 16)
    _inverted_lists(w, nlist, d, ntotal)


def _hnsw(w: _Walker, d: int, ntotal: int) -> None:
    w.vector("the HNSW assign_probas", 8)
    w.vector("the HNSW cum_nneighbor_per_level", 4)
    levels = w.vector("the HNSW levels", 4)
    offsets = w.vector("the HNSW offsets", 8)
    if (levels, offsets) != (ntotal, ntotal + 1):
        w.fail(f"the HNSW graph has {levels} levels and {offsets} offsets for {ntotal} {_REBUILD}")
    w.vector("the HNSW neighbors", 4)
    w.take("5i", "the HNSW entry point and settings")
    _, sd, stored = _header(w, FLAT, "HNSW storage")
    if (sd, stored) != (d, ntotal):
        w.fail(f"the HNSW storage holds {stored} x {sd} vectors for {ntotal} x {d} {_REBUILD}")
    _flat(w, d, ntotal, "HNSW storage")


def check_layout(f, path: str, size: int, kind: str) -> None:
    """Walk the whole index file `f` (at offset 0) of meta.json's `kind`: one-line ValueError
    (LimitError for a declared size beyond the file) naming the file and the field."""
    w = _Walker(f, path, size)
    fourcc, d, ntotal = _header(w, FOURCC_OF_KIND.get(kind, FLAT), f"{kind} index")
    if fourcc in FLAT:
        _flat(w, d, ntotal, "index")
    elif fourcc == IVF_FLAT:
        _ivf(w, d, ntotal)
    else:
        _hnsw(w, d, ntotal)
    if w.left:
        w.fail(f"{w.left:,} bytes follow the index's last field {_REBUILD}")
