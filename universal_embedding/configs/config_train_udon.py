"""Train UDON (`python -m universal_embedding.main`): per-domain teachers distilled online into
the 64-d universal student, with loss-driven domain sampling (docs/udon-method.md).

`--config=universal_embedding/configs/config_train_udon.py` trains the AugReg ImageNet-21k
ViT-B/16 variant (`udon_vit_with_embedding`); `...config_train_udon.py:backbone=clip` the CLIP
ViT-B/16 one (`udon_clip_vit_with_embedding`), `backbone=siglip` the SigLIP 2 B/16 one at 224 px
(`udon_siglip_vit_with_embedding`), `backbone=dinov2` the DINOv2 B/14 one
(`udon_dinov2_vit_with_embedding`). `variant=L/16` (AugReg), `variant=L/14` (CLIP, DINOv2) give
the ViT-L sizes, from the starting weights of the family's own train config.
Defaults are the original's: 10 epochs, batch 128,
lr 1e-3 for heads and projections from step 0, backbone lr 1e-5 after 2 frozen epochs, sampler
update every 1000 steps on the teacher loss, domains in the original order.
"""

from __future__ import annotations

import ml_collections

from universal_embedding.configs import (
    base,
    config_train_clip_vit,
    config_train_dinov2,
    config_train_siglip,
    config_train_vit,
)

UDON_DOMAINS = "food2k,cars,sop,inshop,inat,met,gldv2,rp2k"  # the original's order
AUGREG_FILES = {
    v: f"data/models/imagenet/{name}" for v, name in config_train_vit.AUGREG_CHECKPOINTS.items()
}
# backbone argument -> (model_class, {variant: starting weights})
BACKBONES = {
    "vit": ("udon_vit_with_embedding", AUGREG_FILES),
    "clip": ("udon_clip_vit_with_embedding", config_train_clip_vit.CLIP_CHECKPOINTS),
    "siglip": (
        "udon_siglip_vit_with_embedding",
        {"B/16": config_train_siglip.checkpoint_path("B/16", 224)},
    ),
    "dinov2": (
        "udon_dinov2_vit_with_embedding",
        {v: config_train_dinov2.checkpoint_path(v, False) for v in ("B/14", "L/14")},
    ),
}


def add_udon_fields(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """UDON's model, loss, sampler and evaluation fields (original names) on a train config."""
    c.classifier = "separate"
    c.model.teacher_dim = (256,)  # widths of each domain's teacher Mlp
    c.model.universal_student_dim = (64,)  # widths of the student Mlp (model.output_dim unused)

    c.loss.classif_losses_on = "teacher,universal_student"  # embeddings with a classification loss
    c.loss.distill_udon_logits = True  # distil the teachers' logits into the student
    # softmax temperature of the logit distillation, for the teacher and the student logits
    c.loss.distill_udon_logits_temperature = ml_collections.ConfigDict(
        {"teacher": 0.1, "universal_student": 0.1}
    )
    c.loss.distill_udon_batch_simils = True  # distil the teachers' in-batch similarities
    # The relational term is computed in this many equal slices of the global batch and scaled
    # by batch_size / 4 (the original: per device, times devices / 4, on 4 devices).
    c.loss.distill_udon_simils_groups = 4
    c.loss.classif_udon_teacher_weight = 1.0  # weight of the teachers' classification loss
    c.loss.classif_udon_universal_student_weight = 1.0  # weight of the student's one
    c.loss.distill_udon_logits_weight = 1.0  # weight of the logit distillation
    c.loss.distill_udon_simils_weight = 1.0  # weight of the similarity distillation
    # True (original): distillation gradients reach the backbone through the student projection;
    # False: they stop at the backbone feature (projection and heads still learn from them).
    c.loss.distill_grads_to_backbone = True

    c.sampling_strategy = "round_robin"  # the schedule before the first sampler update
    c.update_sampler = True  # update the domain sampling weights from the losses
    c.update_sampler_every_steps = 1000  # steps between two sampler updates
    c.update_sampler_logit_type = "teacher"  # loss the sampler follows; or 'universal_student'
    # Steps whose loss the sampler averages: 'since_update' (exactly those since the last update)
    # or 'original' (the original trainer's summary buffer, emptied after step 1 and every step
    # t with t % log_summary_steps == 1; docs/udon.md).
    c.sampler_window = "since_update"
    # False: permute redrawn schedules with jax_threefry_partitionable=False, the original's order.
    c.sampler_threefry_partitionable = True

    # The first listed embedding is the universal one (usual results keys, best checkpoint).
    c.embedd_to_eval = "universal_student_embedd,teacher_embedd"
    return c


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    args = base.parse_arg(arg, backbone="vit", variant="")
    if args.backbone not in BACKBONES:
        raise ValueError(f"backbone={args.backbone!r}: choose one of {', '.join(BACKBONES)}.")
    model_class, files = BACKBONES[args.backbone]
    args.variant = args.variant or next(iter(files))  # B/16 (DINOv2: B/14)
    if args.variant not in files:
        raise ValueError(
            f"variant={args.variant!r}: {args.backbone} weights are known for {', '.join(files)}."
        )
    c = add_udon_fields(config_train_vit.add_train_fields(base.get_config()))
    c.model_class, c.pretrained_ckpt = model_class, files[args.variant]
    c.model_type = args.variant
    c.dataset_name = c.knn_eval_names = UDON_DOMAINS
    c.batch_size = 128
    c.num_epochs = 10.0
    c.lr = 1e-3
    c.backbone_lr_multiplier = 1e-2
    c.frozen_epochs = 2.0
    c.weight_decay = 1e-6
    c.lr_schedule = "constant"
    c.shuffle_buffer_size = 256
    return c
