"""distributed/: jax.distributed settings read from the environment."""

from __future__ import annotations

import pytest

from universal_embedding import distributed


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
    assert distributed.distributed_settings({"OMPI_COMM_WORLD_SIZE": "2"}) == {}
    with pytest.raises(ValueError, match="JAX_PROCESS_ID"):
        distributed.distributed_settings({"JAX_COORDINATOR_ADDRESS": "h:1", "JAX_PROCESS_ID": "x"})


def test_one_process_run_does_not_initialise(monkeypatch):
    import jax

    for name in ("JAX_COORDINATOR_ADDRESS", "SLURM_NTASKS", "OMPI_COMM_WORLD_SIZE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(jax.distributed, "initialize", lambda **k: pytest.fail("initialised"))
    distributed.maybe_initialize_distributed()
