"""W&B: a resumed run logs to the same W&B run (its id is kept in the workdir)."""

import sys
import types

from universal_embedding import writers
from universal_embedding.writers import wandb_id


class _FakeRun:
    def __init__(self):
        self.logged, self.config = [], types.SimpleNamespace(update=lambda *a, **k: None)

    def log(self, values, step):
        self.logged.append((step, values))

    def finish(self):
        pass


def _fake_wandb():
    module = types.ModuleType("wandb")
    module.calls = []

    def init(**kwargs):
        module.calls.append(kwargs)
        return _FakeRun()

    module.init = init
    return module


def test_resume_opens_the_same_run(tmp_path, monkeypatch):
    fake = _fake_wandb()
    monkeypatch.setitem(sys.modules, "wandb", fake)
    workdir = str(tmp_path)
    settings = {"enabled": True, "project": "uned", "name": "tiny"}
    for _ in range(2):  # first run, then the rerun after an interruption
        writer = writers.create_writer(workdir, settings, {"lr": 0.1})
        writer.write_scalars(1, {"train/loss": 1.0})
        writer.flush()
    first, second = fake.calls
    assert first["id"] == second["id"] == wandb_id.run_id(workdir)
    assert len(first["id"]) == 16 and first["resume"] == second["resume"] == "allow"
    assert first["project"] == "uned" and first["dir"] == workdir
    with open(tmp_path / wandb_id.RUN_ID_FILE) as f:
        assert f.read().strip() == first["id"]


def test_each_workdir_gets_its_own_id(tmp_path):
    a, b = wandb_id.run_id(str(tmp_path / "a")), wandb_id.run_id(str(tmp_path / "b"))
    assert a != b and wandb_id.run_id(str(tmp_path / "a")) == a
