"""Field names of the original UnED code, translated onto ours in one place.

A config (from a file or from `--config.<field>=value` overrides) may use the original field
names: each one is mapped onto our field of the same meaning with one logged line
(`num_training_epochs -> num_epochs`), accepted when its value is what this code always does
(`optimizer='adam'`), or refused with a one-line error naming it and what to use instead.

`split_argv` takes the original names out of the command line (ml_collections' config_flags
would reject them as unknown fields) and `translate` applies them after flag parsing;
`universal_embedding.app` calls both for every config-driven program.
"""

from __future__ import annotations

import ast
import dataclasses
import os
from collections.abc import Callable, Sequence
from typing import Any

import ml_collections

# Starting weights of the original (`pretrained_ckpt_dir` + this file, by model class/type).
CLIP_CKPT = "clip/vit_b16.npy"


@dataclasses.dataclass(frozen=True)
class Rule:
    """How one original field is handled.

    target: our field (dotted) receiving `convert(value, config)`; None: no field of ours.
    accept: values that need no field here (what this code always does); others fail.
    advice: what to use instead, shown when the value is refused.
    applies: whether a value found in a config file is the original field (for names that
    are also ours, e.g. `checkpoint`); command-line overrides of such names are ours.
    """

    target: str | None = None
    convert: Callable[[Any, ml_collections.ConfigDict], Any] | None = None
    accept: tuple = ()
    accept_any: bool = False
    advice: str = ""
    applies: Callable[[Any], bool] | None = None


def _none_to(default: Any) -> Callable[[Any, Any], Any]:
    return lambda value, _c: default if value is None else value


def _times_per_epoch(value: Any, _c: Any) -> int:
    n = int(value)
    if n < 1 or n != value:
        raise ValueError(f"must be a whole number of times per epoch >= 1, not {value!r}")
    return -n


def _loss_type(value: Any, _c: Any) -> str:
    if value not in ("normface", "cosface", "arcface"):
        raise ValueError(f"{value!r} is not one of normface, cosface, arcface")
    return value


def _only_best(value: Any, _c: Any) -> str:
    if value is not True:
        raise ValueError(
            "evaluating every epoch's checkpoint is not supported; run once per checkpoint "
            "with --config.checkpoint=<step> (or 'latest')"
        )
    return "best"


def _pretrained_file(directory: Any, c: ml_collections.ConfigDict) -> str:
    from universal_embedding.configs import config_train_vit

    if str(c.get("model_class", "")).startswith("clip"):
        return os.path.join(directory, CLIP_CKPT)
    name = config_train_vit.AUGREG_CHECKPOINTS.get(c.get("model_type"))
    if name is None:
        raise ValueError(f"no AugReg weights are known for model_type={c.get('model_type')!r}")
    return os.path.join(directory, "imagenet", name)


def _comma_list(value: Any, _c: Any) -> str:
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    return value


def _is_list(value: Any) -> bool:
    return isinstance(value, (list, tuple))


def _is_none(value: Any) -> bool:
    return value is None


def _is_bool(value: Any) -> bool:
    return isinstance(value, bool)


def _ignored(advice: str = "") -> Rule:
    return Rule(accept_any=True, advice=advice)


def _only(*values: Any, advice: str) -> Rule:
    return Rule(accept=values, advice=advice)


_DROPOUT = "dropout is not supported (the paper trains without it); remove the field"
_NO_WEIGHTS = "weight decay is decoupled AdamW: use --config.weight_decay"

# original field (dotted) -> rule. Nested fields come before their containers.
RULES: dict[str, Rule] = {
    # ---- renamed ----
    "num_training_epochs": Rule("num_epochs"),
    "model_dtype_str": Rule("model.dtype"),
    "optimizer_configs.beta1": Rule("adam_b1"),
    "optimizer_configs.beta2": Rule("adam_b2"),
    "optimizer_configs.weight_decay": Rule("weight_decay"),
    "lr_configs.base_learning_rate": Rule("lr"),
    "backbone_learning_rate_multiplier": Rule("backbone_lr_multiplier"),
    "max_grad_norm": Rule("grad_clip_norm", _none_to(0.0)),
    "label_smoothing": Rule("loss.label_smoothing", _none_to(0.0)),
    "loss.m": Rule("loss.margin"),
    "loss.transform_logits_type": Rule("loss.type", _loss_type),
    "max_to_keep": Rule("max_checkpoints_to_keep"),
    "log_eval_steps_frequency": Rule("log_eval_steps", _times_per_epoch),
    "log_summary_steps_frequency": Rule("log_summary_steps", _times_per_epoch),
    "checkpoint_steps_frequency": Rule("checkpoint_steps", _times_per_epoch),
    "pretrained_ckpt_dir": Rule("pretrained_ckpt", _pretrained_file),
    "only_best_knn": Rule("checkpoint", _only_best),
    "init_ckpt": Rule("init_ckpt"),
    # None (the original's default place) is our '' (see descriptor_format in configs/base.py)
    "descr_save_path": Rule("descr_save_path", _none_to(""), applies=_is_none),
    "specialist_top_steps": Rule("specialist_top_steps", _comma_list, applies=_is_list),
    # ---- what this code always does ----
    "checkpoint": Rule(accept=(True,), advice="checkpoints are always written", applies=_is_bool),
    "only_best_checkpoint": _ignored("the best checkpoint and the latest ones are kept"),
    "optimizer": _only("adam", advice="the optimiser is AdamW (adam_b1, adam_b2, weight_decay)"),
    "explicit_weight_decay": _only(None, advice=_NO_WEIGHTS),
    "l2_decay_factor": _only(None, advice=_NO_WEIGHTS),
    "lr_configs.learning_rate_schedule": _only(
        "compound", advice="use --config.lr_schedule=constant|warmup_cosine"
    ),
    "lr_configs.factors": _only(
        "constant", advice="use --config.lr_schedule=warmup_cosine --config.warmup_steps=N"
    ),
    "lr_configs.backbone": _only({}, advice="use --config.backbone_lr_multiplier"),
    "lr_configs": _only({}, advice="use --config.lr and --config.lr_schedule"),
    "optimizer_configs": _only({}, advice="use --config.adam_b1/adam_b2/weight_decay"),
    "params_early_train": _only(
        ["output_projection"],
        ("output_projection",),
        advice="the classifier heads train from the start, backbone and projection after "
        "--config.frozen_epochs",
    ),
    "dataset_configs": _only({}, advice="remove the field"),
    "data_dtype_str": _only("float32", advice="for bfloat16 compute use --config.model.dtype"),
    "model.representation_size": _only(None, advice="use --config.model.output_dim"),
    "model.classifier": _only("token", advice="the embedding is taken from the class token"),
    "model.positional_embedding": _only("learned_1d", advice="remove the field"),
    "model.dropout_rate": _only(0.0, advice=_DROPOUT),
    "model.attention_dropout_rate": _only(0.0, advice=_DROPOUT),
    "do_knn": _only(True, advice="use --config.eval_knns to choose the setups evaluated"),
    "project_feats_knn": _only(True, advice="use --config.embedd_to_eval=backbone_out"),
    "extract_only_descrs": _only(False, advice="use --config.save_descriptors=True"),
    "preextracted": _only(False, advice="score saved descriptors with descr_eval"),
    "test_pretrained_features": _only(
        False, advice="run knn_main with --config.train_dir='' --config.pretrained_ckpt=PATH"
    ),
    "descr_eval": _only(True, advice="remove the field"),
    "count_flops": _only(False, advice="remove the field"),
    "debug_train": _only(False, advice="use --config.stop_after_steps or num_training_steps"),
    "debug_eval": _only(False, advice="remove the field"),
    "log_csv": _only(False, advice="W/results.csv is always written"),
    "experiment_name": _ignored("use --wandb_name to name a run"),
    "write_summary": _ignored("TensorBoard summaries are always written"),
    "log_domain_acc": _ignored("per-domain training accuracy is always logged"),
    "knn_eval_batch_size": _ignored("the kNN search sizes its own batches"),
    "knn_start_epoch": _ignored("use --config.checkpoint=<step>"),
    "knn_end_epoch": _ignored("use --config.checkpoint=<step>"),
}
# Names that are also fields of some of our configs: on the command line they are ours.
SHARED_NAMES = frozenset({"checkpoint", "init_ckpt", "specialist_top_steps", "descr_save_path"})


def _has(c: ml_collections.ConfigDict, path: str) -> bool:
    *parents, leaf = path.split(".")
    for p in parents:
        if p not in c or not isinstance(c[p], ml_collections.ConfigDict):
            return False
        c = c[p]
    return leaf in c


def _parent(c: ml_collections.ConfigDict, path: str) -> tuple[ml_collections.ConfigDict, str]:
    *parents, leaf = path.split(".")
    for p in parents:
        c = c[p]
    return c, leaf


def _plain(value: Any) -> Any:
    return value.to_dict() if isinstance(value, ml_collections.ConfigDict) else value


def parse_value(text: str) -> Any:
    """A command-line value: Python literal (7, 1e-3, None, True, [..]) or else the string."""
    low = text.strip().lower()
    if low in ("true", "false"):
        return low == "true"
    try:
        return ast.literal_eval(text.strip())
    except (ValueError, SyntaxError):
        return text


def split_argv(argv: Sequence[str]) -> tuple[list[str], dict[str, Any]]:
    """argv without `--config.<original field>` overrides, and those overrides parsed.

    Forms: `--config.F=V`, `--config.F V`, and for booleans `--config.F` / `--config.noF`.
    """
    out: list[str] = []
    found: dict[str, Any] = {}
    i = 0
    while i < len(argv):
        item = argv[i]
        name, sep, text = item[len("--config.") :].partition("=")
        no_name = name[2:] if name.startswith("no") else ""
        if not item.startswith("--config.") or (name not in RULES and no_name not in RULES):
            out.append(item)
        elif name in SHARED_NAMES or (name not in RULES and no_name in SHARED_NAMES):
            out.append(item)
        elif name not in RULES:
            found[no_name] = False
        elif sep:
            found[name] = parse_value(text)
        elif i + 1 < len(argv) and not argv[i + 1].startswith("-"):
            found[name] = parse_value(argv[i + 1])
            i += 1
        else:
            found[name] = True
        i += 1
    return out, found


def _take(c: ml_collections.ConfigDict, path: str, rule: Rule) -> tuple[bool, Any]:
    """Remove the original field `path` from `c` when present there; (found, value)."""
    if not _has(c, path) or (rule.target == path and rule.applies is None):
        return False, None
    parent, leaf = _parent(c, path)
    value = _plain(parent[leaf])
    if rule.applies is not None and not rule.applies(value):
        return False, None
    with parent.unlocked():
        del parent[leaf]
    return True, value


def _refuse(path: str, value: Any, why: str) -> ValueError:
    return ValueError(f"config.{path}={value!r} (a field of the original UnED code): {why}.")


def _assign(c: ml_collections.ConfigDict, path: str, rule: Rule, value: Any) -> str:
    """Apply one original field; the line to log."""
    if rule.target is None:
        if value == {}:  # an emptied container (optimizer_configs, lr_configs, ...)
            return ""
        if rule.accept_any or value in rule.accept:
            return f"config: {path}={value!r} has no effect here ({rule.advice})"
        raise _refuse(path, value, f"not supported; {rule.advice}")
    same = rule.target == path  # e.g. specialist_top_steps, a list there and a string here
    if not same and not _has(c, rule.target):
        return f"config: {path} has no effect in this program (it has no config.{rule.target})"
    try:
        new = rule.convert(value, c) if rule.convert else value
        parent, leaf = _parent(c, rule.target)
        with parent.unlocked():
            parent[leaf] = new
    except (TypeError, ValueError) as e:
        raise _refuse(path, value, f"cannot set config.{rule.target}: {e}") from None
    return f"config: {path} -> {rule.target} (original field name; {rule.target}={new!r})"


def complete(config: ml_collections.ConfigDict, defaults: ml_collections.ConfigDict) -> None:
    """Add to `config` (in place, nested too) every field of `defaults` it lacks."""
    with config.unlocked():
        for key, value in defaults.items():
            if key not in config:
                config[key] = value
            elif isinstance(value, ml_collections.ConfigDict) and isinstance(
                config[key], ml_collections.ConfigDict
            ):
                complete(config[key], value)


def translate(
    config: ml_collections.ConfigDict,
    overrides: dict[str, Any] | None = None,
    defaults: ml_collections.ConfigDict | None = None,
) -> list[str]:
    """Move every original field of `config` (then of `overrides`) onto ours, in place.

    A config with original fields of its own (a config file of the original code) first gets
    every field of `defaults` (the program's default config) it lacks. Returns one line per
    original field (mapped or without effect); raises ValueError naming a field whose value is
    not supported and what to use instead.
    """
    found: dict[str, Any] = {}
    for path, rule in RULES.items():
        present, value = _take(config, path, rule)
        if present:
            found[path] = value
    if found and defaults is not None:
        complete(config, defaults)
    found.update(overrides or {})
    lines = [_assign(config, path, RULES[path], found[path]) for path in RULES if path in found]
    return [line for line in lines if line]
