"""A rerun of the demo skips training and its final test once the trained results are complete;
it ends by naming what it wrote."""

from __future__ import annotations

import json
import os

import jax
import pytest

from universal_embedding import demo, settings
from universal_embedding.configs import base
from universal_embedding.train import trainer

DOMAINS = base.ALL_DOMAINS.split(",")


def full_results(value: float) -> dict[str, float]:
    return {
        f"{d}:{p}:test_knn:{m}": value
        for d in [*DOMAINS, "average"]
        for p in ("separate", "common")
        for m in ("top_1", "mp_5", "map_5")
    }


def write_json(path: str, data) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump(data, f)


def test_results_complete_needs_every_domain_and_protocol(tmp_path):
    path = str(tmp_path / "results.json")
    assert not demo.results_complete(path, DOMAINS)  # missing
    write_json(path, full_results(0.5))
    assert demo.results_complete(path, DOMAINS)
    partial = full_results(0.5)
    del partial["rp2k:separate:test_knn:mp_5"]
    write_json(path, partial)
    assert not demo.results_complete(path, DOMAINS)
    with open(path, "w") as f:
        f.write("{not json")
    assert not demo.results_complete(path, DOMAINS)


@pytest.fixture
def stubbed_stages(monkeypatch):
    """Data and untrained evaluation stubbed, jax config untouched; the calls to training."""
    calls = []
    monkeypatch.setattr(demo, "make_data", lambda data_dir: None)
    monkeypatch.setattr(jax.config, "update", lambda *a: None)

    def fake_train(workdir, ts):
        calls.append(workdir)
        write_json(os.path.join(workdir, "results.json"), full_results(0.6))
        return full_results(0.6)

    monkeypatch.setattr(trainer, "train_and_evaluate", fake_train)
    monkeypatch.setattr(settings, "train_settings", lambda config: None)
    return calls


def test_rerun_with_complete_results_skips_training_and_the_final_test(
    tmp_path, stubbed_stages, capsys
):
    work = str(tmp_path / "w")
    write_json(os.path.join(work, "baseline", "results.json"), full_results(0.2))
    write_json(os.path.join(work, "trained", "results.json"), full_results(0.7))
    out = demo.run_demo(work)
    assert stubbed_stages == []  # neither training nor its final test ran
    assert out["trained_mp5"] == 0.7 and out["baseline_mp5"] == 0.2
    lines = capsys.readouterr().out.strip().splitlines()
    assert "[3/4] training and final test: done" in "\n".join(lines)
    assert lines[-3:] == [
        f"Wrote {os.path.join(work, 'baseline', 'results.json')}",
        f"Wrote {os.path.join(work, 'trained', 'results.json')}",
        f"Wrote {os.path.join(work, 'trained')}{os.sep}",
    ]
    partial = full_results(0.7)
    del partial["cars:common:test_knn:top_1"]  # an interrupted final test: train (resume) again
    write_json(os.path.join(work, "trained", "results.json"), partial)
    assert demo.run_demo(work)["trained_mp5"] == 0.6
    assert stubbed_stages == [os.path.join(work, "trained")]
