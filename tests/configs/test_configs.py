"""configs/: the typed argument parser, and every config file refusing unknown keys."""

from __future__ import annotations

import glob
import importlib
import os

import pytest

from universal_embedding.configs import base

CONFIG_DIR = os.path.join(os.path.dirname(base.__file__))
# config module -> the argument-string keys it accepts
CONFIG_KEYS = {
    "base": (),
    "config_train_vit": ("classifier", "sampling", "variant"),
    "config_train_clip_vit": ("classifier", "sampling", "variant"),
    "config_knn_vit": ("variant",),
    "config_knn_clip_vit": ("variant",),
    "config_train_dinov2": ("variant", "image_size", "registers", "classifier", "sampling"),
    "config_knn_dinov2": ("variant", "image_size", "registers"),
    "config_extract_dir_descriptors": ("model_class", "variant"),
    "config_knn_descr_eval": (),
    "config_descr_eval": (),  # the original's path of config_knn_descr_eval
    "config_train_udon": ("backbone",),
    "demo": ("data_dir", "dtype", "method"),
    "tiny": ("data_dir", "backbone"),
    "config_train_siglip": ("classifier", "sampling", "variant", "res"),
    "config_knn_siglip": ("variant", "res"),
}


def test_parse_arg_converts_to_the_type_of_each_default():
    args = base.parse_arg(
        "classifier=joint,variant=S/16",
        classifier="separate",
        sampling="round_robin",
        variant="B/16",
    )
    assert args.to_dict() == {"classifier": "joint", "sampling": "round_robin", "variant": "S/16"}
    typed = base.parse_arg(" n = 3 ,x=0.5,on=TRUE,off=0,s=1", n=1, x=1.0, on=False, off=True, s="")
    assert typed.to_dict() == {"n": 3, "x": 0.5, "on": True, "off": False, "s": "1"}
    assert type(typed.n) is int and type(typed.x) is float and type(typed.s) is str
    assert base.parse_arg("x=2", x=1.0).x == 2.0 and type(base.parse_arg("x=2", x=1.0).x) is float
    assert base.parse_arg(None, a=1).to_dict() == {"a": 1} == base.parse_arg("", a=1).to_dict()
    assert base.parse_arg("a=b=c", a="").a == "b=c"  # only the first '=' separates


@pytest.mark.parametrize(
    "arg, message",
    [
        ("classifier=joint,bogus=1", r"'bogus'.*Valid keys: classifier .*sampling .*variant"),
        ("joint", r"'joint' is not of the form key=value"),
        ("=joint", r"'=joint' is not of the form key=value"),
        ("variant=B/16,variant=S/16", r"'variant' is given twice"),
    ],
)
def test_parse_arg_errors_name_the_bad_item(arg, message):
    with pytest.raises(ValueError, match=message):
        base.parse_arg(arg, classifier="separate", sampling="round_robin", variant="B/16")


@pytest.mark.parametrize(
    "arg, message",
    [
        ("n=1.5", r"n='1.5' is not an integer"),
        ("x=fast", r"x='fast' is not a number"),
        ("on=yes", r"on='yes' is not a bool \(true/false/1/0\)"),
    ],
)
def test_parse_arg_rejects_values_of_the_wrong_type(arg, message):
    with pytest.raises(ValueError, match=message):
        base.parse_arg(arg, n=1, x=1.0, on=False)


def test_parse_arg_without_defaults_takes_no_arguments():
    with pytest.raises(ValueError, match=r"'a'.*takes no arguments"):
        base.parse_arg("a=1")


def test_every_config_file_is_covered():
    found = {os.path.basename(p)[:-3] for p in glob.glob(os.path.join(CONFIG_DIR, "[!_]*.py"))}
    assert found == set(CONFIG_KEYS)


@pytest.mark.parametrize("name", sorted(CONFIG_KEYS))
def test_unknown_key_raises_naming_it_and_the_valid_keys(name):
    module = importlib.import_module(f"universal_embedding.configs.{name}")
    with pytest.raises(ValueError, match="'bogus'") as err:
        module.get_config("bogus=1")
    message = str(err.value)
    for key in CONFIG_KEYS[name]:
        assert f"{key} (default" in message
    if not CONFIG_KEYS[name]:
        assert "takes no arguments" in message


@pytest.mark.parametrize("name", sorted(CONFIG_KEYS))
def test_every_config_declares_the_shared_fields(name):
    c = importlib.import_module(f"universal_embedding.configs.{name}").get_config()
    assert c.knn_search == "auto"
    assert c.wandb.to_dict() == {
        "enabled": False,
        "project": "",
        "group": "",
        "entity": "",
        "name": "",
    }
    for gone in ("data_workers", "experiment_name", "use_wandb"):
        assert gone not in c


def test_run_arguments_of_the_train_configs():
    from universal_embedding.configs import config_train_clip_vit, config_train_vit

    c = config_train_vit.get_config("classifier=joint,sampling=dataset_size,variant=S/16")
    assert (c.classifier, c.sampling_strategy, c.model_type) == ("joint", "dataset_size", "S/16")
    assert os.path.basename(c.pretrained_ckpt).startswith("S_16-i21k-300ep")
    assert c.stop_after_steps == 0
    d = config_train_vit.get_config()
    assert (d.classifier, d.sampling_strategy, d.model_type) == ("separate", "round_robin", "B/16")
    clip = config_train_clip_vit.get_config("classifier=joint")
    assert (clip.classifier, clip.model_class) == ("joint", "clip_vit_with_embedding")
    with pytest.raises(ValueError, match="sampling='often' is not one of: round_robin"):
        config_train_vit.get_config("sampling=often")
    with pytest.raises(ValueError, match=r"variant='S/16': CLIP weights are known for B/16, L/14"):
        config_train_clip_vit.get_config("variant=S/16")
    large = config_train_vit.get_config("variant=L/16")
    assert large.model_type == "L/16" and large.pretrained_ckpt == (
        "data/models/imagenet/L_16-i21k-300ep-lr_0.001-aug_medium1-wd_0.1-do_0.1-sd_0.1"
        "--imagenet2012-steps_20k-lr_0.01-res_224.npz"
    )
    clip_l = config_train_clip_vit.get_config("variant=L/14,classifier=joint")
    assert (clip_l.model_type, clip_l.pretrained_ckpt) == ("L/14", "data/models/clip/ViT-L-14.pt")
    with pytest.raises(ValueError, match=r"variant='L/14': choose one of B/16, S/16, L/16"):
        config_train_vit.get_config("variant=L/14")


def test_entry_point_fields_are_declared():
    from universal_embedding.configs import (
        config_extract_dir_descriptors,
        config_knn_clip_vit,
        config_knn_descr_eval,
        config_knn_vit,
        demo,
        tiny,
    )

    for c in (config_knn_vit.get_config("variant=S/16"), config_knn_clip_vit.get_config()):
        assert (c.train_dir, c.checkpoint, c.allow_random_init) == ("", "best", False)
        assert (c.images_dir, c.neighbours_queries, c.neighbours_thumb_size) == ("", 8, 96)
        assert c.neighbours_per_page == 200
        assert c.save_json_descriptors is False
    assert config_knn_vit.get_config("variant=S/16").model_type == "S/16"
    assert config_knn_vit.get_config("variant=L/16").model_type == "L/16"
    assert config_knn_clip_vit.get_config("variant=L/14").model_type == "L/14"
    assert config_knn_clip_vit.get_config().model_class == "clip_vit_with_embedding"
    x = config_extract_dir_descriptors.get_config("model_class=clip_vit_with_embedding")
    assert (x.base_dir, x.train_dir, x.model_class) == ("", "", "clip_vit_with_embedding")
    assert config_knn_descr_eval.get_config().descr_path == ""
    d = demo.get_config("data_dir=/d,dtype=bfloat16")
    assert (d.info_files_dir, d.model.dtype, d.stop_after_steps) == ("/d/info_files", "bfloat16", 0)
    assert tiny.get_config("data_dir=/t").train_dataset_dir == "/t/tfds"


@pytest.mark.parametrize(
    "arg, message",
    [
        ("variant=B/16", r"variant='B/16': choose one of B/14, L/14"),
        ("image_size=225", r"image_size=225: give a positive multiple of the patch size 14"),
        ("sampling=random", r"sampling='random' is not one of"),
    ],
)
def test_dinov2_config_arguments_are_checked(arg, message):
    from universal_embedding.configs import config_train_dinov2

    with pytest.raises(ValueError, match=message):
        config_train_dinov2.get_config(arg)


def test_siglip_configs_take_size_and_resolution():
    from universal_embedding.configs import config_knn_siglip, config_train_siglip, tiny

    c = config_train_siglip.get_config("variant=L/16,res=256,classifier=joint")
    assert (c.model_class, c.model_type, c.image_size, c.resize_size) == (
        "siglip_vit_with_embedding",
        "L/16",
        256,
        292,
    )
    assert (c.classifier, c.sampling_strategy) == ("joint", "round_robin")
    assert c.pretrained_ckpt == "data/models/siglip2/siglip2_l16_256.npz"
    d = config_train_siglip.get_config()
    assert (d.model_type, d.image_size, d.resize_size) == ("B/16", 224, 256)
    assert d.pretrained_ckpt == "data/models/siglip2/siglip2_b16_224.npz"
    so = config_train_siglip.get_config("variant=So400m/14")
    assert so.pretrained_ckpt.endswith("siglip2_so400m14_224.npz") and so.model.remat is False
    with pytest.raises(ValueError, match=r"No SigLIP 2 release for variant=L/16,res=224; choose"):
        config_train_siglip.get_config("variant=L/16")
    with pytest.raises(ValueError, match=r"res='big' is not an integer"):
        config_train_siglip.get_config("res=big")
    k = config_knn_siglip.get_config("variant=So400m/14,res=224")
    assert (k.model_class, k.model_type, k.image_size, k.train_dir) == (
        "siglip_vit_with_embedding",
        "So400m/14",
        224,
        "",
    )
    assert tiny.get_config("backbone=siglip").model_class == "siglip_vit_with_embedding"
    assert tiny.get_config().model_class == "vit_with_embedding"
    with pytest.raises(ValueError, match="backbone='dino': choose one of vit, siglip"):
        tiny.get_config("backbone=dino")
