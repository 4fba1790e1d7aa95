"""Reruns are safe: an interrupted run exits non-zero, a rerun writes no metric row twice."""

from __future__ import annotations

import collections
import json
import os
import signal

import pytest

from universal_embedding import checkpoint, resume_check, writers
from universal_embedding import main as train_main
from universal_embedding.configs import tiny
from universal_embedding.knn import evaluator
from universal_embedding.train import guards, preemption

pytestmark = pytest.mark.usefixtures("compilation_cache")


def tiny_config(data_dir: str, **overrides):
    c = tiny.get_config(f"data_dir={data_dir}")
    for key, value in overrides.items():
        c[key] = value
    return c


def repeated_rows(workdir: str) -> list[tuple[int, str]]:
    """(step, key) pairs written more than once to metrics.jsonl."""
    seen = collections.Counter(
        (r["step"], k) for r in writers.read_metrics(workdir) for k in r if k != "step"
    )
    return sorted(key for key, n in seen.items() if n > 1)


def test_kill_before_the_first_checkpoint_writes_no_row_twice(data_dir, tmp_path):
    workdir = str(tmp_path)
    c = dict(num_training_steps=4, checkpoint_steps=4)
    train_main.main(tiny_config(data_dir, stop_after_steps=2, **c), workdir)  # "killed"
    assert [r["step"] for r in writers.read_metrics(workdir)] == [1, 2]
    train_main.main(tiny_config(data_dir, **c), workdir)  # restarts at step 0
    assert repeated_rows(workdir) == []
    assert [r["step"] for r in writers.read_metrics(workdir)] == [1, 2, 3, 4]


def test_ctrl_c_during_the_final_test_exits_non_zero_and_the_rerun_tests_once(
    data_dir, tmp_path, monkeypatch, capsys
):
    workdir = str(tmp_path)
    c = tiny_config(data_dir, num_training_steps=2, do_final_testing=True)
    real_run = evaluator.KnnEvaluator.run

    def interrupted(self, params):
        try:  # a library that swallows what the signal raises
            signal.raise_signal(signal.SIGINT)
        except BaseException:
            pass
        return real_run(self, params)

    earlier = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        monkeypatch.setattr(evaluator.KnnEvaluator, "run", interrupted)
        with pytest.raises(preemption.Preempted, match="SIGINT received during the final"):
            train_main.main(c, workdir)
    finally:
        signal.signal(signal.SIGINT, earlier)
    assert not os.path.exists(os.path.join(workdir, "results.json"))
    monkeypatch.setattr(evaluator.KnnEvaluator, "run", real_run)
    results = train_main.main(c, workdir)  # tests again, at the last step
    assert results and os.path.exists(os.path.join(workdir, "results.json"))
    assert repeated_rows(workdir) == []
    # the same command again: nothing to do, and it says so
    before = {n: os.stat(os.path.join(workdir, n)).st_mtime_ns for n in os.listdir(workdir)}
    capsys.readouterr()
    again = train_main.main(c, workdir)
    assert f"{workdir} already finished (step 2, final test in results.json): nothing to do" in (
        capsys.readouterr().out
    )
    assert again == pytest.approx(results)
    after = {n: os.stat(os.path.join(workdir, n)).st_mtime_ns for n in os.listdir(workdir)}
    assert after == before


def test_a_torn_last_metrics_line_is_dropped_with_a_warning(tmp_path, caplog):
    path = tmp_path / writers.METRICS_FILE
    path.write_text('{"step": 1, "train/loss": 2.0}\n{"step": 2, "train/lo')
    assert writers.read_metrics(str(tmp_path)) == [{"step": 1, "train/loss": 2.0}]
    assert "dropped its torn last line 2" in caplog.text
    assert writers.drop_torn_tail(str(tmp_path)) is True
    assert path.read_text() == '{"step": 1, "train/loss": 2.0}\n'
    assert writers.drop_torn_tail(str(tmp_path)) is False


def test_a_bad_middle_metrics_line_names_the_file_and_line(tmp_path):
    path = tmp_path / writers.METRICS_FILE
    path.write_text('{"step": 1}\n{"step": 2, x\n{"step": 3}\n')
    with pytest.raises(ValueError, match=f"{path}, line 2: not a JSON object"):
        writers.read_metrics(str(tmp_path))


def test_a_signal_during_a_raise_at_once_stage_raises_even_when_swallowed():
    earlier = signal.signal(signal.SIGTERM, signal.SIG_DFL)
    try:
        with preemption.SignalWatch() as watch:
            watch.raise_at_once("the final test")
            try:
                signal.raise_signal(signal.SIGTERM)
            except preemption.Preempted:
                pass  # swallowed by a library
            with pytest.raises(preemption.Preempted, match="SIGTERM received during the final"):
                watch.check()
    finally:
        signal.signal(signal.SIGTERM, earlier)


def test_changed_fields_names_what_a_resume_would_compute_differently():
    saved = {"batch_size": 8, "dataset_name": "cars,sop", "lr": 0.1, "model": {"remat": False}}
    now = {"batch_size": 16, "dataset_name": "sop, cars", "lr": 0.01, "model": {"remat": True}}
    assert resume_check.changed_fields(saved, now) == (
        "batch_size: 8 -> 16",
        "dataset_name: 'cars,sop' -> 'sop, cars'",
    )
    assert resume_check.changed_fields(saved, {**saved, "dataset_name": " cars, sop"}) == ()


def test_a_resume_stops_on_a_changed_batch_or_domain_order_and_takes_clipping(
    data_dir, tmp_path, caplog
):
    workdir = str(tmp_path)
    steps = dict(num_training_steps=4, checkpoint_steps=2)
    train_main.main(tiny_config(data_dir, stop_after_steps=2, **steps), workdir)
    config_json = (tmp_path / "config.json").read_bytes()
    with pytest.raises(guards.ConfigChanged, match=r"\(batch_size: 8 -> 16\): use a new"):
        train_main.main(tiny_config(data_dir, batch_size=16, **steps), workdir)
    with pytest.raises(guards.ConfigChanged, match="dataset_name: 'cars,sop' -> 'sop,cars'"):
        train_main.main(tiny_config(data_dir, dataset_name="sop,cars", **steps), workdir)
    assert (tmp_path / "config.json").read_bytes() == config_json
    # the one way through: resume_changed_config (a warning names the changes)
    c = tiny_config(data_dir, batch_size=16, resume_changed_config=True, stop_after_steps=3)
    train_main.main(c, workdir)
    assert "config changes (resume_changed_config): batch_size: 8 -> 16" in caplog.text
    assert json.loads((tmp_path / "config.json").read_text())["batch_size"] == 16
    # adding clipping (and lowering lr), the advice after a NaN stop, resumes from step 2
    c = tiny_config(data_dir, batch_size=16, grad_clip_norm=1.0, lr=1e-3, **steps)
    train_main.main(c, workdir)
    assert sorted(os.listdir(checkpoint.checkpoint_dir(workdir)))[-1] == "4"
