"""The one place a ConfigDict becomes the typed values the library takes.

Every entry point (main, knn_main, descr_eval, extract_dir_descriptors, demo) calls these once
and passes the values down; nothing below the entry points reads a config. The trainer's parts
(plan, optimiser, method, data, run) are built in train_settings.py and gathered here. Comma strings
(dataset_name, knn_eval_names, eval_knns, disabled_*_knns) are split here, once. Domains of a
`domains_file` are registered by `register_domains`, which every entry point calls first.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import ml_collections

from universal_embedding.data import custom_domains, registry
from universal_embedding.knn.descriptors import DescriptorOutput
from universal_embedding.knn.evaluate import EvalPlan

if TYPE_CHECKING:  # the model values import JAX and flax: descr_eval needs neither
    from universal_embedding import loading
    from universal_embedding.knn import evaluator
    from universal_embedding.models.spec import ModelSpec
    from universal_embedding.train.settings import TrainSettings


def names(text: str) -> tuple[str, ...]:
    """'a, b,,c' -> ('a', 'b', 'c'): a comma-separated config string as a tuple."""
    return tuple(n.strip() for n in str(text or "").split(",") if n.strip())


def model_spec(config: ml_collections.ConfigDict) -> ModelSpec:
    """The model the config describes (model_class, model_type, image size, model.*)."""
    from universal_embedding.models.spec import ModelSpec

    m = config.model
    udon_widths = {
        f: tuple(m[f]) for f in ("teacher_dim", "universal_student_dim") if m.get(f) is not None
    }
    return ModelSpec(
        model_class=config.model_class,
        model_type=config.model_type,
        image_size=config.image_size,
        normalization=config.normalization,
        embedd_to_eval=config.embedd_to_eval,
        output_dim=m.output_dim,
        dtype=m.dtype,
        attention=m.attention,
        gelu_approximate=bool(m.get("gelu_approximate", True)),
        remat=bool(m.get("remat", False)),
        hidden_size=m.get("hidden_size"),
        num_heads=m.get("num_heads"),
        mlp_dim=m.get("mlp_dim"),
        num_layers=m.get("num_layers"),
        patch_size=m.get("patch_size"),
        num_registers=_num_registers(config),
        pos_interpolation=str(m.get("pos_interpolation", "") or ""),
        domains=names(config.get("dataset_name", "")),
        **udon_widths,
    )


def _num_registers(config: ml_collections.ConfigDict) -> int | None:
    """config.model.num_registers; for a DINOv2 model left at None, the register tokens of
    config.pretrained_ckpt (0 without one), so that the model is built to fit the file."""
    from universal_embedding.models.udon import backbone_family

    given = config.model.get("num_registers")
    if given is not None or backbone_family(config.model_class) != "dinov2_vit_with_embedding":
        return given
    path = config.get("pretrained_ckpt", "") or ""
    if not path or config.get("train_dir"):
        return 0
    from universal_embedding.pretrained import dinov2

    return dinov2.registers_in_file(path)


def weight_source(config: ml_collections.ConfigDict) -> loading.WeightSource:
    """Where the config's weights come from (train_dir + checkpoint, pretrained file, random)."""
    from universal_embedding import loading

    return loading.WeightSource(
        train_dir=config.get("train_dir", "") or "",
        checkpoint=str(config.get("checkpoint", "best")),
        pretrained_ckpt=config.get("pretrained_ckpt", "") or "",
        allow_random_init=bool(config.get("allow_random_init", False)),
        rng_seed=config.get("rng_seed", 0),
        init_ckpt=config.get("init_ckpt", "") or "",
    )


def model_and_weights(
    config: ml_collections.ConfigDict,
) -> tuple[ModelSpec, loading.WeightSource]:
    """(resolved model spec, weight source): missing weights fail here, before any data is
    read, and a train_dir's model is read from its config.json once."""
    from universal_embedding import loading

    source = weight_source(config)
    loading.weights_source(source)
    return loading.resolve_spec(model_spec(config), source), source


def eval_data(config: ml_collections.ConfigDict, spec: ModelSpec) -> evaluator.EvalData:
    """Where the evaluated splits are (eval_dataset_dir, info_files_dir), the global
    eval_batch_size, and the image size and normalisation of `spec`'s model."""
    from universal_embedding import loading
    from universal_embedding.knn import evaluator

    return evaluator.EvalData(
        tfds_dir=config.eval_dataset_dir,
        info_files_dir=config.info_files_dir,
        batch_size=config.eval_batch_size,
        image_size=spec.image_size,
        normalization=loading.normalization_of(spec),
    )


def register_domains(config: ml_collections.ConfigDict) -> tuple[registry.Domain, ...]:
    """Register the domains of config.domains_file ('' = none): the entry point's first step,
    before any domain name is looked up."""
    path = config.get("domains_file", "")
    return custom_domains.load_domains_file(path) if path else ()


def eval_plan(config: ml_collections.ConfigDict) -> EvalPlan:
    """knn_eval_names, eval_knns minus disabled_separate/merged_knns, top_k, knn_search."""
    knns = registry.parse_knn_names(config.eval_knns)
    off_sep = registry.parse_knn_names(config.disabled_separate_knns)
    off_mer = registry.parse_knn_names(config.disabled_merged_knns)
    plan = EvalPlan(
        domains=registry.parse_domain_names(config.knn_eval_names),
        separate_knns=tuple(n for n in knns if n not in off_sep),
        merged_knns=tuple(n for n in knns if n not in off_mer),
        k=config.top_k,
        backend=str(config.knn_search),
    )
    if not plan.knn_names:
        raise ValueError(
            f"Nothing to evaluate: eval_knns='{config.eval_knns}' minus disabled_separate_knns="
            f"'{config.disabled_separate_knns}' and disabled_merged_knns="
            f"'{config.disabled_merged_knns}' leaves no kNN setup."
        )
    return plan


def test_plan(config: ml_collections.ConfigDict) -> EvalPlan:
    """The official protocol on knn_eval_names: test_knn, separate and merged."""
    return EvalPlan(
        domains=registry.parse_domain_names(config.knn_eval_names),
        separate_knns=("test_knn",),
        merged_knns=("test_knn",),
        k=config.top_k,
        backend=config.knn_search,
    )


def validation_plan(config: ml_collections.ConfigDict) -> EvalPlan | None:
    """eval_knns minus the disabled ones, during training (None when eval_knns is empty)."""
    if not registry.parse_knn_names(config.eval_knns):
        return None
    return eval_plan(config)


def descriptor_output(config: ml_collections.ConfigDict) -> DescriptorOutput:
    """save_descriptors, descriptor_format, descr_save_path (train_dir, embedd_to_eval for the
    original's file name) and save_json_descriptors."""
    return DescriptorOutput(
        save=bool(config.get("save_descriptors", False)),
        format=config.get("descriptor_format") or "npz",
        save_path=config.get("descr_save_path") or "",
        train_dir=config.get("train_dir") or "",
        backbone_out=config.get("embedd_to_eval") == "backbone_out",
        save_json=bool(config.get("save_json_descriptors", False)),
    )


def train_settings(config: ml_collections.ConfigDict) -> TrainSettings:
    """Everything typed the trainer takes (train/settings.py): model spec, starting weights,
    plan inputs, optimiser, method (losses, sampling), training data, evaluation data and plans,
    descriptor output, run settings, and the config as a dict (config.json, hparams). The
    trainer's own parts come from train_settings.py; register_domains must run first."""
    from universal_embedding import train_settings as parts
    from universal_embedding.train.settings import TrainSettings

    config = config.copy_and_resolve_references()
    spec = model_spec(config)
    return TrainSettings(
        model=spec,
        weights=weight_source(config),
        plan=parts.plan_settings(config),
        optimizer=parts.optimizer_settings(config),
        method=parts.method_settings(config),
        data=parts.train_data(config),
        eval_data=eval_data(config, spec),
        validation_plan=validation_plan(config),
        test_plan=test_plan(config),
        descriptors=descriptor_output(config),
        run=parts.run_settings(config),
        config_dict=_resolved_dict(config, spec),
    )


def _resolved_dict(config: ml_collections.ConfigDict, spec: ModelSpec) -> dict:
    """The config as a dict (config.json) with the register count found in the checkpoint."""
    out = config.to_dict()
    if spec.num_registers is not None:
        out["model"]["num_registers"] = spec.num_registers
    return out
