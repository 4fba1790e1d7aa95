"""UDON end to end on the tiny mini-UnED: exact resume across sampler updates, evaluation."""

from __future__ import annotations

import json
import os

import jax
import numpy as np
import pytest

from universal_embedding import checkpoint, settings, train_settings, writers
from universal_embedding import main as train_main
from universal_embedding.configs import config_train_udon, tiny
from universal_embedding.data import info_files
from universal_embedding.distributed import mesh as mesh_lib
from universal_embedding.knn import descriptors as knn_descriptors
from universal_embedding.knn import evaluate as knn_evaluate
from universal_embedding.knn import multi_embedding
from universal_embedding.models import embedding_model
from universal_embedding.train import plan

pytestmark = pytest.mark.usefixtures("compilation_cache")

DOMAINS = "cars,sop"


def latest_params(workdir: str, step: int) -> dict:
    """Params of checkpoints/latest/<step> as numpy."""
    return checkpoint.restore_params(workdir, step)[0]


def losses_by_step(workdir: str) -> dict[int, float]:
    return {r["step"]: r["train/loss"] for r in writers.read_metrics(workdir) if "train/loss" in r}


def udon_config(data_dir: str, **overrides):
    """tiny.py as UDON: 6 steps, sampler updates before steps 3 and 6, checkpoints every 2."""
    c = config_train_udon.add_udon_fields(tiny.get_config(f"data_dir={data_dir}"))
    c.model_class = "udon_vit_with_embedding"
    c.model.teacher_dim, c.model.universal_student_dim = (16,), (8,)
    c.update_sampler_every_steps = 3
    c.eval_knns, c.log_eval_steps = "val_knn", 3
    c.do_final_testing, c.save_descriptors = True, True
    for key, value in overrides.items():
        c[key] = value
    return c


def weight_rows(workdir: str) -> dict[int, dict]:
    return {
        r["step"]: {k: v for k, v in r.items() if k.startswith("sampling_weights/")}
        for r in writers.read_metrics(workdir)
        if "sampling_weights/cars" in r
    }


@pytest.fixture(scope="module")
def full_run(data_dir, tmp_path_factory):
    workdir = str(tmp_path_factory.mktemp("udon_full"))
    results = train_main.main(udon_config(data_dir), workdir)
    return workdir, results


def test_resume_across_a_sampler_update_is_bit_identical(
    data_dir, full_run, tmp_path, capsys, assert_trees_equal
):
    full, _ = full_run
    cut = str(tmp_path / "cut")
    # killed after step 3: checkpoint 2 survives; the update before step 3 is redone on resume
    train_main.main(udon_config(data_dir, stop_after_steps=3), cut)
    assert sorted(os.listdir(checkpoint.checkpoint_dir(cut))) == ["2"]
    capsys.readouterr()
    train_main.main(udon_config(data_dir), cut)
    assert "resumed from step 2" in capsys.readouterr().out
    assert_trees_equal(latest_params(cut, 6), latest_params(full, 6))
    assert losses_by_step(cut) == losses_by_step(full)
    rows = weight_rows(full)
    assert sorted(rows) == [0, 3, 6] and weight_rows(cut) == rows
    assert rows[0] == {"sampling_weights/cars": 0.5, "sampling_weights/sop": 0.5}
    assert rows[3]["sampling_weights/cars"] != 0.5
    assert sum(rows[3].values()) == pytest.approx(1.0)


def test_checkpoint_holds_the_sampler_state_and_teacher_loss_window(full_run):
    full, _ = full_run
    _, info = checkpoint.restore_params(full, 4)
    sampler = info["sampler"]
    assert sampler["last_update"] == 3 and sum(info["domain_positions"]) == 4
    assert sum(sampler["window_counts"]) == 2 * 8  # steps s = 3, 4 of 8 images
    # the window holds the teacher loss of those steps, per domain (8 images per step)
    teacher = {
        r["step"]: r["train/teacher_classifier_loss"]
        for r in writers.read_metrics(full)
        if "train/teacher_classifier_loss" in r
    }
    expected = 8 * (np.float32(teacher[3]) + np.float32(teacher[4]))
    assert sum(sampler["window_loss_sums"]) == pytest.approx(float(expected), rel=1e-6)
    assert sampler["weights"] == pytest.approx(
        [
            weight_rows(full)[3]["sampling_weights/cars"],
            weight_rows(full)[3]["sampling_weights/sop"],
        ]
    )


def test_student_under_usual_keys_teachers_prefixed_descriptors_hold_both(data_dir, full_run):
    full, results = full_run
    c = udon_config(data_dir)
    with open(os.path.join(full, "results.json")) as f:
        saved = json.load(f)
    assert set(saved.pop("provenance")) == {"versions", "git_commit", "devices"}
    assert saved == pytest.approx(results)
    assert {"average:common:test_knn:mp_5", "teacher_embedd/average:common:test_knn:mp_5"} <= set(
        saved
    )
    _, info = checkpoint.restore_params(full, "best")
    vals = {
        r["step"]: r["knn/average:common:val_knn:top_1"]
        for r in writers.read_metrics(full)
        if "knn/average:common:val_knn:top_1" in r
    }
    teacher_key = "knn/teacher_embedd/average:common:val_knn:top_1"
    assert sorted(r["step"] for r in writers.read_metrics(full) if teacher_key in r) == [3, 6]
    assert info["metric"] == pytest.approx(vals[info["step"]])  # the student picks the best

    descr = knn_descriptors.load_all_descriptors(os.path.join(full, "descriptors.npz"))
    assert {k: v.shape[1] for k, v in descr.items()} == {
        "cars/test/universal_student_embedd": 8,
        "cars/test/teacher_embedd": 16,
        "sop/test/universal_student_embedd": 8,
        "sop/test/teacher_embedd": 16,
    }
    labels = {
        f"{d}/test": info_files.load_split(c.info_files_dir, d, "test").labels
        for d in DOMAINS.split(",")
    }
    kwargs = {
        "domains": ["cars", "sop"],
        "separate_knns": ["test_knn"],
        "merged_knns": ["test_knn"],
    }
    for name, expected in (
        (None, multi_embedding.results_of(results, None)),
        ("teacher_embedd", multi_embedding.results_of(results, "teacher_embedd")),
    ):
        chosen = knn_descriptors.load_descriptors(os.path.join(full, "descriptors.npz"), name)
        assert knn_evaluate.evaluate(chosen, labels, k=5, **kwargs) == pytest.approx(expected)

    # sop's teacher descriptors come from sop's own teacher (domain 1 of cars,sop)
    from universal_embedding.data import input_pipeline

    best, _ = checkpoint.restore_params(full, "best")
    model = embedding_model.build_model(
        settings.model_spec(c), plan.make_plan(train_settings.plan_settings(c)).classes_per_head
    )
    mesh = mesh_lib.make_mesh()

    def embed(p, x):
        return model.apply({"params": p}, x, domain=1)["teacher_embedd"]

    fn = mesh_lib.host_embed_fn(jax.jit(embed), best, mesh)
    batches = input_pipeline.eval_batches(
        c.eval_dataset_dir, "sop", "test", batch_size=16, image_size=16, normalization="imagenet"
    )
    direct = knn_descriptors.extract(fn, batches, len(labels["sop/test"]))
    np.testing.assert_allclose(descr["sop/test/teacher_embedd"], direct, atol=1e-5)


def test_resume_is_bit_identical_with_the_original_window_and_draw_order(
    data_dir, full_run, tmp_path, assert_trees_equal
):
    """sampler_window='original' (buffer emptied after steps 1 and 4: log_summary_steps 3) and
    the unpartitioned draw: killed after step 3, resumed from checkpoint 2, as one run."""
    options = {
        "sampler_window": "original",
        "sampler_threefry_partitionable": False,
        "log_summary_steps": 3,
    }
    one, cut = str(tmp_path / "one"), str(tmp_path / "cut")
    train_main.main(udon_config(data_dir, do_final_testing=False, **options), one)
    train_main.main(udon_config(data_dir, stop_after_steps=3, **options), cut)
    train_main.main(udon_config(data_dir, do_final_testing=False, **options), cut)
    assert_trees_equal(latest_params(cut, 6), latest_params(one, 6))
    assert losses_by_step(cut) == losses_by_step(one)
    rows = weight_rows(one)
    assert sorted(rows) == [0, 3, 6] and weight_rows(cut) == rows
    assert rows[6] != weight_rows(full_run[0])[6]  # the window {5}, not {3, 4, 5}
    _, info = checkpoint.restore_params(one, 4)
    assert info["sampler"]["window"] == "original"
    assert sum(info["sampler"]["window_counts"]) == 0  # emptied after step 4
