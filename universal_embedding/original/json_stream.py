"""Read a JSON descriptor file a block of rows at a time (original/descriptor_files.py).

The layouts descriptor files use, `{"domain": {"split": [ [[...], ...] ]}}` (the original),
`{"domain": {"split": {"embedding": [[...], ...]}}}` (UDON) and `{"domain": {"split": [[...],
...]}}`, are walked token by token over a text buffer refilled CHUNK characters at a time; each
n x d array is parsed by json.loads a block of complete rows at a time and stacked as float64,
so memory holds the arrays, one block and one chunk, not the file's text nor its number lists.
Anything else raises Unexpected (the caller falls back to json.load, which names the problem).
"""

from __future__ import annotations

import json
from typing import TextIO

import numpy as np

CHUNK = 1 << 22  # characters read at a time
_WS = " \t\n\r"


class Unexpected(ValueError):
    """The file is not one of the layouts read here (or not valid JSON)."""


class _Text:
    """A text file seen through a buffer: `buf[pos:]` is what is not consumed yet."""

    def __init__(self, f: TextIO):
        self.f, self.buf, self.pos, self.eof = f, "", 0, False

    def more(self) -> bool:
        """Read one more chunk (dropping what is consumed); False at the end of the file."""
        if self.eof:
            return False
        chunk = self.f.read(CHUNK)
        self.buf, self.pos = self.buf[self.pos :] + chunk, 0
        self.eof = not chunk
        return bool(chunk)

    def peek(self) -> str:
        """The next non-blank character ('' at the end), not consumed."""
        while True:
            while self.pos < len(self.buf) and self.buf[self.pos] in _WS:
                self.pos += 1
            if self.pos < len(self.buf) or not self.more():
                return self.buf[self.pos : self.pos + 1]

    def take(self, char: str) -> None:
        if self.peek() != char:
            raise Unexpected(f"expected {char!r} at {self.buf[self.pos : self.pos + 20]!r}")
        self.pos += 1

    def brackets(self) -> int:
        """How many '[' (blanks between them allowed) come next; none consumed."""
        i, n = self.pos, 0
        while True:
            if i >= len(self.buf):
                ahead = i - self.pos
                if not self.more():
                    return n
                i = self.pos + ahead
                continue
            if self.buf[i] == "[":
                n += 1
            elif self.buf[i] not in _WS:
                return n
            i += 1

    def string(self) -> str:
        if self.peek() != '"':
            raise Unexpected("expected a key")
        while True:
            try:
                value, end = json.decoder.scanstring(self.buf, self.pos + 1)
            except json.JSONDecodeError:
                if self.more():
                    continue
                raise Unexpected("unterminated string") from None
            self.pos = end
            return value


_NOT_NUMBERS = ("n", "t", "f", '"', "{")  # null, true, false, strings, objects: json.load's job


def _parse_rows(block: str, width: int | None) -> np.ndarray:
    """'[a, b], [c, d]' -> float64 [[a, b], [c, d]]; Unexpected unless rows of `width` numbers."""
    if any(c in block for c in _NOT_NUMBERS):
        raise Unexpected("not only numbers")
    try:
        arr = np.asarray(json.loads(f"[{block}]"), dtype=np.float64)
    except (ValueError, TypeError):
        raise Unexpected("not rows of numbers") from None
    if arr.ndim != 2 or arr.shape[1] == 0 or (width is not None and arr.shape[1] != width):
        raise Unexpected("rows of different lengths")
    return arr


def _rows(text: _Text) -> np.ndarray:
    """An n x d list of number lists (the buffer at its opening '['), as a float64 array:
    the complete rows buffered are parsed at once, then the buffer is refilled."""
    text.take("[")
    blocks: list[np.ndarray] = []
    while True:
        c = text.peek()
        if c == "]" and blocks:
            text.pos += 1
            return np.concatenate(blocks) if len(blocks) > 1 else blocks[0]
        if c == "," and blocks:
            text.pos += 1
            c = text.peek()
        if c != "[":
            raise Unexpected("expected a row")
        end = text.buf.find("]]", text.pos)  # the last row's ']' and the array's own
        last = end if end >= 0 else text.buf.rfind("]", text.pos)
        if last < 0:  # not one whole row buffered
            if not text.more():
                raise Unexpected("the file ends inside an array")
            continue
        width = blocks[0].shape[1] if blocks else None
        blocks.append(_parse_rows(text.buf[text.pos : last + 1], width))
        text.pos = last + 1


def _value(text: _Text) -> np.ndarray | dict[str, np.ndarray]:
    """A split's value: rows, [rows] (the original's one-element list) or {name: rows}."""
    if text.peek() == "{":
        return dict(_object(text, _rows))
    depth = text.brackets()
    if depth == 2:
        return _rows(text)
    if depth != 3:
        raise Unexpected("a split that is not rows")
    text.take("[")
    arr = _rows(text)
    text.take("]")
    return arr


def _object(text: _Text, read) -> list[tuple[str, object]]:
    text.take("{")
    items = []
    while text.peek() != "}":
        if items:
            text.take(",")
        key = text.string()
        text.take(":")
        items.append((key, read(text)))
    text.take("}")
    return items


def read_arrays(f: TextIO) -> dict[str, np.ndarray]:
    """{'domain/split' or 'domain/split/embedding': float64 array} of a descriptor file in one
    of the layouts above; Unexpected for anything else."""
    text = _Text(f)
    out: dict[str, np.ndarray] = {}
    for domain, splits in _object(text, lambda t: _object(t, _value)):
        for split, value in splits:
            named = value.items() if isinstance(value, dict) else [(None, value)]
            for name, arr in named:
                out["/".join(p for p in (domain, split, name) if p is not None)] = arr
    if text.peek() != "":
        raise Unexpected("text after the descriptors")
    return out
