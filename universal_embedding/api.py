"""The Python API: the `Embedder` class, which embeds images with a trained or pretrained model.

    from universal_embedding import Embedder
    embedder = Embedder.from_workdir("demo_work/trained")          # best checkpoint
    vectors = embedder.embed(["a.jpg", "b.png"])                    # float32 [2, d], unit rows
    vectors = embedder.embed(files, batch_size=64, progress=True, device="cpu")

An Embedder comes from a training workdir (`from_workdir`: this project's or the original
code's, best / latest / step-N checkpoint) or from a weight file (`from_pretrained`: any
backbone file the trainer accepts, or an exported params.safetensors). `embed` takes paths,
PIL images or uint8 arrays (`batch_size` images a step; a tqdm progress bar on long inputs or
with progress=True; `device`: 'cpu', 'gpu', 'tpu', 'cpu:1', a jax.Device or a list of them,
default every device); `preprocess` + `embed_preprocessed` split it in two; `dim` is the
descriptor size; `save` writes params.safetensors + config.json (what `from_pretrained` reads
back) and `jax_function` gives the pure function `universal_embedding.export` serves.

Images get exactly the evaluation preprocessing (TensorFlow decode, shorter side resized to
image_size, centre crop, normalisation), so vectors equal `knn_main` / `extract_dir_descriptors`
descriptors of the same images.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable

import numpy as np

from universal_embedding import loading
from universal_embedding.configs import base
from universal_embedding.distributed import mesh as mesh_lib
from universal_embedding.loading import exported
from universal_embedding.models import embedding_model
from universal_embedding.models.spec import ModelSpec
from universal_embedding.original import checkpoint as original_checkpoint


def _spec(model: dict | None = None, **fields) -> ModelSpec:
    """The kNN config's default model (teachers for every UnED domain) with `fields` and the
    model.* fields in `model` replaced."""
    spec = ModelSpec(domains=tuple(base.ALL_DOMAINS.split(",")))
    return dataclasses.replace(spec, **fields).with_model_fields(model or {})


def _load(spec: ModelSpec, source: loading.WeightSource) -> loading.LoadedModel:
    """The model (as a train_dir holds it, else `spec`) with the weights of `source`."""
    loading.weights_source(source)
    return loading.load_model(loading.resolve_spec(spec, source), source)


PROGRESS_FROM = 256  # progress=None: a bar from this many images on


def devices_of(device) -> list | None:
    """The JAX devices `device` names: None (every device), 'cpu' / 'gpu' / 'cuda' / 'tpu'
    (every local device of that platform), 'cpu:1' (one of them), a jax.Device or a list."""
    import jax

    if device is None:
        return None
    if not isinstance(device, str):
        return list(device) if isinstance(device, (list, tuple)) else [device]
    name, _, index = device.lower().partition(":")
    name = {"cuda": "gpu"}.get(name, name)
    try:
        found = jax.local_devices(backend=name)
    except RuntimeError:
        found = []
    if not found:
        raise ValueError(
            f"device={device!r}: JAX has no {name} device here (default backend: "
            f"{jax.default_backend()}); use None (all devices), 'cpu', 'gpu', 'tpu' or 'cpu:0'."
        )
    if not index:
        return found
    if not index.isdigit() or int(index) >= len(found):
        raise ValueError(f"device={device!r}: there are {len(found)} {name} devices (0-based).")
    return [found[int(index)]]


def _progress_bar(n: int, progress: bool | None):
    """A tqdm bar over n images (stderr), or None: progress=None shows one from PROGRESS_FROM."""
    show = n >= PROGRESS_FROM if progress is None else bool(progress)
    if not show:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=n, unit="img", desc="embed", dynamic_ncols=True)


def _items(images) -> list:
    """A list of images from one image (path, PIL, array) or a sequence / [N, H, W, C] array."""
    if isinstance(images, (str, os.PathLike, bytes)) or hasattr(images, "mode"):
        return [images]
    if isinstance(images, np.ndarray):
        return [images] if images.ndim in (2, 3) else list(images)
    return list(images)


class Embedder:
    """A model without heads, its params and its evaluation preprocessing."""

    def __init__(self, loaded: loading.LoadedModel, embedding: str):
        self.model = loaded.model
        self.params = loaded.params
        self.spec = loaded.spec
        self.normalization = loaded.normalization
        self.image_size = int(loaded.spec.image_size)
        self.embedding = embedding
        self._embed: dict = {}  # device choice -> (embed function, batch multiple)

    # ---------------------------------------------------------------- constructors
    @classmethod
    def from_workdir(
        cls, workdir: str, checkpoint: str | int = "best", embedd_to_eval: str | None = None
    ) -> Embedder:
        """The best / latest / step-N checkpoint of a training workdir (its config.json)."""
        if embedd_to_eval is None:  # config.json: this project's, or the original code's
            trained = original_checkpoint.read_config(workdir) or {}
            embedd_to_eval = trained.get("embedd_to_eval", "projected")
        source = loading.WeightSource(train_dir=workdir, checkpoint=str(checkpoint))
        return cls(_load(_spec(), source), embedd_to_eval)

    @classmethod
    def from_pretrained(
        cls,
        weights_file: str,
        model_class: str = "vit_with_embedding",
        model_type: str = "B/16",
        embedd_to_eval: str | None = None,
        image_size: int = 224,
        **model_fields,
    ) -> Embedder:
        """Any weight file the trainer accepts (backbone only), or an exported
        params.safetensors (model from the config.json beside it; other arguments ignored)."""
        if exported.is_exported(weights_file):
            params, fields = exported.read(weights_file)
            spec = _spec(**{k: v for k, v in fields.items() if k != "embedd_to_eval"})
            model = embedding_model.build_model(spec, None)
            config_json = os.path.join(
                os.path.dirname(os.path.abspath(weights_file)), "config.json"
            )
            loading.check_loaded(model, params, spec, config_json)  # shapes, finite values
            loaded = loading.LoadedModel(model, params, spec, loading.normalization_of(spec))
            return cls(loaded, embedd_to_eval or fields.get("embedd_to_eval", "projected"))
        embedding = embedd_to_eval or "backbone_out"
        spec = _spec(
            model_class=model_class,
            model_type=model_type,
            image_size=image_size,
            embedd_to_eval=embedding,
            model=model_fields,
        )
        return cls(_load(spec, loading.WeightSource(pretrained_ckpt=weights_file)), embedding)

    # ---------------------------------------------------------------- embedding
    @property
    def dim(self) -> int:
        """Descriptor size d."""
        if self.embedding == "projected" and self.spec.output_dim > 0:
            return int(self.spec.output_dim)
        return embedding_model.backbone_size(self.spec).hidden_size

    def preprocess(self, images) -> np.ndarray:
        """float32 [n, S, S, 3]: the evaluation transform of each image."""
        from universal_embedding.data import embed_inputs

        items = _items(images)
        if not items:
            return np.zeros((0, self.image_size, self.image_size, 3), np.float32)
        return np.stack(
            [
                embed_inputs.eval_image(
                    x, image_size=self.image_size, normalization=self.normalization
                )
                for x in items
            ]
        )

    def _embedder(self, device):
        """(embed function, its batch multiple) on the devices `device` names (cached)."""
        key = device if device is None or isinstance(device, str) else repr(device)
        if key not in self._embed:
            devices = devices_of(device)
            mesh = mesh_lib.make_mesh(devices)
            fn = loading.make_embedder(self.model, self.params, self.embedding, mesh)
            self._embed[key] = (fn, mesh.devices.size)
        return self._embed[key]

    def embed_preprocessed(
        self, batches: Iterable[np.ndarray], batch_size: int, device=None, on_batch=None
    ) -> np.ndarray:
        """float32 [n, d] of preprocessed batches (each padded to one shape: one compilation);
        on_batch(n) is called after each batch of n images."""
        embed_fn, multiple = self._embedder(device)
        size = -(-int(batch_size) // multiple) * multiple  # sharded over the devices
        rows = []
        for batch in batches:
            n = len(batch)
            if n > size:
                raise ValueError(f"Batch of {n} images exceeds batch_size {size}.")
            padded = np.zeros((size, *batch.shape[1:]), np.float32)
            padded[:n] = batch
            rows.append(np.asarray(embed_fn(padded), np.float32)[:n])
            if on_batch is not None:
                on_batch(n)
        if not rows:
            return np.zeros((0, self.dim), np.float32)
        return np.concatenate(rows)

    def embed(
        self, images, batch_size: int = 32, progress: bool | None = None, device=None
    ) -> np.ndarray:
        """float32 [n, d], L2-normalised rows, for paths, PIL images or uint8 HxWx3 arrays.

        batch_size: images per step; progress: a tqdm bar on stderr (None: from PROGRESS_FROM
        images on); device: where to run (devices_of: None = every device, 'cpu', 'gpu',
        'cpu:1', a jax.Device or a list of them)."""
        from universal_embedding.data import embed_inputs

        if int(batch_size) < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}.")
        items = _items(images)
        batches = embed_inputs.eval_batches(
            items,
            batch_size=batch_size,
            image_size=self.image_size,
            normalization=self.normalization,
        )
        bar = _progress_bar(len(items), progress)
        try:
            return self.embed_preprocessed(
                batches, batch_size, device, on_batch=bar.update if bar else None
            )
        finally:
            if bar is not None:
                bar.close()

    def jax_function(self):
        """(fn(params, images [B, S, S, 3]) -> [B, d], params): the pure function to export."""
        return loading.make_embed_fn(self.model, self.embedding), self.params

    def save(self, out_dir: str) -> str:
        """out_dir/params.safetensors + config.json, readable by `from_pretrained`."""
        return exported.save(out_dir, self.params, self.spec, self.embedding)
