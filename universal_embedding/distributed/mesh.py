"""The 1-D device mesh (axis 'data') every jitted program runs on, and host <-> device moves.

Parameters are replicated; batches are sharded over 'data' along their first axis. Works for
one device, many devices and many hosts (each host feeds its own slice of the global batch
through `shard_batch`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec

DATA_AXIS = "data"


def make_mesh(devices: Any = None) -> Mesh:
    """A 1-D mesh named 'data' over all devices of all processes (or `devices`)."""
    devices = jax.devices() if devices is None else devices
    return Mesh(np.asarray(devices).reshape(-1), (DATA_AXIS,))


def replicated(mesh: Mesh) -> NamedSharding:
    """Sharding that keeps a full copy on every device."""
    return NamedSharding(mesh, PartitionSpec())


def data_sharded(mesh: Mesh) -> NamedSharding:
    """Sharding that splits the leading (batch) axis over 'data'."""
    return NamedSharding(mesh, PartitionSpec(DATA_AXIS))


def global_batch_size(batch_size: int) -> int:
    """`batch_size` rounded up to a multiple of the device count (the batch is sharded)."""
    n = jax.device_count()
    return -(-int(batch_size) // n) * n


def shard_batch(batch: Mapping[str, np.ndarray], mesh: Mesh) -> dict[str, jax.Array]:
    """Global arrays from this process's slice of the batch (rows of process i follow i-1)."""
    sharding = data_sharded(mesh)
    n_local = len(mesh.local_devices)
    out = {}
    for key, value in batch.items():
        value = np.asarray(value)
        if value.shape[0] % n_local:
            raise ValueError(
                f"Batch entry '{key}' has {value.shape[0]} rows on this process, not divisible "
                f"by its {n_local} local devices; use a batch size divisible by the device count."
            )
        out[key] = jax.make_array_from_process_local_data(sharding, value)
    return out


def to_host(x: jax.Array) -> np.ndarray:
    """The full global array as numpy on every process (rows in process order)."""
    if jax.process_count() == 1:
        return np.asarray(jax.device_get(x))
    return np.asarray(multihost_utils.process_allgather(x, tiled=True))


def host_embed_fn(
    embed_fn: Callable[[Any, jax.Array], jax.Array], params: Any, mesh: Mesh
) -> Callable[[np.ndarray], np.ndarray]:
    """images (this process's slice, numpy) -> numpy descriptors of the whole global batch.

    Fits knn.descriptors.extract; with several processes every one gets all rows (the
    global batch order is process 0's slice, then process 1's, ...).
    """

    def fn(images: np.ndarray) -> np.ndarray:
        sharded = shard_batch({"images": images}, mesh)["images"]
        return to_host(embed_fn(params, sharded))

    return fn
