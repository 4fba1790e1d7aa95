"""descr_eval end to end in a subprocess: tiny info files + descriptors -> results files."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from universal_embedding.knn import descriptors

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = os.path.join(ROOT, "universal_embedding", "configs", "config_knn_descr_eval.py")


def _unit(*degrees):
    r = np.deg2rad(degrees)
    return np.stack([np.cos(r), np.sin(r)], 1).astype(np.float32)


# The hand-computed case of tests/knn/test_evaluate.py (k = 2), plus val splits
# (val -> val) for a run with val_knn enabled.
DESCR = {
    "cars/test": _unit(0, 10, 30, 100, 250),
    "inshop/test": _unit(3, 200),
    "inshop/index": _unit(45, 190, 205),
    "cars/val": _unit(0, 5, 90),
    "inshop/val": _unit(0, 180),
}
LABELS = {
    "cars/test": [0, 1, 0, 1, 2],
    "inshop/test": [5, 6],
    "inshop/index": [5, 6, 5],
    "cars/val": [0, 1, 1],
    "inshop/val": [1, 1],
}
EXPECTED = {
    "cars:separate:test_knn:map_2": 0.375,
    "inshop:separate:test_knn:map_2": 0.75,
    "average:separate:test_knn:top_1": 0.25,
    "average:separate:test_knn:map_2": 0.5625,
    "cars:common:test_knn:skipped_queries": 1.0,
    "average:common:test_knn:map_2": 0.1875,
    "inshop:common:test_knn:top_1": 0.0,
}


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, write_info_files):
    base = tmp_path_factory.mktemp("descr_eval")
    write_info_files(base / "info", LABELS)
    descriptors.save_npz(str(base / "d.npz"), DESCR)
    descriptors.save_json(str(base / "d.json"), DESCR)
    return base


def _descr_eval(workdir, descr_path, info_dir, *extra):
    cmd = [
        sys.executable, "-m", "universal_embedding.descr_eval", f"--config={CONFIG}",
        f"--workdir={workdir}", f"--config.descr_path={descr_path}",
        f"--config.info_files_dir={info_dir}", "--config.knn_eval_names=cars,inshop",
        "--config.top_k=2", *extra,
    ]  # fmt: skip
    return subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=120)


def _table_row(text: str, name: str) -> list[str]:
    """Cells of the markdown table row that starts with `name`."""
    line = next(x for x in text.splitlines() if x.startswith(f"| {name} "))
    return [c.strip() for c in line.strip("|").split("|")]


def test_npz_and_json_end_to_end(inputs):
    runs = {}
    for name in ("npz", "json"):
        workdir = inputs / f"work_{name}"
        proc = _descr_eval(workdir, inputs / f"d.{name}", inputs / "info")
        assert proc.returncode == 0, proc.stderr[-3000:]
        with open(workdir / "results.json") as f:
            runs[name] = json.load(f)
        assert (workdir / "results.csv").exists()
        md = (workdir / "results.md").read_text()
        average = ["average", "25.0", "25.0", "56.2", "1", "0.0", "0.0", "18.8", "1"]
        assert _table_row(md, "average") == average
        assert _table_row(proc.stdout, "average") == average  # printed table
        assert (workdir / "results.html").exists()
    assert runs["npz"] == runs["json"]
    with open(inputs / "work_npz" / "results_original.json") as f:
        top_1, mp_2, map_2 = json.load(f)  # the original's layout, np.round(value, 3)
    assert map_2["cars:separate:test_knn:map_2"] == 0.375
    assert map_2["average:separate:test_knn:map_2"] == 0.562  # mean(0.375, 0.75) = 0.5625
    assert top_1["average:separate:test_knn:top_1"] == 0.25
    assert "cars:common:test_knn:skipped_queries" not in mp_2
    for key, value in EXPECTED.items():
        assert runs["npz"][key] == pytest.approx(value), key
    assert not any("val_knn" in key for key in runs["npz"])


def test_val_knn_enabled_and_bad_input_writes_nothing(inputs):
    workdir = inputs / "work_val"
    proc = _descr_eval(
        workdir, inputs / "d.npz", inputs / "info",
        "--config.disabled_separate_knns=train_knn",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads((workdir / "results.json").read_text())
    # cars val: q0 (0deg, l0) -> [1 (5deg, l1) no, 2 no]: n=0 -> skipped; q1 -> [0 no, 2 yes] AP .5
    # q2 -> [1 yes, 0 no] -> AP 1
    assert res["cars:separate:val_knn:top_1"] == pytest.approx(0.5)
    assert res["cars:separate:val_knn:map_2"] == pytest.approx(0.75)
    assert res["cars:separate:val_knn:skipped_queries"] == 1
    assert "cars:common:val_knn:top_1" not in res  # merged: test_knn only (default)
    assert res["average:common:test_knn:map_2"] == pytest.approx(0.1875)

    bad = dict(DESCR, **{"inshop/index": DESCR["inshop/index"][:2]})
    descriptors.save_npz(str(inputs / "bad.npz"), bad)
    workdir = inputs / "work_bad"
    proc = _descr_eval(workdir, inputs / "bad.npz", inputs / "info")
    assert proc.returncode != 0
    assert "Domain 'inshop', split 'index'" in proc.stderr and "2 descriptor rows" in proc.stderr
    assert not (workdir / "results.json").exists()


def test_a_workdir_another_run_holds_is_refused_in_one_line(inputs, tmp_path):
    # descr_eval used to write into a workdir a training (or knn_main) was writing into
    from universal_embedding.checkpoint import lock

    workdir = tmp_path / "w"
    workdir.mkdir()
    (workdir / "results.json").write_text("{}")
    holder = subprocess.Popen(["sleep", "60"])
    try:
        with open(lock.lock_path(str(workdir)), "w") as f:
            json.dump({"pid": holder.pid, "host": os.uname().nodename, "started": 0}, f)
        proc = _descr_eval(workdir, inputs / "d.npz", inputs / "info")
    finally:
        holder.kill()
        holder.wait()
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error (WorkdirLocked): Workdir "), lines
    assert f"in use by pid {holder.pid} on {os.uname().nodename}" in lines[0]
    assert sorted(os.listdir(workdir)) == ["results.json", lock.LOCK_FILE]
    assert (workdir / "results.json").read_text() == "{}"


def test_imports_neither_tensorflow_nor_models_nor_orbax():
    # it takes the workdir lock, whose package used to import orbax (seconds) with it
    code = (
        "import sys, universal_embedding.descr_eval, universal_embedding.knn.evaluate; "
        "bad = [m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'orbax') "
        "or m.startswith('universal_embedding.models')]; assert not bad, bad; "
        "assert 'universal_embedding.checkpoint.lock' in sys.modules"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
