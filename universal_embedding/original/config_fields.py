"""Field names of the original UnED code and how each one maps onto ours, in one place.

A config (from a file or from `--config.<field>=value` overrides) may use the original field
names: each one is mapped onto our field of the same meaning with one logged line
(`num_training_epochs -> num_epochs`), accepted when its value is what this code always does
(`optimizer='adam'`), or refused with a one-line error naming it and what to use instead.
`RULES` says which; `field_translation` applies them; `markdown_table` renders them as the
migration table of docs/original-fields.md (`python -m universal_embedding.original.config_fields
> docs/original-fields.md` writes that file), so the rules and their documentation are one.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from typing import Any

import ml_collections

# params_early_train of the original UDON config: its heads and every projection from step 0
# (built in for UDON models, docs/udon-method.md §4).
UDON_EARLY_TRAIN = [
    "output_projection",
    "teacher_projection_domain",
    "universal_student_projection_domain",
]
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
    doc: what the mapping does beyond renaming, for the migration table (markdown).
    """

    target: str | None = None
    convert: Callable[[Any, ml_collections.ConfigDict], Any] | None = None
    accept: tuple = ()
    accept_any: bool = False
    advice: str = ""
    applies: Callable[[Any], bool] | None = None
    doc: str = ""


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

    if str(c.get("model_class", "")).removeprefix("udon_").startswith("clip"):
        return os.path.join(directory, CLIP_CKPT)
    name = config_train_vit.AUGREG_CHECKPOINTS.get(c.get("model_type"))
    if name is None:
        raise ValueError(f"no AugReg weights are known for model_type={c.get('model_type')!r}")
    return os.path.join(directory, "imagenet", name)


def _universal_first(name: Any, c: ml_collections.ConfigDict) -> str:
    """embedd_to_eval with `name` (the original's universal_embedding_is) moved first: the
    first listed embedding is the universal one here."""
    names = [n.strip() for n in str(c.embedd_to_eval).split(",") if n.strip()]
    if name not in names:
        raise ValueError(f"it must be one of embedd_to_eval ({','.join(names)})")
    return ",".join([name, *(n for n in names if n != name)])


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
_PER_EPOCH = (
    "N times per epoch -> -N (a negative interval is times per epoch, a positive one steps)"
)

# original field (dotted) -> rule. Nested fields come before their containers.
RULES: dict[str, Rule] = {
    # ---- renamed ----
    "num_training_epochs": Rule("num_epochs"),
    "model_dtype_str": Rule("model.dtype"),
    "optimizer_configs.beta1": Rule("adam_b1"),
    "optimizer_configs.beta2": Rule("adam_b2"),
    "optimizer_configs.weight_decay": Rule(
        "weight_decay", doc="decoupled AdamW, as the original's `adam` with weight decay"
    ),
    "lr_configs.base_learning_rate": Rule("lr", doc="the heads' rate"),
    "backbone_learning_rate_multiplier": Rule("backbone_lr_multiplier"),
    "max_grad_norm": Rule("grad_clip_norm", _none_to(0.0), doc="`None` -> 0, off"),
    "label_smoothing": Rule("loss.label_smoothing", _none_to(0.0), doc="`None` -> 0"),
    "loss.m": Rule("loss.margin"),
    "loss.transform_logits_type": Rule(
        "loss.type", _loss_type, doc="`normface` | `cosface` | `arcface`"
    ),
    "max_to_keep": Rule("max_checkpoints_to_keep"),
    "log_eval_steps_frequency": Rule("log_eval_steps", _times_per_epoch, doc=_PER_EPOCH),
    "log_summary_steps_frequency": Rule("log_summary_steps", _times_per_epoch, doc=_PER_EPOCH),
    "checkpoint_steps_frequency": Rule("checkpoint_steps", _times_per_epoch, doc=_PER_EPOCH),
    "pretrained_ckpt_dir": Rule(
        "pretrained_ckpt",
        _pretrained_file,
        doc=f"D -> D/`{CLIP_CKPT}` (CLIP) or D/`imagenet/<AugReg file of model_type>`",
    ),
    "only_best_knn": Rule(
        "checkpoint",
        _only_best,
        doc="`True` -> `'best'` (`False`, every epoch's checkpoint: run once per "
        "`--config.checkpoint=<step>`)",
    ),
    "init_ckpt": Rule(
        "init_ckpt", doc="also a `checkpoint_<step>` file or a training workdir of the original"
    ),
    # None (the original's default place) is our '' (see descriptor_format in configs/base.py)
    "descr_save_path": Rule(
        "descr_save_path", _none_to(""), applies=_is_none, doc="`None` -> `''`"
    ),
    "universal_embedding_is": Rule(
        "embedd_to_eval",
        _universal_first,
        doc="the named embedding is moved first (the first listed is the universal one)",
    ),
    "specialist_top_steps": Rule(
        "specialist_top_steps", _comma_list, applies=_is_list, doc="a list -> comma-separated"
    ),
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
        UDON_EARLY_TRAIN,
        tuple(UDON_EARLY_TRAIN),
        advice="the classifier heads train from the start (UDON's projections too), the "
        "backbone (and the UnED baseline's projection) after --config.frozen_epochs",
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

DOC_FILE = "docs/original-fields.md"
_DOC_HEADING = "# Field names of the original UnED code"
_DOC_NOTE = (
    "Generated from `RULES` in `universal_embedding/original/config_fields.py`; do not edit by "
    "hand: regenerate with `python -m universal_embedding.original.config_fields > "
    f"{DOC_FILE}`."
)
_DOC_INTRO = (
    "A config file or a `--config.<field>=value` override may use these fields of the original "
    "code: a renamed one sets ours (one logged line); one marked *no effect* is accepted at the "
    "listed values, and any other value stops the command naming the field and what to use "
    "instead."
)


def _cell(text: str) -> str:
    """Markdown table cell text: '|' (even inside `code`) would end the cell, and '<' outside
    `code` would open an HTML tag (`--config.checkpoint=<step>` would lose its '<step>')."""
    parts = text.replace("|", "\\|").split("`")
    return "`".join(p if i % 2 else p.replace("<", "&lt;") for i, p in enumerate(parts))


def _ours(rule: Rule) -> str:
    """The 'ours' column of one rule: our field (and how the value changes), or no effect."""
    if rule.target is not None:
        return f"`{rule.target}`" + (f": {rule.doc}" if rule.doc else "")
    if rule.accept_any:
        return "no effect at any value" + (f" ({rule.advice})" if rule.advice else "")
    values = " or ".join(f"`{v!r}`" for v in rule.accept)
    return f"no effect at {values}; other values stop: {rule.advice}"


def markdown_table(rules: dict[str, Rule] | None = None) -> str:
    """The migration table of `rules` (default RULES): one row per original field, in order."""
    rows = ["| original field | ours |", "|---|---|"]
    for name, rule in (RULES if rules is None else rules).items():
        rows.append(f"| `{name}` | {_cell(_ours(rule))} |")
    return "\n".join(rows) + "\n"


def fields_doc() -> str:
    """The whole text of docs/original-fields.md: heading, how it is made, intro, the table."""
    return f"{_DOC_HEADING}\n\n{_DOC_NOTE}\n\n{_DOC_INTRO}\n\n{markdown_table()}"


if __name__ == "__main__":
    import sys

    sys.stdout.write(fields_doc())
