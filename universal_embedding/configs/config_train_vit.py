"""Train a universal embedding from an ImageNet-21k AugReg ViT (universal_embedding.main).

The paper's runs are picked with an argument string, e.g.
`--config=universal_embedding/configs/config_train_vit.py:classifier=joint,sampling=dataset_size`
(UJCDS); `classifier` is `separate` | `joint`, `sampling` is `round_robin` | `dataset_size` |
`balanced` | `specialist_top_steps`, `variant` is `B/16` (default) | `S/16` | `L/16` (ViT-L/16:
hidden 1024, 24 layers, 16 heads, MLP 4096; `--config.model.remat=True` if its train step does
not fit the accelerator's memory, see benchmarks/NOTES.md "Train step memory").
"""

from __future__ import annotations

import ml_collections

from universal_embedding.configs import base

AUGREG_CHECKPOINTS = {
    "B/16": "B_16-i21k-300ep-lr_0.001-aug_medium1-wd_0.1-do_0.0-sd_0.0"
    "--imagenet2012-steps_20k-lr_0.01-res_224.npz",
    "S/16": "S_16-i21k-300ep-lr_0.001-aug_light1-wd_0.03-do_0.0-sd_0.0"
    "--imagenet2012-steps_20k-lr_0.03-res_224.npz",
    # timm's vit_large_patch16_224.augreg_in21k_ft_in1k (storage.googleapis.com/vit_models/augreg/)
    "L/16": "L_16-i21k-300ep-lr_0.001-aug_medium1-wd_0.1-do_0.1-sd_0.1"
    "--imagenet2012-steps_20k-lr_0.01-res_224.npz",
}
CLASSIFIERS = ("separate", "joint")
SAMPLINGS = ("round_robin", "dataset_size", "balanced", "specialist_top_steps")


def add_train_fields(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """Trainer-only fields (added to a base config)."""
    c.stop_after_steps = 0  # debug: leave the loop after this step, as if killed; 0 = off
    # Resume although the config changes what the run computes (batch, domains, sampler,
    # model, loss against the workdir's config.json: resume_check.py); off = stop and say so.
    c.resume_changed_config = False
    # Start from a trained model (backbone, projection and heads; step 0, fresh optimiser):
    # a checkpoint_<step> file or workdir of the original code, or a workdir of this project.
    c.init_ckpt = ""
    return c


def apply_run_args(c: ml_collections.ConfigDict, arg: str | None) -> ml_collections.ConfigDict:
    """Apply the paper-run argument string (classifier, sampling, variant; defaults from `c`)."""
    args = base.parse_arg(
        arg, classifier=c.classifier, sampling=c.sampling_strategy, variant=c.model_type
    )
    _check_choice("classifier", args.classifier, CLASSIFIERS)
    _check_choice("sampling", args.sampling, SAMPLINGS)
    c.classifier = args.classifier
    c.sampling_strategy = args.sampling
    c.model_type = args.variant
    return c


def _check_choice(key: str, value: str, valid: tuple[str, ...]) -> None:
    if value not in valid:
        raise ValueError(f"Config argument {key}={value!r} is not one of: {', '.join(valid)}.")


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    c = add_train_fields(base.get_config())
    c.model_class = "vit_with_embedding"
    c.model_type = "B/16"
    apply_run_args(c, arg)
    if c.model_type not in AUGREG_CHECKPOINTS:
        raise ValueError(
            f"variant={c.model_type!r}: choose one of {', '.join(AUGREG_CHECKPOINTS)}."
        )
    c.pretrained_ckpt = f"data/models/imagenet/{AUGREG_CHECKPOINTS[c.model_type]}"
    return c
