"""docs/install.md's command table lists every console script of pyproject.toml."""

from __future__ import annotations

import pathlib
import re
import tomllib

REPO = pathlib.Path(__file__).resolve().parents[1]


def test_every_console_script_is_in_the_install_table():
    with open(REPO / "pyproject.toml", "rb") as f:
        scripts = set(tomllib.load(f)["project"]["scripts"])
    rows = [
        line for line in (REPO / "docs/install.md").read_text().splitlines() if line.startswith("|")
    ]
    listed = {name for row in rows for name in re.findall(r"`(ue-[a-z-]+)`", row.split("|")[1])}
    assert scripts - listed == set()
