"""model.gelu_approximate as saved in a workdir's config.json, and workdirs from before it."""

from __future__ import annotations

import json
import os

import pytest

from universal_embedding import loading, settings, writers
from universal_embedding.configs import config_knn_vit, tiny


def _workdir(tmp_path, drop_gelu: bool = False, gelu: bool = True, drop_dtype: bool = False):
    c = tiny.tiny_vit(config_knn_vit.get_config())
    c.model.gelu_approximate = gelu
    path = writers.write_config_json(c.to_dict(), os.path.join(tmp_path, "train", "config.json"))
    saved = json.loads(open(path).read())
    if drop_gelu:  # as written before the field existed
        del saved["model"]["gelu_approximate"]
    if drop_dtype:  # no model.dtype: not a config.json of this project's trainer
        del saved["model"]["dtype"]
    with open(path, "w") as f:
        json.dump(saved, f)
    return os.path.dirname(path)


def _resolved(train_dir):
    config = config_knn_vit.get_config()
    config.train_dir = train_dir
    return loading.resolve_spec(settings.model_spec(config), settings.weight_source(config))


@pytest.mark.parametrize("gelu", [True, False])
def test_saved_gelu_form_is_rebuilt(tmp_path, gelu):
    assert _resolved(_workdir(tmp_path, gelu=gelu)).gelu_approximate is gelu


def test_workdir_from_before_the_switch_keeps_the_exact_gelu(tmp_path):
    """Its config.json has model.dtype but no model.gelu_approximate: it ran the erf GELU."""
    assert _resolved(_workdir(tmp_path, drop_gelu=True)).gelu_approximate is False


def test_config_json_not_written_by_the_trainer_gets_the_default(tmp_path):
    train_dir = _workdir(tmp_path, drop_gelu=True, drop_dtype=True)
    assert _resolved(train_dir).gelu_approximate is True


def test_resuming_with_another_gelu_form_fails_naming_the_flag(tmp_path):
    old = _workdir(tmp_path, drop_gelu=True)  # trained with erf
    config = tiny.tiny_vit(config_knn_vit.get_config())
    with pytest.raises(ValueError, match="--config.model.gelu_approximate=False"):
        loading.check_same_numerics(settings.model_spec(config), old)
    config.model.gelu_approximate = False
    loading.check_same_numerics(settings.model_spec(config), old)  # same form: resumes
    config.model_class = "clip_vit_with_embedding"  # quick-GELU: the switch does not apply
    config.model.gelu_approximate = True
    loading.check_same_numerics(settings.model_spec(config), old)
    loading.check_same_numerics(
        settings.model_spec(config), str(tmp_path / "new")
    )  # no config.json yet
