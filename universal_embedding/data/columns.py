"""Per-image columns of an info file held as arrays, not as a Python object per image.

A split of UnED lists up to 1.4M images; with 36-character paths and one label an image, a
tuple of str and a tuple of int tuples hold 177 bytes an image, these two columns 60 (the
path's UTF-8 bytes and three int64s).
`LabelSets` is the ragged label column (one or more class ids an image), `PackedStrings` the
path column; both are read-only sequences (`len`, indexing, iteration), so code written for
tuples reads them unchanged, and vectorised code uses their arrays.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Iterable, Sequence

import numpy as np

# Lone surrogates are legal in JSON strings and Python str; keep them through UTF-8 round trips.
_UTF8_ERRORS = "surrogatepass"


def _offsets(lengths: np.ndarray) -> np.ndarray:
    out = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=out[1:])
    return out


def _position(i, n: int) -> int:
    """Index i of a sequence of n as a position in [0, n) (IndexError outside)."""
    i = int(i)
    if not -n <= i < n:
        raise IndexError(f"index {i} out of range for {n} items")
    return i + n if i < 0 else i


class _Ragged(Sequence):
    """A sequence whose item i is made from the span offsets[i]:offsets[i+1] (by _item)."""

    offsets: np.ndarray  # int64 [n + 1]

    def _item(self, lo: int, hi: int):
        raise NotImplementedError

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, i):
        if isinstance(i, slice):
            return tuple(self[j] for j in range(*i.indices(len(self))))
        lo, hi = self.offsets[_position(i, len(self)) :][:2].tolist()
        return self._item(lo, hi)


@dataclasses.dataclass(frozen=True, eq=False)
class LabelSets(_Ragged):
    """n label sets: set i is values[offsets[i]:offsets[i+1]] (item i: a tuple of ints)."""

    values: np.ndarray  # int64
    offsets: np.ndarray  # int64 [n + 1]

    def _item(self, lo: int, hi: int) -> tuple[int, ...]:
        return tuple(self.values[lo:hi].tolist())

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    @classmethod
    def from_sets(cls, sets: Sequence[Sequence[int]]) -> LabelSets:
        """From a sequence of label tuples (or lists)."""
        lengths = np.fromiter(map(len, sets), dtype=np.int64, count=len(sets))
        values = np.fromiter(
            itertools.chain.from_iterable(sets), dtype=np.int64, count=int(lengths.sum())
        )
        return cls(values, _offsets(lengths))


@dataclasses.dataclass(frozen=True, eq=False)
class PackedStrings(_Ragged):
    """n strings stored as one UTF-8 buffer and offsets (item i: a str)."""

    data: bytes
    offsets: np.ndarray  # int64 [n + 1]

    def _item(self, lo: int, hi: int) -> str:
        return self.data[lo:hi].decode("utf-8", _UTF8_ERRORS)

    def __iter__(self):
        for lo, hi in itertools.pairwise(self.offsets.tolist()):
            yield self._item(lo, hi)

    @classmethod
    def from_strings(cls, strings: Iterable[str]) -> PackedStrings:
        encoded = [s.encode("utf-8", _UTF8_ERRORS) for s in strings]
        lengths = np.fromiter(map(len, encoded), dtype=np.int64, count=len(encoded))
        return cls(b"".join(encoded), _offsets(lengths))
