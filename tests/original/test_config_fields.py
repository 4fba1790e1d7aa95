"""Configs of the original UnED code: every field of its five config files (by name, with the
value the original file sets) is ours, maps onto ours, or fails naming itself and the fix; its
config paths exist; `--config.<original field>` works on the command line."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys

import ml_collections
import pytest
from absl import flags

from universal_embedding import runner, settings, train_settings
from universal_embedding.configs import _locate as locate
from universal_embedding.original import config_fields, field_translation
from universal_embedding.train import plan

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

_TRAIN = {  # the original configs/config_train_vit.py (iccv_configs/*: the same names)
    "experiment_name": "universal-embedding-vit", "dataset_name": "cars,sop",
    "knn_eval_names": "cars,sop", "data_dtype_str": "float32", "dataset_configs": {},
    "sampling_strategy": "round_robin", "classifier": "separate", "count_flops": False,
    "model_class": "vit_with_embedding", "model_type": "S/16", "model.representation_size": None,
    "model.output_dim": 64, "model.classifier": "token", "model.attention_dropout_rate": 0.0,
    "model.dropout_rate": 0.0, "model_dtype_str": "float32",
    "model.positional_embedding": "learned_1d", "pretrained_ckpt_dir": "data/models/",
    "init_ckpt": "", "optimizer": "adam", "optimizer_configs.beta1": 0.9,
    "optimizer_configs.beta2": 0.999, "optimizer_configs.weight_decay": 1e-6,
    "explicit_weight_decay": None, "l2_decay_factor": None, "label_smoothing": None,
    "num_training_epochs": 30, "batch_size": 128, "eval_batch_size": 1024,
    "knn_eval_batch_size": 2048, "disabled_separate_knns": "train_knn,test_knn",
    "disabled_merged_knns": "train_knn,val_knn,test_knn", "rng_seed": 0, "loss.m": 0.0,
    "loss.scale": 16, "loss.transform_logits_type": "normface", "max_to_keep": 1000,
    "log_eval_steps_frequency": 1, "log_summary_steps_frequency": 1,
    "checkpoint_steps_frequency": 1, "lr_configs.learning_rate_schedule": "compound",
    "lr_configs.factors": "constant", "lr_configs.base_learning_rate": 1e-3,
    "lr_configs.backbone": {}, "frozen_epochs": 2, "backbone_learning_rate_multiplier": 1e-2,
    "params_early_train": ["output_projection"], "do_knn": True, "embedd_to_eval": "projected",
    "do_final_testing": False, "save_descriptors": False, "extract_only_descrs": False,
    "write_summary": True, "checkpoint": True, "only_best_checkpoint": True,
    "debug_train": False, "debug_eval": False, "eval_dataset_dir": "", "train_dataset_dir": "",
    "project_feats_knn": True, "descr_save_path": None, "save_neighbors": False, "top_k": 5,
    "log_domain_acc": True, "log_csv": False, "info_files_dir": "",
}  # fmt: skip
_KNN = {  # the original configs/config_knn_vit.py
    "train_dir": "", "embedd_to_eval": "projected",
    "knn_eval_names": "food2k,cars,sop,inshop,inat,met,gldv2,rp2k",
    "disabled_separate_knns": "train_knn,val_knn", "disabled_merged_knns": "train_knn,val_knn",
    "eval_batch_size": 1024, "knn_eval_batch_size": 2048, "preextracted": False,
    "write_summary": True, "test_pretrained_features": False, "extract_only_descrs": False,
    "save_descriptors": False, "debug_eval": False, "eval_dataset_dir": "",
    "train_dataset_dir": "", "project_feats_knn": True, "top_k": 5, "only_best_knn": True,
    "knn_start_epoch": 3, "knn_end_epoch": 7, "log_csv": False, "save_neighbors": False,
    "info_files_dir": "", "descr_save_path": None,
}  # fmt: skip
_EXTRACT = {**_KNN, "base_dir": "", "embedd_to_eval": "backbone_out", "descr_save_path": "."}
_DESCR = {  # the original configs/config_descr_eval.py
    **{k: v for k, v in _KNN.items() if k not in ("train_dir", "embedd_to_eval")},
    "descr_path": "",
    "descr_eval": True,
    "rng_seed": 0,
    "write_summary": False,
    "save_descriptors": True,
}
# original file -> (our file by the original's path, its field set)
ORIGINAL_FILES = {
    "configs/config_train_vit.py": ("configs.config_train_vit", _TRAIN),
    "configs/config_knn_vit.py": ("configs.config_knn_vit", _KNN),
    "configs/config_extract_dir_descriptors.py": (
        "configs.config_extract_dir_descriptors", _EXTRACT
    ),
    "configs/config_descr_eval.py": ("configs.config_descr_eval", _DESCR),
    **{
        f"iccv_configs/{b}_vitb_{run}_train.py": (
            f"original.iccv_configs.{b}_vitb_{run}_train", _TRAIN
        )
        for b in ("IN", "CLIP")
        for run in ("uscrr", "uscds", "ujcrr", "ujcds")
    },
}  # fmt: skip
# Renamed fields: original -> (ours, value ours gets from the original file's value).
RENAMED = {
    "num_training_epochs": ("num_epochs", 30.0), "model_dtype_str": ("model.dtype", "float32"),
    "optimizer_configs.beta1": ("adam_b1", 0.9), "optimizer_configs.beta2": ("adam_b2", 0.999),
    "optimizer_configs.weight_decay": ("weight_decay", 1e-6),
    "lr_configs.base_learning_rate": ("lr", 1e-3),
    "backbone_learning_rate_multiplier": ("backbone_lr_multiplier", 1e-2),
    "label_smoothing": ("loss.label_smoothing", 0.0), "loss.m": ("loss.margin", 0.0),
    "loss.transform_logits_type": ("loss.type", "normface"),
    "max_to_keep": ("max_checkpoints_to_keep", 1000),
    "log_eval_steps_frequency": ("log_eval_steps", -1),
    "log_summary_steps_frequency": ("log_summary_steps", -1),
    "checkpoint_steps_frequency": ("checkpoint_steps", -1),
    "only_best_knn": ("checkpoint", "best"),
}  # fmt: skip


def _ours(module: str) -> ml_collections.ConfigDict:
    return importlib.import_module(f"universal_embedding.{module}").get_config()


def _get(c: ml_collections.ConfigDict, path: str):
    for part in path.split("."):
        c = c[part]
    return c


@pytest.mark.parametrize("original", sorted(ORIGINAL_FILES))
def test_the_original_config_paths_exist(original):
    module, _ = ORIGINAL_FILES[original]
    ours = importlib.import_module(f"universal_embedding.{module}").__file__.replace(".pyc", ".py")
    # the original's path, typed in the repository (the ICCV files moved to original/)
    assert os.path.isfile(locate.resolve(os.path.join(REPO, "universal_embedding", original)))
    # found by the original's path from any folder (an installed package)
    assert locate.packaged(f"universal_embedding/{original}") == ours
    with pytest.raises(ValueError, match="'bogus'"):
        importlib.import_module(f"universal_embedding.{module}").get_config("bogus=1")


@pytest.mark.parametrize("original", sorted(ORIGINAL_FILES))
def test_every_original_field_is_ours_or_translated(original):
    module, fields = ORIGINAL_FILES[original]
    c = _ours(module)
    shared = {
        f
        for f in fields
        if field_translation._has(c, f)
        and config_fields.RULES.get(f, config_fields.Rule()).target in (None, f)
    }
    shared -= {"checkpoint"}  # a bool in the original: its own rule
    assert not {f for f in fields if f not in shared and f not in config_fields.RULES}
    overrides = {f: v for f, v in fields.items() if f not in shared}
    lines = field_translation.translate(c, overrides)
    for name in overrides:
        assert sum(line.startswith(f"config: {name} ") or line.startswith(f"config: {name}=")
                   for line in lines) <= 1, name  # fmt: skip
    for name, (target, value) in RENAMED.items():
        if name in overrides and field_translation._has(c, target):
            assert _get(c, target) == value, name
            assert any(f"config: {name} -> {target}" in line for line in lines), name
    if "pretrained_ckpt_dir" in overrides:  # data/models/ + the file of model_class/model_type
        assert c.pretrained_ckpt == _ours(module).pretrained_ckpt
    assert not [
        k for k in c.keys() if k in ("optimizer_configs", "lr_configs", "num_training_epochs")
    ]


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("count_flops", True, r"config.count_flops=True .*not supported; remove the field"),
        ("model.dropout_rate", 0.1, r"model.dropout_rate=0.1 .*dropout is not supported"),
        ("optimizer", "sgd", r"optimizer='sgd' .*AdamW"),
        ("lr_configs.factors", "constant*cosine_decay", r"factors=.*--config.lr_schedule"),
        ("loss.transform_logits_type", "softmax", r"not one of normface, cosface, arcface"),
        ("log_eval_steps_frequency", 0, r"whole number of times per epoch"),
        ("preextracted", True, r"score saved descriptors with descr_eval"),
        ("test_pretrained_features", True, r"--config.train_dir='' --config.pretrained_ckpt"),
        ("only_best_knn", False, r"--config.checkpoint=<step>"),
        ("project_feats_knn", False, r"--config.embedd_to_eval=backbone_out"),
        (
            "num_training_epochs",
            "many",
            r"num_training_epochs='many'.*cannot set config.num_epochs",
        ),
    ],
)
def test_unsupported_values_fail_naming_the_field_and_the_fix(field, value, message):
    c = _ours("configs.config_knn_vit") if "knn" in field else _ours("configs.config_train_vit")
    with pytest.raises(ValueError, match=message):
        field_translation.translate(c, {field: value})


def test_pretrained_ckpt_dir_gives_the_file_of_the_model():
    c = _ours("configs.config_train_vit")
    c.model_type = "S/16"
    field_translation.translate(c, {"pretrained_ckpt_dir": "/w"})
    assert c.pretrained_ckpt == (
        "/w/imagenet/S_16-i21k-300ep-lr_0.001-aug_light1-wd_0.03-do_0.0-sd_0.0"
        "--imagenet2012-steps_20k-lr_0.03-res_224.npz"
    )
    c = _ours("configs.config_train_clip_vit")
    field_translation.translate(c, {"pretrained_ckpt_dir": "/w/"})
    assert c.pretrained_ckpt == "/w/clip/vit_b16.npy"


def test_fields_in_an_original_style_config_dict_are_moved():
    c = _ours("configs.config_train_vit")
    with c.unlocked():
        c.num_training_epochs = 3
        c.optimizer_configs = {"beta1": 0.8, "beta2": 0.99}
        c.lr_configs = {"base_learning_rate": 0.02, "backbone": {}}
        c.loss.m = 0.25
        c.loss.transform_logits_type = "arcface"
        c.checkpoint = True
    c.lock()
    lines = field_translation.translate(c)
    assert (c.num_epochs, c.adam_b1, c.adam_b2, c.lr) == (3.0, 0.8, 0.99, 0.02)
    assert (c.loss.margin, c.loss.type) == (0.25, "arcface")
    for gone in ("num_training_epochs", "optimizer_configs", "lr_configs", "checkpoint"):
        assert gone not in c
    assert "m" not in c.loss and "transform_logits_type" not in c.loss
    assert "config: num_training_epochs -> num_epochs (original field name; num_epochs=3)" in lines
    assert len(lines) == 7  # one per field: 6 renamed, checkpoint
    # a file of the original (not derived from ours): its list of shares becomes our string
    original = ml_collections.ConfigDict({"specialist_top_steps": [3, 1], "lr": 0.1})
    assert (
        len(field_translation.translate(original)) == 1 and original.specialist_top_steps == "3,1"
    )


def test_split_argv_takes_out_only_original_fields():
    argv = ["prog", "--config=c.py", "--config.num_training_epochs=7", "--config.lr=1",
            "--config.optimizer_configs.beta1", "0.8", "--config.noonly_best_knn",
            "--config.checkpoint=latest", "--config.loss.m=0.1", "--workdir=w"]  # fmt: skip
    rest, found = field_translation.split_argv(argv)
    assert rest == [
        "prog",
        "--config=c.py",
        "--config.lr=1",
        "--config.checkpoint=latest",
        "--workdir=w",
    ]
    assert found == {"num_training_epochs": 7, "optimizer_configs.beta1": 0.8,
                     "only_best_knn": False, "loss.m": 0.1}  # fmt: skip


def test_command_line_overrides_with_original_names(caplog):
    argv = ["prog", "--config=universal_embedding/configs/tiny.py", "--workdir=w",
            "--config.num_training_epochs=7", "--config.lr_configs.base_learning_rate=0.05",
            "--config.backbone_learning_rate_multiplier=0.1", "--config.max_grad_norm=1.0",
            "--config.log_eval_steps_frequency=4", "--config.loss.transform_logits_type=cosface",
            "--config.batch_size=4"]  # fmt: skip
    argv, original = field_translation.split_argv(argv)
    fv = flags.FlagValues()
    runner.define_flags(fv, argv)
    fv(argv)
    with caplog.at_level("WARNING"):
        c, _ = runner.config_and_workdir(fv, original_overrides=original)
    assert (c.num_epochs, c.lr, c.backbone_lr_multiplier, c.grad_clip_norm) == (7.0, 0.05, 0.1, 1.0)
    assert (c.log_eval_steps, c.loss.type, c.batch_size) == (-4, "cosface", 4)
    assert "num_training_epochs -> num_epochs" in caplog.text
    assert caplog.text.count("original field name") == 6


def test_intervals_n_times_per_epoch():
    assert [plan.every_steps(v, 100, zero=7) for v in (30, 0, -1, -4, -300)] == [30, 7, 100, 25, 1]


def test_a_program_logs_each_mapped_field_and_refuses_in_one_line(tmp_path):
    env = {**os.environ, "PYTHONPATH": REPO, "JAX_PLATFORMS": "cpu", "TF_CPP_MIN_LOG_LEVEL": "2"}
    base_args = [sys.executable, "-m", "universal_embedding.descr_eval",
                 "--config=universal_embedding/configs/config_descr_eval.py",
                 f"--workdir={tmp_path}/w"]  # fmt: skip
    out = subprocess.run(
        [*base_args, "--config.knn_eval_batch_size=4096", "--config.count_flops=True"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert out.returncode == 1
    assert out.stderr.strip().splitlines()[-1] == (
        "error (ValueError): config.count_flops=True (a field of the original UnED code): "
        "not supported; remove the field. [--verbose for the traceback]"
    )
    out = subprocess.run(
        [*base_args, "--config.num_training_epochs", "3", "--config.descr_path=missing.json"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert out.returncode == 1 and "missing.json" in out.stderr
    assert out.stderr.count("num_training_epochs -> num_epochs") == 1


def _nested(fields: dict) -> dict:
    out: dict = {}
    for path, value in fields.items():
        *parents, leaf = path.split(".")
        node = out
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return out


def _flat_keys(c: ml_collections.ConfigDict, prefix: str = "") -> set[str]:
    keys = set()
    for k, v in c.items():
        if isinstance(v, ml_collections.ConfigDict) and v:
            keys |= _flat_keys(v, f"{prefix}{k}.")
        else:
            keys.add(prefix + k)
    return keys


@pytest.mark.parametrize(
    "fields, defaults", [(_TRAIN, "config_train_vit"), (_KNN, "config_knn_vit")]
)
def test_a_config_file_of_the_original_code_runs_with_our_defaults(tmp_path, fields, defaults):
    """A user's own config file with the original's field set (as its config_*.py files)."""
    path = tmp_path / "my_original_config.py"
    path.write_text(
        "import ml_collections\n\n\ndef get_config():\n"
        f"    return ml_collections.ConfigDict({_nested(fields)!r})\n"
    )
    argv = ["prog", f"--config={path}", "--workdir=w", "--config.num_training_epochs=2"]
    argv, original = field_translation.split_argv(argv)
    fv = flags.FlagValues()
    runner.define_flags(fv, argv)
    fv(argv)
    c, _ = runner.config_and_workdir(fv, original_overrides=original, defaults=defaults)
    ours = _ours(f"configs.{defaults}")
    assert _flat_keys(c) >= _flat_keys(ours)
    left = _flat_keys(c) - _flat_keys(ours) - {"descr_save_path", "init_ckpt"}
    assert left == set(), left  # every original field was moved or dropped
    assert c.num_epochs == 2.0 and c.top_k == 5 and c.knn_search == "auto"
    if defaults == "config_train_vit":
        assert (c.model_type, c.dataset_name, c.log_summary_steps) == ("S/16", "cars,sop", -1)
        assert c.pretrained_ckpt.endswith("steps_20k-lr_0.03-res_224.npz")
        assert (c.adam_b1, c.lr, c.backbone_lr_multiplier, c.loss.type) == (
            0.9, 1e-3, 1e-2, "normface"
        )  # fmt: skip
    else:
        assert (c.checkpoint, c.eval_batch_size, c.train_dir) == ("best", 1024, "")


# The original UDON code's udon_configs/config_train_vit.py, every field with its value.
_UDON_TRAIN = {
    "experiment_name": "universal-embedding-vit",
    "dataset_name": "food2k,cars,sop,inshop,inat,met,gldv2,rp2k",
    "knn_eval_names": "food2k,cars,sop,inshop,inat,met,gldv2,rp2k",
    "data_dtype_str": "float32", "dataset_configs": {}, "sampling_strategy": "round_robin",
    "update_sampler": True, "update_sampler_every_steps": 1000,
    "update_sampler_logit_type": "teacher", "classifier": "separate", "count_flops": False,
    "model_class": "udon_vit_with_embedding", "model_type": "B/16",
    "model.representation_size": None, "model.output_dim": 64, "model.classifier": "token",
    "model.attention_dropout_rate": 0.0, "model.dropout_rate": 0.0,
    "model_dtype_str": "float32", "model.positional_embedding": "learned_1d",
    "pretrained_ckpt_dir": "data/models/", "init_ckpt": "", "optimizer": "adam",
    "optimizer_configs.beta1": 0.9, "optimizer_configs.beta2": 0.999,
    "optimizer_configs.weight_decay": 1e-6, "explicit_weight_decay": None,
    "l2_decay_factor": None, "label_smoothing": None, "num_training_epochs": 10,
    "batch_size": 128, "eval_batch_size": 1024, "knn_eval_batch_size": 2048,
    "disabled_separate_knns": "train_knn,test_knn", "disabled_merged_knns": "train_knn,test_knn",
    "rng_seed": 0, "loss.m": 0.0, "loss.scale": 16, "loss.transform_logits_type": "normface",
    "model.universal_student_dim": (64,), "model.teacher_dim": (256,),
    "loss.distill_udon_logits": True,
    "loss.distill_udon_logits_temperature.teacher": 0.1,
    "loss.distill_udon_logits_temperature.universal_student": 0.1,
    "loss.distill_udon_batch_simils": True, "loss.classif_udon_universal_student_weight": 1.0,
    "loss.classif_udon_teacher_weight": 1.0, "loss.distill_udon_logits_weight": 1.0,
    "loss.distill_udon_simils_weight": 1.0, "loss.classif_losses_on": "teacher,universal_student",
    "max_to_keep": 1000, "log_eval_steps_frequency": 1, "log_summary_steps_frequency": 10,
    "checkpoint_steps_frequency": 1, "lr_configs.learning_rate_schedule": "compound",
    "lr_configs.factors": "constant", "lr_configs.base_learning_rate": 1e-3,
    "lr_configs.backbone": {}, "frozen_epochs": 2, "backbone_learning_rate_multiplier": 1e-2,
    "params_early_train": [
        "output_projection", "teacher_projection_domain", "universal_student_projection_domain"
    ],
    "do_knn": True, "embedd_to_eval": "universal_student_embedd,teacher_embedd",
    "universal_embedding_is": "universal_student_embedd", "do_final_testing": True,
    "save_descriptors": False, "extract_only_descrs": False, "write_summary": True,
    "checkpoint": True, "only_best_checkpoint": True, "debug_train": False, "debug_eval": False,
    "eval_dataset_dir": "", "train_dataset_dir": "", "project_feats_knn": True,
    "descr_save_path": None, "save_neighbors": False, "top_k": 5, "log_domain_acc": True,
    "log_csv": False, "info_files_dir": "",
}  # fmt: skip
# ... and its udon_configs/config_knn_vit.py
_UDON_KNN = {
    "train_dir": "", "embedd_to_eval": "universal_student_embedd,teacher_embedd",
    "universal_embedding_is": "universal_student_embedd",
    "knn_eval_names": "food2k,cars,sop,inshop,inat,met,gldv2,rp2k",
    "disabled_separate_knns": "train_knn,val_knn", "disabled_merged_knns": "train_knn,val_knn",
    "eval_batch_size": 1024, "knn_eval_batch_size": 2048, "preextracted": False,
    "write_summary": True, "test_pretrained_features": False, "extract_only_descrs": False,
    "save_descriptors": True, "debug_eval": False, "eval_dataset_dir": "",
    "train_dataset_dir": "", "project_feats_knn": True, "top_k": 5, "only_best_knn": True,
    "knn_start_epoch": 3, "knn_end_epoch": 7, "log_csv": False, "save_neighbors": False,
    "info_files_dir": "", "descr_save_path": None,
}  # fmt: skip
# how each field the UDON files add to the UnED ones is handled: ours (same name) or a rule
_UDON_HANDLING = {
    "update_sampler": "ours", "update_sampler_every_steps": "ours",
    "update_sampler_logit_type": "ours", "model.universal_student_dim": "ours",
    "model.teacher_dim": "ours", "loss.distill_udon_logits": "ours",
    "loss.distill_udon_logits_temperature.teacher": "ours",
    "loss.distill_udon_logits_temperature.universal_student": "ours",
    "loss.distill_udon_batch_simils": "ours", "loss.classif_udon_universal_student_weight": "ours",
    "loss.classif_udon_teacher_weight": "ours", "loss.distill_udon_logits_weight": "ours",
    "loss.distill_udon_simils_weight": "ours", "loss.classif_losses_on": "ours",
    "universal_embedding_is": "mapped", "params_early_train": "accepted",
}  # fmt: skip


def _run_original_file(tmp_path, fields: dict, defaults: str, *extra: str):
    path = tmp_path / "udon_config.py"
    path.write_text(
        "import ml_collections\n\n\ndef get_config():\n"
        f"    return ml_collections.ConfigDict({_nested(fields)!r})\n"
    )
    argv = ["prog", f"--config={path}", "--workdir=w", *extra]
    argv, original = field_translation.split_argv(argv)
    fv = flags.FlagValues()
    runner.define_flags(fv, argv)
    fv(argv)
    return runner.config_and_workdir(fv, original_overrides=original, defaults=defaults)[0]


def test_udon_files_add_only_fields_that_are_ours_or_have_a_rule():
    added = {**_UDON_TRAIN, **_UDON_KNN}.keys() - _TRAIN.keys() - _KNN.keys()
    # params_early_train: a field of the UnED files too, with a new value here
    assert added | {"params_early_train"} == _UDON_HANDLING.keys()
    udon, udon_knn = _ours("configs.config_train_udon"), _ours("configs.config_knn_vit")
    for name, how in _UDON_HANDLING.items():
        if how == "ours":
            assert field_translation._has(udon, name) and name not in config_fields.RULES, name
        else:
            assert name in config_fields.RULES, name
    assert config_fields.RULES["universal_embedding_is"].target == "embedd_to_eval"
    assert field_translation._has(udon_knn, "embedd_to_eval")


@pytest.mark.parametrize(
    "fields, defaults", [(_UDON_TRAIN, "config_train_vit"), (_UDON_KNN, "config_knn_vit")]
)
def test_the_original_udon_config_files_run_with_our_programs(tmp_path, fields, defaults, caplog):
    with caplog.at_level("WARNING"):
        c = _run_original_file(tmp_path, fields, defaults)
    # main's defaults for a UDON model_class are config_train_udon's (its UDON-only fields)
    ours = _ours("configs.config_train_udon" if "model_class" in fields else f"configs.{defaults}")
    assert _flat_keys(c) >= _flat_keys(ours)
    left = _flat_keys(c) - _flat_keys(ours) - {"descr_save_path", "init_ckpt"}
    assert left == set(), left  # every original field was moved or dropped
    assert c.embedd_to_eval == "universal_student_embedd,teacher_embedd"
    assert "universal_embedding_is -> embedd_to_eval" in caplog.text
    if defaults == "config_knn_vit":
        assert (c.checkpoint, c.save_descriptors) == ("best", True)
        return
    assert "params_early_train=['output_projection', 'teacher_projection_domain'" in caplog.text
    assert (c.model_class, c.model_type, c.num_epochs, c.log_summary_steps) == (
        "udon_vit_with_embedding", "B/16", 10.0, -10
    )  # fmt: skip
    assert c.pretrained_ckpt == ours.pretrained_ckpt  # data/models/imagenet/<AugReg B/16>
    assert (c.lr, c.backbone_lr_multiplier, c.frozen_epochs, c.weight_decay) == (
        1e-3, 1e-2, 2, 1e-6
    )  # fmt: skip
    assert (c.sampler_window, c.sampler_threefry_partitionable) == ("since_update", True)
    assert (c.update_sampler_every_steps, c.loss.distill_udon_simils_groups) == (1000, 4)
    # the typed values the trainer gets (the original's data paths are '' here)
    method = train_settings.method_settings(c)
    assert method.is_udon and method.dynamic_sampler.every == 1000
    assert method.udon_loss.label_smoothing == 0.0


def test_universal_embedding_is_picks_the_universal_embedding(tmp_path):
    fields = {**_UDON_TRAIN, "universal_embedding_is": "teacher_embedd"}
    c = _run_original_file(tmp_path, fields, "config_train_vit")
    assert c.embedd_to_eval == "teacher_embedd,universal_student_embedd"
    assert settings.model_spec(c).embedd_to_eval.split(",")[0] == "teacher_embedd"
    with pytest.raises(ValueError, match=r"universal_embedding_is='backbone_out'.*must be one of "
                       r"embedd_to_eval \(universal_student_embedd,teacher_embedd\)"):  # fmt: skip
        _run_original_file(
            tmp_path, {**_UDON_TRAIN, "universal_embedding_is": "backbone_out"}, "config_train_vit"
        )


def test_udon_sampler_options_and_other_early_lists_refused(tmp_path):
    # our fields added to the original file (one it lacks can't be set on the command line)
    fields = {**_UDON_TRAIN, "sampler_window": "original", "sampler_threefry_partitionable": False}
    c = _run_original_file(
        tmp_path, fields, "config_train_vit", "--config.model_class=udon_clip_vit_with_embedding"
    )
    sampler = train_settings.method_settings(c).dynamic_sampler
    assert (sampler.window, sampler.threefry_partitionable) == ("original", False)
    assert c.pretrained_ckpt == "data/models/clip/vit_b16.npy"  # the UDON CLIP's weights
    with pytest.raises(ValueError, match=r"params_early_train=\['teacher_projection_domain'\]"):
        _run_original_file(
            tmp_path, {**_UDON_TRAIN, "params_early_train": ["teacher_projection_domain"]},
            "config_train_vit",
        )  # fmt: skip


@pytest.mark.parametrize(
    "name, fields, defaults",
    [("config_train_vit", _UDON_TRAIN, "config_train_vit"),
     ("config_knn_vit", _UDON_KNN, "config_knn_vit")],
)  # fmt: skip
def test_the_original_udon_config_paths_give_the_original_values(tmp_path, name, fields, defaults):
    ours = importlib.import_module(f"universal_embedding.original.udon_configs.{name}")
    path = ours.__file__.replace(".pyc", ".py")
    assert locate.packaged(f"universal_embedding/udon_configs/{name}.py") == path
    assert locate.resolve(os.path.join(REPO, "universal_embedding/udon_configs", f"{name}.py"))
    translated = _run_original_file(tmp_path, fields, defaults).to_dict()
    packaged = ours.get_config().to_dict()
    differ = {k for k in packaged if translated.get(k) != packaged[k]}
    # the original keeps 1000 checkpoints, ours the latest few to resume from (plus the best);
    # the original's data paths are '' (given on the command line), ours point to data/
    paths = {"train_dataset_dir", "eval_dataset_dir", "info_files_dir"}
    assert differ <= {"max_checkpoints_to_keep", *paths}, differ
