"""The Python API snippets of README.md and docs/using-a-model.md embed every test image (JPEG
and PNG) in the order of the test descriptors (the info file's order), as they say."""

from __future__ import annotations

import json
import os
import pathlib
import re

import pytest

import universal_embedding

REPO = pathlib.Path(__file__).resolve().parents[1]


def python_block(page: str, after: str) -> str:
    """The first ```python block of `page` after the text `after`."""
    text = (REPO / page).read_text(encoding="utf-8")
    start = text.index(after)
    return re.search(r"```python\n(.*?)```", text[start:], re.DOTALL).group(1)


class Recorder:
    """Stands in for Embedder: records what embed() gets."""

    calls: list = []

    @classmethod
    def from_workdir(cls, workdir, *args, **kwargs):
        return cls()

    def embed(self, images, **kwargs):
        Recorder.calls.append(list(images))
        return None


@pytest.mark.parametrize(
    "page, after, data, domain",
    [
        ("README.md", "**Use a model**", "demo_work/data", "cars"),
        ("docs/using-a-model.md", "## Python API", "toys_data", "toys"),
    ],
)
def test_snippet_embeds_jpeg_and_png_in_descriptor_order(
    page, after, data, domain, tmp_path, monkeypatch
):
    entries = [
        f"{domain}/test/c2/001.png",
        f"{domain}/test/c1/000.jpg",
        f"{domain}/test/c1/002.png",
    ]
    for rel in entries:
        (tmp_path / data / "images" / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / data / "images" / rel).write_bytes(b"image")
    info = tmp_path / data / "info_files" / domain / "test.json"
    info.parent.mkdir(parents=True)
    info.write_text(json.dumps([{"path": p, "class_id": i} for i, p in enumerate(entries)]))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(universal_embedding, "Embedder", Recorder, raising=False)
    Recorder.calls = []
    exec(python_block(page, after), {})
    assert Recorder.calls == [[os.path.join(data, "images", p) for p in entries]]
