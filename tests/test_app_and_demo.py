"""app.py plumbing (distributed settings, metric files) and the demo's pure pieces."""

from __future__ import annotations

import json
import os

import pytest

from universal_embedding import demo, distributed, writers
from universal_embedding.configs import base
from universal_embedding.configs import demo as demo_config


def test_distributed_settings_from_explicit_env_vars():
    env = {
        "JAX_COORDINATOR_ADDRESS": "10.0.0.1:1234",
        "JAX_NUM_PROCESSES": "4",
        "JAX_PROCESS_ID": "3",
    }
    assert distributed.distributed_settings(env) == {
        "coordinator_address": "10.0.0.1:1234",
        "num_processes": 4,
        "process_id": 3,
    }
    assert distributed.distributed_settings({}) is None  # one process: nothing to initialise
    assert distributed.distributed_settings({"SLURM_NTASKS": "1"}) is None
    assert distributed.distributed_settings({"SLURM_NTASKS": "8"}) == {}  # let JAX detect SLURM
    with pytest.raises(ValueError, match="JAX_PROCESS_ID"):
        distributed.distributed_settings({"JAX_COORDINATOR_ADDRESS": "h:1", "JAX_PROCESS_ID": "x"})


def test_jsonl_writer_round_trip(tmp_path):
    w = writers.JsonlWriter(str(tmp_path / writers.METRICS_FILE))
    w.write_scalars(3, {"train/loss": 1.5})
    w.write_scalars(4, {"knn/a:common:val_knn:top_1": 0.25})
    assert writers.read_metrics(str(tmp_path)) == [
        {"step": 3, "train/loss": 1.5},
        {"step": 4, "knn/a:common:val_knn:top_1": 0.25},
    ]
    assert writers.read_metrics(str(tmp_path / "missing")) == []


def test_write_config_is_the_resolved_config(tmp_path):
    c = demo_config.get_config("data_dir=/d")
    path = writers.write_config_json(c, str(tmp_path / "config.json"))
    with open(path) as f:
        saved = json.load(f)
    assert saved["info_files_dir"] == "/d/info_files"
    assert saved["model"]["hidden_size"] == c.model.hidden_size


def test_wandb_without_the_package_says_what_to_do(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_wandb(name, *args, **kwargs):
        if name == "wandb":
            raise ImportError("No module named 'wandb'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_wandb)
    with pytest.raises(RuntimeError, match="pip install wandb"):
        writers._open_wandb({"project": "p"}, "/tmp")


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


@pytest.mark.skipif(
    not os.environ.get("UE_SLOW_TESTS"),
    reason="slow (two full demos, ~8 min on 2 cores): set UE_SLOW_TESTS=1",
)
def test_demo_acceptance_and_bfloat16_parity(tmp_path):
    """make demo's acceptance (+0.15 merged mMP@5) and bfloat16 within 0.02 of float32."""
    f32 = demo.run_demo(str(tmp_path / "f32"))
    bf16 = demo.run_demo(
        str(tmp_path / "bf16"), dtype="bfloat16", data_dir=str(tmp_path / "f32/data")
    )
    assert f32["trained_mp5"] >= f32["baseline_mp5"] + 0.15
    assert abs(bf16["trained_mp5"] - f32["trained_mp5"]) <= 0.02
