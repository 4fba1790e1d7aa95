"""A training config checked at start-up, before anything is written (entry layer, beside
settings.py).

`check_train_config(config)` runs in `main.main` before the trainer starts, so a bad config
leaves nothing behind in a fresh workdir (no config.json, hparams.json or events file). It
checks every field's type and range, the names (domains, kNN setups, loss types, samplers,
schedules), UDON's widths, and that every info file and TFRecord shard the run reads exists;
all problems are reported in one line. A legal but suspicious value (a batch larger than a
domain's training split) is a logged warning (`suspicious_values`).
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterable, Sequence

import ml_collections
from absl import logging

from universal_embedding.data import registry
from universal_embedding.knn.search import BACKENDS as KNN_SEARCH
from universal_embedding.train.losses import LOSS_TYPES
from universal_embedding.train.optimizers import SCHEDULES
from universal_embedding.train.samplers import STRATEGIES

Config = ml_collections.ConfigDict

CLASSIFIERS = ("separate", "joint")
TRAIN_SPLIT = "train"


class ConfigError(ValueError):
    """A config that cannot run; the message names every bad field and how to fix it."""


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return (_is_int(value) or isinstance(value, float)) and math.isfinite(value)


def number_errors(config: Config) -> list[str]:
    """Type and range of the numeric fields (learning rates, decay, smoothing, sizes, top_k)."""
    rules = [  # (field, value, integer?, test, what it must be)
        ("lr", config.lr, False, lambda v: v > 0, "> 0"),
        ("backbone_lr_multiplier", config.backbone_lr_multiplier, False, lambda v: v >= 0, ">= 0"),
        ("weight_decay", config.weight_decay, False, lambda v: v >= 0, ">= 0"),
        ("adam_b1", config.adam_b1, False, lambda v: 0 <= v < 1, "in [0, 1)"),
        ("adam_b2", config.adam_b2, False, lambda v: 0 <= v < 1, "in [0, 1)"),
        ("grad_clip_norm", config.grad_clip_norm, False, lambda v: v >= 0, ">= 0 (0 = off)"),
        ("warmup_steps", config.warmup_steps, True, lambda v: v >= 0, ">= 0"),
        (
            "loss.label_smoothing",
            config.loss.label_smoothing,
            False,
            lambda v: 0 <= v < 1,
            "in [0, 1)",
        ),  # fmt: skip
        ("loss.scale", config.loss.scale, False, lambda v: v > 0, "> 0"),
        ("loss.margin", config.loss.margin, False, lambda v: v >= 0, ">= 0"),
        ("batch_size", config.batch_size, True, lambda v: v > 0, "> 0"),
        ("eval_batch_size", config.eval_batch_size, True, lambda v: v > 0, "> 0"),
        ("image_size", config.image_size, True, lambda v: v > 0, "> 0"),
        ("resize_size", config.resize_size, True, lambda v: v > 0, "> 0"),
        ("top_k", config.top_k, True, lambda v: v >= 1, ">= 1"),
        (
            "max_checkpoints_to_keep",
            config.max_checkpoints_to_keep,
            True,
            lambda v: v >= 1,
            ">= 1",
        ),  # fmt: skip
        ("shuffle_buffer_size", config.shuffle_buffer_size, True, lambda v: v >= 1, ">= 1"),
        ("num_epochs", config.num_epochs, False, lambda v: v >= 0, ">= 0"),
        ("num_training_steps", config.num_training_steps, True, lambda v: True, "an integer"),
    ]
    out = []
    for name, value, integer, ok, must in rules:
        typed = _is_int(value) if integer else _is_number(value)
        if not typed:
            kind = "an integer" if integer else "a finite number"
            out.append(f"config.{name}={value!r} must be {kind} {must}".rstrip())
        elif not ok(value):
            out.append(f"config.{name}={value!r} must be {must}")
    if not out and config.resize_size < config.image_size:
        out.append(
            f"config.resize_size={config.resize_size} is smaller than config.image_size="
            f"{config.image_size}: the random crop needs resize_size >= image_size"
        )
    return out


def _duplicates(names: Sequence[str]) -> list[str]:
    return sorted({n for n in names if names.count(n) > 1})


def _split(text) -> list[str]:
    return [n.strip() for n in str(text or "").split(",") if n.strip()]


def name_errors(config: Config) -> list[str]:
    """Domains (registered, each once), kNN setups, loss type, sampler, schedule, classifier."""
    out = []
    for field in ("dataset_name", "knn_eval_names"):
        names = _split(config[field])
        if not names:
            out.append(f"config.{field} is empty: name at least one domain")
        unknown = [n for n in names if n not in registry.domain_names()]
        if unknown:
            out.append(
                f"config.{field} names unknown domain(s) {', '.join(unknown)} (valid: "
                f"{', '.join(registry.domain_names())}; your own: config.domains_file)"
            )
        if _duplicates(names):
            out.append(f"config.{field} lists {', '.join(_duplicates(names))} more than once")
    for field in ("eval_knns", "disabled_separate_knns", "disabled_merged_knns"):
        bad = [n for n in _split(config[field]) if n not in registry.KNN_NAMES]
        if bad:
            out.append(
                f"config.{field} names unknown kNN setup(s) {', '.join(bad)} "
                f"(valid: {', '.join(registry.KNN_NAMES)})"
            )
    choices = [
        ("loss.type", config.loss.type, LOSS_TYPES),
        ("sampling_strategy", config.sampling_strategy, STRATEGIES),
        ("lr_schedule", config.lr_schedule, SCHEDULES),
        ("classifier", config.classifier, CLASSIFIERS),
        ("knn_search", config.knn_search, KNN_SEARCH),
    ]
    for name, value, valid in choices:
        if value not in valid:
            out.append(f"config.{name}={value!r} is not one of {', '.join(valid)}")
    return out


def udon_errors(config: Config) -> list[str]:
    """UDON's widths (teacher_dim, universal_student_dim): sequences of positive integers;
    with teacher_embedd evaluated, every evaluated domain is a training domain (its teacher)."""
    out = []
    for field in ("teacher_dim", "universal_student_dim"):
        value = config.model.get(field)
        if value is None:
            continue
        widths = value if isinstance(value, (list, tuple)) else None
        if not widths or not all(_is_int(w) and w > 0 for w in widths):
            out.append(
                f"config.model.{field}={value!r} must be a tuple of positive integers, e.g. (256,)"
            )
    if "teacher_embedd" in _split(config.get("embedd_to_eval", "")):
        trained = _split(config.dataset_name)
        orphans = [d for d in _split(config.knn_eval_names) if d not in trained]
        if orphans:
            out.append(
                f"config.knn_eval_names has {', '.join(orphans)}, which have no teacher "
                "(not in config.dataset_name): drop teacher_embedd from config.embedd_to_eval "
                "or evaluate trained domains only"
            )
    return out


def missing_shards(prefix: str) -> list[str]:
    """Shard files `<prefix>-NNNNN-of-MMMMM` that the shards present say exist but are absent
    (all of them when there is no file at all: [prefix])."""
    folder, base = os.path.split(prefix)
    present = os.listdir(folder) if os.path.isdir(folder or ".") else []
    if base in present:
        return []
    pattern = re.compile(re.escape(base) + r"-(\d{5})-of-(\d{5})$")
    found = [m for m in map(pattern.match, present) if m]
    if not found:
        return [prefix]
    totals = {int(m.group(2)) for m in found}
    have = {(int(m.group(1)), int(m.group(2))) for m in found}
    return [
        registry.shard_name(prefix, i, n) for n in sorted(totals) for i in range(n)
        if (i, n) not in have
    ]  # fmt: skip


def _eval_splits(config: Config) -> set[str]:
    """The kNN setups the run evaluates (validation, then the final test when on)."""
    knns = set(_split(config.eval_knns))
    if config.get("do_final_testing", False):
        knns.add("test_knn")
    return knns


def file_errors(config: Config) -> list[str]:
    """Every info file and TFRecord shard the run reads: the train split of each training
    domain, the query and index splits of each evaluated kNN setup."""
    reads: list[tuple[str, str, str]] = []  # (tfds_dir, domain, split)
    for d in dict.fromkeys(_split(config.dataset_name)):
        reads.append((config.train_dataset_dir, d, TRAIN_SPLIT))
    for d in dict.fromkeys(_split(config.knn_eval_names)):
        dom = registry.get_domain(d)
        for knn in sorted(_eval_splits(config)):
            setup = dom.knn_setup(knn)
            for split in dict.fromkeys((setup.query, setup.index)):
                reads.append((config.eval_dataset_dir, d, split))
    out = []
    for tfds_dir, domain, split in dict.fromkeys(reads):
        info = registry.info_file_path(config.info_files_dir, domain, split)
        if not os.path.isfile(info):
            out.append(f"info file {info} does not exist (config.info_files_dir)")
        missing = missing_shards(registry.tfrecord_prefix(tfds_dir, domain, split))
        if missing:
            out.append(
                f"TFRecord shard {missing[0]} does not exist"
                + (f" ({len(missing)} missing)" if len(missing) > 1 else "")
                + " (convert the split: python -m universal_embedding.data.prepare)"
            )
    return out


def suspicious_values(config: Config, train_sizes: dict[str, int]) -> list[str]:
    """Legal but suspicious: a batch larger than a domain's training split (that domain's
    batches repeat images within one batch)."""
    return [
        f"config.batch_size={config.batch_size} is larger than the {n} training images of "
        f"'{d}': its batches repeat images"
        for d, n in train_sizes.items()
        if n < config.batch_size
    ]


def _info_sizes(info_files_dir: str, domains: Iterable[str]) -> dict[str, int]:
    from universal_embedding.data import info_files

    return {d: len(info_files.load_split(info_files_dir, d, TRAIN_SPLIT)) for d in domains}


def check_train_config(config: Config) -> None:
    """Raise ConfigError (one line, every problem) for a config the trainer cannot run; log a
    warning for each suspicious value. Domains of config.domains_file are registered first."""
    problems = number_errors(config) + name_errors(config) + udon_errors(config)
    if not problems:
        problems = file_errors(config)
    if problems:
        raise ConfigError("; ".join(problems) + ".")
    domains = dict.fromkeys(_split(config.dataset_name))
    for line in suspicious_values(config, _info_sizes(config.info_files_dir, domains)):
        logging.warning(line)
