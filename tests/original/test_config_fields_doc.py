"""docs/original-fields.md is the migration table rendered from config_fields.RULES: one source
of truth for how each field of the original code maps onto ours."""

from __future__ import annotations

import pathlib
import subprocess
import sys

from universal_embedding.original import config_fields

REPO = pathlib.Path(__file__).resolve().parents[2]
REGENERATE = "python -m universal_embedding.original.config_fields > docs/original-fields.md"


def test_the_docs_file_is_the_rendered_table():
    on_disk = (REPO / config_fields.DOC_FILE).read_text()
    assert on_disk == config_fields.fields_doc(), f"docs file out of date: run `{REGENERATE}`"


def test_every_rule_has_one_row_naming_its_target_or_its_advice():
    rows = config_fields.markdown_table().splitlines()[2:]
    assert len(rows) == len(config_fields.RULES)
    for row, (name, rule) in zip(rows, config_fields.RULES.items(), strict=True):
        assert row.startswith(f"| `{name}` | ") and row.endswith(" |")
        assert row.count(" | ") == 1, row  # two cells: every '|' in the text is escaped
        ours = row.split(" | ", 1)[1]
        assert f"`{rule.target}`" in ours if rule.target else "no effect" in ours


def test_the_module_prints_the_docs_file():
    out = subprocess.run(
        [sys.executable, "-m", "universal_embedding.original.config_fields"],
        cwd=REPO, capture_output=True, text=True, check=True, timeout=120,
    )  # fmt: skip
    assert out.stdout == config_fields.fields_doc()
