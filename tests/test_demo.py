"""demo.py: the comparison table, the command line, and (slow) the demo's acceptance."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from universal_embedding import demo
from universal_embedding.configs import base

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_comparison_table_rows_in_percent():
    domains = base.ALL_DOMAINS.split(",")
    before = {f"{d}:common:test_knn:top_1": 0.1 for d in [*domains, "average"]}
    before |= {f"{d}:common:test_knn:mp_5": 0.05 for d in [*domains, "average"]}
    after = {k: 4 * v for k, v in before.items()}
    before["average:separate:test_knn:mp_5"], after["average:separate:test_knn:mp_5"] = 0.2, 0.5
    lines = demo.comparison_table(before, after, domains).splitlines()
    assert len(lines) == 2 + 9 + 1
    assert lines[2].split() == ["cars", "|", "10.0", "5.0", "|", "40.0", "20.0"]
    assert lines[10].split()[0] == "average"
    assert lines[-1] == "(separate indexes, average mMP@5: 20.0 -> 50.0)"


def test_command_line_rejects_an_unknown_dtype_and_stray_arguments(tmp_path):
    for args, message in (
        (["--dtype=float16"], "should be one of <float32|bfloat16>"),
        (["extra"], "Unexpected arguments: extra"),
    ):
        out = subprocess.run(
            [sys.executable, "-m", "universal_embedding.demo", f"--workdir={tmp_path}", *args],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert out.returncode != 0 and message in out.stderr, out.stderr[-2000:]
    assert os.listdir(tmp_path) == []  # nothing ran


@pytest.mark.slow  # two full demos, ~8 min on 2 cores
def test_demo_acceptance_and_bfloat16_parity(tmp_path):
    """make demo's acceptance (+0.15 merged mMP@5) and bfloat16 within 0.02 of float32."""
    f32 = demo.run_demo(str(tmp_path / "f32"))
    bf16 = demo.run_demo(
        str(tmp_path / "bf16"), dtype="bfloat16", data_dir=str(tmp_path / "f32/data")
    )
    assert f32["trained_mp5"] >= f32["baseline_mp5"] + 0.15
    assert abs(bf16["trained_mp5"] - f32["trained_mp5"]) <= 0.02
