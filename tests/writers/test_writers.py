"""writers/: metrics.jsonl and W&B as clu MetricWriters, create_writer, config JSON."""

from __future__ import annotations

import glob
import json
import os
import subprocess
import sys
import types

import ml_collections
import numpy as np
import pytest
from clu import metric_writers

from universal_embedding import writers
from universal_embedding.configs import demo as demo_config
from universal_embedding.writers import wandb_id

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class FakeRun:
    """What WandbWriter uses of a wandb run: log, config.update, finish."""

    def __init__(self):
        self.logged, self.hparams, self.finished = [], {}, False
        self.config = types.SimpleNamespace(update=self._update)

    def _update(self, values, allow_val_change):
        assert allow_val_change
        self.hparams.update(values)

    def log(self, values, step):
        self.logged.append((step, values))

    def finish(self):
        self.finished = True


@pytest.fixture
def fake_wandb(monkeypatch):
    """A stand-in `wandb` module recording init arguments, images and histograms."""
    module = types.ModuleType("wandb")
    module.inits, module.runs = [], []

    def init(**kwargs):
        module.inits.append(kwargs)
        module.runs.append(FakeRun())
        return module.runs[-1]

    module.init = init
    module.Image = lambda array: ("image", np.asarray(array).shape)
    module.Histogram = lambda np_histogram: ("histogram", np_histogram[0].tolist())
    monkeypatch.setitem(sys.modules, "wandb", module)
    return module


def test_jsonl_writer_round_trip(tmp_path):
    w = writers.JsonlWriter(str(tmp_path / writers.METRICS_FILE))
    assert isinstance(w, metric_writers.MetricWriter)
    w.write_scalars(3, {"train/loss": np.float32(1.5)})
    w.write_texts(3, {"note": "resumed"})
    w.write_scalars(4, {"knn/a:common:val_knn:top_1": 0.25})
    for ignored in (w.write_images, w.write_videos, w.write_histograms, w.write_summaries):
        ignored(5, {"x": np.zeros((2, 2, 3))})
    w.write_audios(5, {"x": np.zeros((1, 8, 1))}, sample_rate=8)
    w.write_hparams({"lr": 0.001, "model.output_dim": 64})
    w.flush()
    w.close()
    assert writers.read_metrics(str(tmp_path)) == [
        {"step": 3, "train/loss": 1.5},
        {"step": 3, "note": "resumed"},
        {"step": 4, "knn/a:common:val_knn:top_1": 0.25},
    ]
    with open(tmp_path / writers.HPARAMS_FILE) as f:
        assert json.load(f) == {"lr": 0.001, "model.output_dim": 64}
    assert writers.read_metrics(str(tmp_path / "missing")) == []


def test_wandb_writer_forwards_to_the_run(fake_wandb):
    run = FakeRun()
    w = writers.WandbWriter(run)
    w.write_scalars(7, {"train/loss": np.float32(0.5)})
    w.write_texts(7, {"note": "hi"})
    w.write_hparams({"lr": 0.1})
    w.write_images(8, {"img": np.zeros((4, 4, 3)), "batch": np.zeros((2, 4, 4, 3))})
    w.write_histograms(9, {"h": np.array([0.0, 0.1, 0.9, 1.0])}, num_buckets={"h": 2})
    w.write_videos(9, {"v": np.zeros((1, 2, 4, 4, 3))})
    w.write_audios(9, {"a": np.zeros((1, 8, 1))}, sample_rate=8)
    w.write_summaries(9, {"s": np.zeros(3)})
    w.close()
    assert run.logged == [
        (7, {"train/loss": 0.5}),
        (7, {"note": "hi"}),
        (8, {"img": [("image", (4, 4, 3))], "batch": [("image", (4, 4, 3))] * 2}),
        (9, {"h": ("histogram", [2, 2])}),
    ]
    assert run.hparams == {"lr": 0.1} and run.finished


def test_wandb_without_the_package_says_what_to_do(monkeypatch):
    monkeypatch.setitem(sys.modules, "wandb", None)  # as if not installed
    with pytest.raises(RuntimeError, match="pip install wandb"):
        writers.open_wandb({"project": "p"}, "/tmp")


def test_create_writer_fans_out_with_clu_multiwriter(tmp_path, fake_wandb):
    workdir = str(tmp_path / "run")
    settings = ml_collections.ConfigDict(
        {"enabled": True, "project": "p", "group": "", "entity": "", "name": "n"}
    )
    w = writers.create_writer(workdir, wandb=settings, hparams={"lr": 0.5})
    assert isinstance(w, metric_writers.MultiWriter)
    w.write_scalars(1, {"train/loss": 2.0})
    w.flush()
    assert writers.read_metrics(workdir) == [{"step": 1, "train/loss": 2.0}]
    assert glob.glob(os.path.join(workdir, "events.out.tfevents.*"))  # TensorBoard
    run_id = wandb_id.run_id(workdir)  # kept in the workdir: a resumed run reopens it
    assert fake_wandb.inits == [
        {"dir": workdir, "id": run_id, "resume": "allow", "project": "p", "name": "n"}
    ]
    run = fake_wandb.runs[0]
    assert run.hparams == {"lr": 0.5} and run.logged == [(1, {"train/loss": 2.0})]
    with pytest.raises(AttributeError, match="write_scaler"):
        w.write_scaler(2, {"train/loss": 1.0})  # a misspelt method is an error, not a no-op
    w.close()
    assert run.finished


def test_create_writer_without_wandb_and_on_other_processes(tmp_path, monkeypatch, fake_wandb):
    off = ml_collections.ConfigDict({"enabled": False, "project": "p"})
    w = writers.create_writer(str(tmp_path / "lead"), wandb=off)
    w.write_scalars(1, {"a": 1.0})
    assert writers.read_metrics(str(tmp_path / "lead")) == [{"step": 1, "a": 1.0}]
    assert not os.path.exists(tmp_path / "lead" / writers.HPARAMS_FILE)  # no hparams given
    assert fake_wandb.inits == []
    import jax

    monkeypatch.setattr(jax, "process_index", lambda: 1)
    w = writers.create_writer(str(tmp_path / "other"), wandb={"enabled": True}, hparams={"a": 1})
    w.write_scalars(1, {"a": 1.0})
    assert not os.path.exists(tmp_path / "other") and fake_wandb.inits == []


def test_write_config_json_sorted_indented_with_parent_dirs(tmp_path):
    c = demo_config.get_config("data_dir=/d")
    path = writers.write_config_json(c.to_dict(), str(tmp_path / "a" / "b" / "config.json"))
    with open(path) as f:
        text = f.read()
    saved = json.loads(text)
    assert text == json.dumps(saved, indent=2, sort_keys=True)
    assert set(saved.pop("provenance")) == {"versions", "git_commit", "devices"}
    assert saved == json.loads(json.dumps(c.to_dict()))
    assert saved["info_files_dir"] == "/d/info_files" and saved["model"]["hidden_size"] == 64
    plain = writers.write_config_json({"b": 1, "a": {"d": 2, "c": 3}}, str(tmp_path / "p.json"))
    with open(plain) as f:
        text = f.read()
    assert text.startswith('{\n  "a": {\n    "c": 3,\n    "d": 2\n  },\n  "b": 1,\n  "provenance"')


def test_flat_hparams_dotted_scalar_leaves():
    c = ml_collections.ConfigDict({"lr": 0.1, "model": {"dim": 8, "size": None}, "on": True})
    c.tags = (1, 2)
    assert writers.flat_hparams(c.to_dict()) == {"lr": 0.1, "model.dim": 8, "on": True}
    assert writers.flat_hparams({"a": {"b": "x"}}) == {"a.b": "x"}


def test_package_imports_without_tensorflow():
    code = (
        "import sys\n"
        "from universal_embedding.writers import write_config_json, flat_hparams, read_metrics\n"
        "assert 'tensorflow' not in sys.modules, 'tensorflow imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120, cwd=REPO)
