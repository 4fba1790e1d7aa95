"""The trainer end to end on a tiny synthetic mini-UnED (2 domains, 16x16 images, 1-layer ViT)."""

from __future__ import annotations

import json
import os

import jax
import numpy as np
import pytest

from universal_embedding import checkpoint, settings, train_settings, writers
from universal_embedding import main as train_main
from universal_embedding.configs import tiny
from universal_embedding.data import info_files
from universal_embedding.distributed import mesh as mesh_lib
from universal_embedding.knn import descriptors as knn_descriptors
from universal_embedding.knn import evaluate as knn_evaluate
from universal_embedding.knn import evaluator as knn_evaluator
from universal_embedding.loading import embedder
from universal_embedding.models import embedding_model
from universal_embedding.report import results_files
from universal_embedding.train import optimizers, plan, steps

pytestmark = pytest.mark.usefixtures("compilation_cache")

DOMAINS = "cars,sop"
FROZEN = 3  # tiny config: 0.3 epochs of 10 steps


def tiny_config(data_dir: str, **overrides):
    """configs/tiny.py: 1-layer ViT, joint head, 6 steps (3 frozen), checkpoint every 2."""
    c = tiny.get_config(f"data_dir={data_dir}")
    for key, value in overrides.items():
        c[key] = value
    return c


def latest_params(workdir: str, step: int) -> dict:
    """Params of checkpoints/latest/<step> as numpy (no template needed)."""
    return checkpoint.restore_params(workdir, step)[0]


def losses_by_step(workdir: str) -> dict[int, float]:
    """train/loss of each step in metrics.jsonl (a resumed run's rows replace earlier ones)."""
    return {r["step"]: r["train/loss"] for r in writers.read_metrics(workdir) if "train/loss" in r}


def init_params(config) -> dict:
    p = plan.make_plan(train_settings.plan_settings(config))
    model = embedding_model.build_model(settings.model_spec(config), p.classes_per_head)
    return jax.device_get(
        embedding_model.init_params(model, jax.random.PRNGKey(config.rng_seed), config.image_size)
    )


def test_one_step_smoke(data_dir, tmp_path, assert_trees_equal):
    workdir = str(tmp_path)
    c = tiny_config(data_dir, num_training_steps=1)
    assert train_main.main(c, workdir) == {}
    rows = writers.read_metrics(workdir)
    assert [r["step"] for r in rows] == [1]
    # round robin: step 0 trains cars (8 images; cosines in [-1, 1] at scale 16)
    n_classes = plan.make_plan(train_settings.plan_settings(c)).classes_per_head["joint"]
    assert np.isfinite(rows[0]["train/cars/loss"]) and "train/sop/loss" not in rows[0]
    assert 0 < rows[0]["train/loss"] < 32 + np.log(n_classes)
    assert rows[0]["lr/heads"] == pytest.approx(1e-2) and rows[0]["train/grad_norm"] > 0
    with open(os.path.join(workdir, "config.json")) as f:
        assert json.load(f)["dataset_name"] == DOMAINS
    params, start = latest_params(workdir, 1), init_params(c)
    assert not np.array_equal(params["heads"]["joint"]["kernel"], start["heads"]["joint"]["kernel"])
    assert_trees_equal(params["backbone"], start["backbone"])  # frozen for 3 steps


def test_separate_and_joint_head_shapes(data_dir, tmp_path):
    info_dir = os.path.join(data_dir, "info_files")
    classes = {d: info_files.num_classes(info_dir, d) for d in DOMAINS.split(",")}
    c = tiny_config(data_dir, num_training_steps=2)
    train_main.main(c, str(tmp_path))
    params = latest_params(str(tmp_path), 2)
    assert list(params["heads"]) == ["joint"]
    assert params["heads"]["joint"]["kernel"].shape == (8, classes["cars"] + classes["sop"])
    assert plan.make_plan(train_settings.plan_settings(c)).label_offsets == (0, classes["cars"])
    sep = init_params(tiny_config(data_dir, classifier="separate"))["heads"]
    assert {k: v["kernel"].shape for k, v in sep.items()} == {
        "cars": (8, classes["cars"]),
        "sop": (8, classes["sop"]),
    }


def test_frozen_steps_leave_backbone_bit_identical(data_dir, tmp_path, assert_trees_equal):
    c = tiny_config(data_dir, num_training_steps=FROZEN + 1, checkpoint_steps=1)
    tplan = plan.make_plan(train_settings.plan_settings(c))
    assert tplan.steps_per_epoch == 10 and tplan.frozen_steps == FROZEN
    train_main.main(c, str(tmp_path))
    start = init_params(c)
    frozen, after = latest_params(str(tmp_path), FROZEN), latest_params(str(tmp_path), FROZEN + 1)
    for part in ("backbone", "projection"):
        assert_trees_equal(frozen[part], start[part])
        moved = jax.tree.map(lambda a, b: bool(np.any(a != b)), after[part], start[part])
        assert all(jax.tree.leaves(moved)), part
    assert not np.array_equal(frozen["heads"]["joint"]["kernel"], start["heads"]["joint"]["kernel"])


def test_resume_after_interruption_equals_uninterrupted_run(
    data_dir, tmp_path, capsys, assert_trees_equal
):
    full, cut = str(tmp_path / "full"), str(tmp_path / "cut")
    train_main.main(tiny_config(data_dir), full)
    # "killed" after step 3: the last checkpoint is step 2, step 3 is lost and redone
    train_main.main(tiny_config(data_dir, stop_after_steps=3), cut)
    assert sorted(os.listdir(checkpoint.checkpoint_dir(cut))) == ["2"]
    capsys.readouterr()
    train_main.main(tiny_config(data_dir), cut)
    assert "resumed from step 2" in capsys.readouterr().out
    assert_trees_equal(latest_params(cut, 6), latest_params(full, 6))
    assert losses_by_step(cut) == losses_by_step(full)
    assert sorted(losses_by_step(full)) == [1, 2, 3, 4, 5, 6]
    # step 3 ran twice (before the kill and after the resume) but is logged once
    assert [r["step"] for r in writers.read_metrics(cut)] == [1, 2, 3, 4, 5, 6]


def test_validation_best_checkpoint_and_final_test(data_dir, tmp_path):
    workdir = str(tmp_path)
    c = tiny_config(
        data_dir,
        num_training_steps=4,
        eval_knns="val_knn",
        log_eval_steps=2,
        do_final_testing=True,
        save_descriptors=True,
    )
    results = train_main.main(c, workdir)
    vals = {
        r["step"]: r
        for r in writers.read_metrics(workdir)
        if "knn/average:common:val_knn:top_1" in r
    }
    assert sorted(vals) == [2, 4]
    row = vals[2]
    assert {"mp/cars:separate:val_knn:mp_5", "map/sop:common:val_knn:map_5"} <= set(row)
    best = max(vals, key=lambda s: (vals[s]["knn/average:common:val_knn:top_1"], -s))
    _, info = checkpoint.restore_params(workdir, "best")
    assert info["step"] == best
    assert info["metric"] == pytest.approx(vals[best]["knn/average:common:val_knn:top_1"])

    with open(os.path.join(workdir, "results.json")) as f:
        saved = json.load(f)
    assert set(saved.pop("provenance")) == {"versions", "git_commit", "devices"}
    assert saved == pytest.approx(results)
    assert 0 <= saved["average:common:test_knn:mp_5"] <= 1
    assert os.path.isfile(os.path.join(workdir, "results.html"))
    # skip counts reach TensorBoard only when non-zero; the final test also as one text table
    for r in writers.read_metrics(workdir):
        assert all(v > 0 for k, v in r.items() if k.startswith("skipped/"))
    plan_ = knn_evaluate.EvalPlan(("cars", "sop"), ("test_knn",), ("test_knn",), k=5)
    assert _tensorboard_texts(workdir) == results_files.summary_texts(results, plan_)
    descr = knn_descriptors.load_descriptors(os.path.join(workdir, "descriptors.npz"))
    assert sorted(descr) == ["cars/test", "sop/test"]
    labels = {k: info_files.load_split(c.info_files_dir, *k.split("/")).labels for k in descr}
    assert {k: len(v) for k, v in descr.items()} == {k: len(v) for k, v in labels.items()}
    again = knn_evaluate.evaluate(
        descr,
        labels,
        domains=["cars", "sop"],
        separate_knns=["test_knn"],
        merged_knns=["test_knn"],
        k=5,
    )
    assert again == pytest.approx(results)


def _tensorboard_texts(workdir: str) -> dict[str, str]:
    """{tag: text} of the text summaries in workdir's TensorBoard event files."""
    from tensorboard.backend.event_processing import event_accumulator
    from tensorboard.util import tensor_util

    acc = event_accumulator.EventAccumulator(workdir, size_guidance={"tensors": 0})
    acc.Reload()
    return {
        tag: tensor_util.make_ndarray(acc.Tensors(tag)[-1].tensor_proto).item().decode()
        for tag in acc.Tags()["tensors"]
        if acc.SummaryMetadata(tag).plugin_data.plugin_name == "text"
    }


def test_loss_falls_on_a_fixed_batch(data_dir):
    c = tiny_config(data_dir)
    p = plan.make_plan(train_settings.plan_settings(c))
    model = embedding_model.build_model(settings.model_spec(c), p.classes_per_head)
    params = embedding_model.init_params(model, jax.random.PRNGKey(0), 16)
    tx = optimizers.make_optimizer(
        train_settings.optimizer_settings(c), p.steps_per_epoch, p.total_steps
    )
    mesh = mesh_lib.make_mesh()
    state = steps.create_train_state(params, tx, mesh)
    step = steps.make_train_step(model, tx, mesh, loss=train_settings.loss_settings(c.loss))
    joint = steps.head_index(model, "joint", mesh)
    rng = np.random.default_rng(0)
    batch = mesh_lib.shard_batch(
        {
            "images": rng.normal(size=(8, 16, 16, 3)).astype(np.float32),
            "labels": np.arange(8, dtype=np.int32) % 4,
        },
        mesh,
    )
    losses = []
    for _ in range(40):
        state, metrics = step(state, batch, joint)
        losses.append(float(metrics["loss"]))
    assert losses[-1] < 0.3 * losses[0]
    assert float(metrics["precision_at_1"]) == 1.0


def test_train_knn_descriptors_follow_info_file_order(data_dir):
    """Train splits are stored shuffled; validation must still give rows in info-file order."""
    from universal_embedding.data import input_pipeline

    c = tiny_config(data_dir, eval_knns="train_knn", disabled_separate_knns="")
    c.disabled_merged_knns = ""
    tplan = plan.make_plan(train_settings.plan_settings(c))
    model = embedding_model.build_model(settings.model_spec(c), tplan.classes_per_head)
    mesh = mesh_lib.make_mesh()
    params = jax.device_put(init_params(c), mesh_lib.replicated(mesh))
    data = settings.eval_data(c, settings.model_spec(c))
    val_plan = settings.validation_plan(c)
    evaluator = knn_evaluator.KnnEvaluator(model, val_plan, data, c.embedd_to_eval, mesh)
    results, descr = evaluator.run(params)
    assert sorted(descr) == ["cars/train", "sop/train"]
    assert "average:common:train_knn:top_1" in results
    info = info_files.load_split(c.info_files_dir, "cars", "train")
    embed = mesh_lib.host_embed_fn(embedder.make_embed_fn(model, "projected"), params, mesh)
    batches = input_pipeline.folder_batches(
        os.path.join(data_dir, "images"),
        info.paths,
        batch_size=16,
        image_size=16,
        normalization="imagenet",
    )
    from_files = knn_descriptors.extract(embed, batches, len(info))
    np.testing.assert_allclose(descr["cars/train"], from_files, atol=1e-5)
