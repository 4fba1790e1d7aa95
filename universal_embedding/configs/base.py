"""The one base config every entry point derives from.

Other config files call `get_config()` here and change only what differs.
Field names follow the original tools so their command lines keep working.
"""

from __future__ import annotations

from typing import Any

import ml_collections

ALL_DOMAINS = "cars,sop,inshop,inat,met,gldv2,food2k,rp2k"


_TRUE = ("true", "1")
_FALSE = ("false", "0")


def parse_arg(arg: str | None, **defaults: Any) -> ml_collections.ConfigDict:
    """big_vision-style argument string: 'a=1,b=x' -> ConfigDict typed like `defaults`.

    Each given value is converted to the type of its default (bool from true/false/1/0, int,
    float, str); keys left out keep their default. A key that is not a default, a repeated key or
    an item that is not `key=value` raises ValueError naming it (and the valid keys).
    """
    values = dict(defaults)
    given: set[str] = set()
    for item in (arg or "").split(","):
        if not item.strip():
            continue
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ValueError(
                f"Config argument {item.strip()!r} is not of the form key=value "
                f"(argument string {arg!r}). {_valid_keys(defaults)}"
            )
        if key not in defaults:
            raise ValueError(f"Unknown config argument {key!r}. {_valid_keys(defaults)}")
        if key in given:
            raise ValueError(f"Config argument {key!r} is given twice in {arg!r}.")
        given.add(key)
        values[key] = _typed(key, text.strip(), defaults[key])
    return ml_collections.ConfigDict(values)


def _valid_keys(defaults: dict[str, Any]) -> str:
    if not defaults:
        return "This config takes no arguments (valid keys: none)."
    return "Valid keys: " + ", ".join(f"{k} (default {v!r})" for k, v in defaults.items()) + "."


def _typed(key: str, text: str, default: Any) -> Any:
    """`text` converted to the type of `default` (a str when the default is a str or None)."""
    if isinstance(default, bool):
        if text.lower() in _TRUE + _FALSE:
            return text.lower() in _TRUE
        raise ValueError(f"Config argument {key}={text!r} is not a bool (true/false/1/0).")
    for kind, name in ((int, "an integer"), (float, "a number")):
        if isinstance(default, kind):
            try:
                return kind(text)
            except ValueError:
                raise ValueError(f"Config argument {key}={text!r} is not {name}.") from None
    if default is None or isinstance(default, str):
        return text
    raise TypeError(f"parse_arg: default of {key!r} must be bool, int, float, str or None.")


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    parse_arg(arg)  # takes no arguments: any key raises
    c = ml_collections.ConfigDict()
    c.rng_seed = 0

    # ---- data ----
    c.dataset_name = ALL_DOMAINS  # domains trained on (comma separated)
    c.knn_eval_names = ALL_DOMAINS  # domains evaluated
    c.train_dataset_dir = "data/tfds"  # <dir>/<domain>/<split>/<domain>.<split>.tfrecord*
    c.eval_dataset_dir = "data/tfds"
    c.info_files_dir = "data/info_files"  # <dir>/<domain>/<split>.json
    c.domains_file = ""  # JSON declaring domains of your own (data/custom_domains.py)
    c.batch_size = 128  # global, one domain per batch
    c.eval_batch_size = 256  # global
    c.image_size = 224
    c.resize_size = 256  # train: resize to this square, then random crop image_size
    c.normalization = ""  # '' = from model_class; or 'clip' / 'imagenet'
    c.shuffle_buffer_size = 10_000
    c.input_threads = 0  # threads of each tf.data pipeline's private pool; 0 = all usable cores
    # train: decode large JPEGs at reduced size (DCT scaling, short side kept >= resize_size);
    # off by default: it moved the demo's test mMP@5 by +0.013 (benchmarks/NOTES.md)
    c.reduced_jpeg_decode = False

    # ---- model ----
    c.model_class = "vit_with_embedding"  # or 'clip_vit_with_embedding'
    c.model_type = "B/16"  # S/16, B/16 (or Ti/16, L/16)
    c.pretrained_ckpt = ""  # .npz / .npy / .pt / .bin / .safetensors; '' = random init
    c.model = ml_collections.ConfigDict()
    c.model.output_dim = 64  # <= 0: no projection, `projected` == `backbone_out`
    c.model.dtype = "float32"  # compute dtype: 'float32' or 'bfloat16' (params stay float32)
    c.model.attention = "xla"  # jax.nn.dot_product_attention implementation: xla | cudnn
    # ViT GELU: True = tanh approximation (flax's nn.gelu default, as Scenic / big_vision / AugReg
    # and the original UnED code); False = exact erf GELU (timm, PyTorch). CLIP: quick-GELU always.
    c.model.gelu_approximate = True
    # Gradient checkpointing: recompute each transformer block's activations in the backward
    # pass instead of keeping them (less memory, one more forward pass of the blocks; the same
    # parameters, checkpoints and gradients). See benchmarks/NOTES.md, "Train step memory".
    c.model.remat = False
    # Size overrides for tiny models (None: take them from model_type).
    c.model.hidden_size = ml_collections.FieldReference(None, field_type=int)
    c.model.num_heads = ml_collections.FieldReference(None, field_type=int)
    c.model.mlp_dim = ml_collections.FieldReference(None, field_type=int)
    c.model.num_layers = ml_collections.FieldReference(None, field_type=int)
    c.model.patch_size = ml_collections.FieldReference(None, field_type=int)
    c.embedd_to_eval = "projected"  # or 'backbone_out'

    # ---- heads and loss ----
    c.classifier = "separate"  # 'separate' (one head per domain) or 'joint'
    c.loss = ml_collections.ConfigDict()
    c.loss.type = "normface"  # normface | cosface | arcface
    c.loss.scale = 16.0
    c.loss.margin = 0.0
    c.loss.label_smoothing = 0.0

    # ---- sampling ----
    # round_robin | dataset_size | balanced | specialist_top_steps
    c.sampling_strategy = "round_robin"
    c.specialist_top_steps = ""  # comma-separated shares per domain for specialist_top_steps

    # ---- optimiser ----
    c.lr = 1e-3  # classifier heads
    c.backbone_lr_multiplier = 0.01  # backbone and projection: lr * this
    c.weight_decay = 1e-6  # decoupled
    c.adam_b1 = 0.9
    c.adam_b2 = 0.999
    c.lr_schedule = "constant"  # constant | warmup_cosine
    c.warmup_steps = 0
    c.frozen_epochs = 2.0  # backbone + projection frozen; -1 = frozen for all training
    c.grad_clip_norm = 0.0  # 0 = off

    # ---- schedule ----
    c.num_epochs = 7.0  # over the summed training sets
    c.num_training_steps = -1  # > 0 overrides num_epochs
    # Intervals in steps; -N: N times per epoch (so -1 = every epoch).
    c.log_summary_steps = 100
    c.log_eval_steps = -1
    c.checkpoint_steps = 1000
    c.max_checkpoints_to_keep = 2

    # ---- kNN evaluation ----
    c.top_k = 5
    c.eval_knns = "val_knn"  # setups run during training
    c.disabled_separate_knns = "train_knn,test_knn"
    c.disabled_merged_knns = "train_knn,test_knn"
    c.do_final_testing = True
    c.save_descriptors = False
    # 'npz': W/descriptors.npz; 'original': the original code's JSON file
    # <descr_save_path or train_dir or W>/descriptors/descriptors_step_<step>.pkl (step -1 = best)
    c.descriptor_format = "npz"
    c.descr_save_path = ""  # folder of descriptor_format='original' files ('' = see above)
    c.save_neighbors = False
    c.knn_search = "auto"  # auto | faiss | jax | numpy

    # ---- logging ----
    # Weights & Biases (also set by --use_wandb / --wandb_{project,group,entity,name});
    # '' = W&B's own default. Needs the `wandb` package.
    c.wandb = ml_collections.ConfigDict()
    c.wandb.enabled = False
    c.wandb.project = ""
    c.wandb.group = ""
    c.wandb.entity = ""
    c.wandb.name = ""
    return c
