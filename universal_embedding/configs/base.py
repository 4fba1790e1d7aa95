"""The one base config every entry point derives from.

Other config files call `get_config()` here and change only what differs.
Field names follow the original tools so their command lines keep working.
"""

from __future__ import annotations

import ml_collections

ALL_DOMAINS = "cars,sop,inshop,inat,met,gldv2,food2k,rp2k"


def parse_arg(arg: str | None) -> dict[str, str]:
    """'a=1,b=x' -> {'a': '1', 'b': 'x'} (big_vision style config argument)."""
    out: dict[str, str] = {}
    for item in (arg or "").split(","):
        if not item.strip():
            continue
        if "=" not in item:
            raise ValueError(f"Config argument '{item}' is not of the form key=value.")
        key, value = item.split("=", 1)
        out[key.strip()] = value.strip()
    return out


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    del arg
    c = ml_collections.ConfigDict()
    c.experiment_name = "universal_embedding"
    c.rng_seed = 0

    # ---- data ----
    c.dataset_name = ALL_DOMAINS  # domains trained on (comma separated)
    c.knn_eval_names = ALL_DOMAINS  # domains evaluated
    c.train_dataset_dir = "data/tfds"  # <dir>/<domain>/<split>/<domain>.<split>.tfrecord*
    c.eval_dataset_dir = "data/tfds"
    c.info_files_dir = "data/info_files"  # <dir>/<domain>/<split>.json
    c.batch_size = 128  # global, one domain per batch
    c.eval_batch_size = 256  # global
    c.image_size = 224
    c.resize_size = 256  # train: resize to this square, then random crop image_size
    c.normalization = ""  # '' = from model_class; or 'clip' / 'imagenet'
    c.shuffle_buffer_size = 10_000
    c.data_workers = 0  # tf.data parallel calls; 0 = AUTOTUNE

    # ---- model ----
    c.model_class = "vit_with_embedding"  # or 'clip_vit_with_embedding'
    c.model_type = "B/16"  # S/16, B/16 (or Ti/16, L/16)
    c.pretrained_ckpt = ""  # .npz / .npy / .pt / .bin / .safetensors; '' = random init
    c.model = ml_collections.ConfigDict()
    c.model.output_dim = 64  # <= 0: no projection, `projected` == `backbone_out`
    c.model.dtype = "float32"  # compute dtype: 'float32' or 'bfloat16' (params stay float32)
    c.model.attention = "xla"  # jax.nn.dot_product_attention implementation: xla | cudnn
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
    c.log_summary_steps = 100
    c.log_eval_steps = -1  # -1 = every epoch
    c.checkpoint_steps = 1000
    c.max_checkpoints_to_keep = 2

    # ---- kNN evaluation ----
    c.top_k = 5
    c.eval_knns = "val_knn"  # setups run during training
    c.disabled_separate_knns = "train_knn,test_knn"
    c.disabled_merged_knns = "train_knn,test_knn"
    c.do_final_testing = True
    c.save_descriptors = False
    c.save_neighbors = False
    c.knn_search = "auto"  # auto | faiss | jax | numpy

    # ---- logging ----
    c.use_wandb = False
    return c
