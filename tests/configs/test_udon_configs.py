"""config_train_udon.py (original defaults, ViT / CLIP argument) and the demo's method=udon."""

import pytest

from universal_embedding import train_settings
from universal_embedding.configs import config_train_udon, demo


def test_udon_config_has_the_original_defaults():
    c = config_train_udon.get_config()
    assert c.model_class == "udon_vit_with_embedding" and c.model_type == "B/16"
    assert c.pretrained_ckpt.startswith("data/models/imagenet/B_16-i21k")
    assert c.dataset_name == c.knn_eval_names == "food2k,cars,sop,inshop,inat,met,gldv2,rp2k"
    assert (c.num_epochs, c.batch_size, c.lr, c.backbone_lr_multiplier) == (10, 128, 1e-3, 1e-2)
    assert (c.frozen_epochs, c.weight_decay, c.lr_schedule) == (2, 1e-6, "constant")
    assert c.classifier == "separate" and c.sampling_strategy == "round_robin"
    assert c.update_sampler and c.update_sampler_every_steps == 1000
    assert c.update_sampler_logit_type == "teacher"
    assert tuple(c.model.teacher_dim) == (256,) and tuple(c.model.universal_student_dim) == (64,)
    assert c.embedd_to_eval == "universal_student_embedd,teacher_embedd"
    train_settings.udon_loss(c.loss)  # every loss field present and valid
    clip = config_train_udon.get_config("backbone=clip")
    assert clip.model_class == "udon_clip_vit_with_embedding"
    assert clip.pretrained_ckpt == "data/models/clip/vit_b16.npy"
    siglip = config_train_udon.get_config("backbone=siglip")
    assert siglip.model_class == "udon_siglip_vit_with_embedding" and siglip.image_size == 224
    assert siglip.pretrained_ckpt == "data/models/siglip2/siglip2_b16_224.npz"
    with pytest.raises(ValueError, match="backbone='resnet'"):
        config_train_udon.get_config("backbone=resnet")
    with pytest.raises(ValueError, match="Unknown config argument"):
        config_train_udon.get_config("size=L")


def test_udon_config_l_variants():
    vit = config_train_udon.get_config("variant=L/16")
    assert (vit.model_class, vit.model_type) == ("udon_vit_with_embedding", "L/16")
    assert vit.pretrained_ckpt == (
        "data/models/imagenet/L_16-i21k-300ep-lr_0.001-aug_medium1-wd_0.1-do_0.1-sd_0.1"
        "--imagenet2012-steps_20k-lr_0.01-res_224.npz"
    )
    clip = config_train_udon.get_config("backbone=clip,variant=L/14")
    assert (clip.model_class, clip.model_type) == ("udon_clip_vit_with_embedding", "L/14")
    assert clip.pretrained_ckpt == "data/models/clip/ViT-L-14.pt"
    assert clip.model.remat is False  # a compute option, off unless asked for
    with pytest.raises(ValueError, match=r"variant='L/16': clip weights are known for B/16, L/14"):
        config_train_udon.get_config("backbone=clip,variant=L/16")


def test_udon_config_siglip_and_dinov2_backbones():
    siglip = config_train_udon.get_config("backbone=siglip")
    assert (siglip.model_class, siglip.model_type) == ("udon_siglip_vit_with_embedding", "B/16")
    assert siglip.pretrained_ckpt == "data/models/siglip2/siglip2_b16_224.npz"
    dino = config_train_udon.get_config("backbone=dinov2")  # its first variant: B/14
    assert (dino.model_class, dino.model_type) == ("udon_dinov2_vit_with_embedding", "B/14")
    assert dino.pretrained_ckpt == "data/models/dinov2/dinov2_vitb14/dinov2_vitb14_pretrain.pth"
    large = config_train_udon.get_config("backbone=dinov2,variant=L/14")
    assert large.pretrained_ckpt.endswith("dinov2_vitl14/dinov2_vitl14_pretrain.pth")
    with pytest.raises(
        ValueError, match=r"variant='B/16': dinov2 weights are known for B/14, L/14"
    ):
        config_train_udon.get_config("backbone=dinov2,variant=B/16")


def test_demo_udon_trains_the_same_model_steps_and_data():
    base, udon = demo.get_config(), demo.get_config("method=udon")
    assert udon.model_class == "udon_vit_with_embedding" and udon.classifier == "separate"
    assert udon.update_sampler and udon.update_sampler_every_steps <= 200
    same = ("num_epochs", "batch_size", "lr", "lr_schedule", "warmup_steps", "frozen_epochs")
    assert {k: udon[k] for k in same} == {k: base[k] for k in same}
    assert udon.model.to_dict().items() >= {"hidden_size": 64, "num_layers": 3}.items()
    assert udon.info_files_dir == base.info_files_dir
    with pytest.raises(ValueError, match="method='x'"):
        demo.get_config("method=x")
