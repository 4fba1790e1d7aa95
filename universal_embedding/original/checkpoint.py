"""Training workdirs of the original UnED code: flax msgpack checkpoints of Scenic's train state.

The original trainer (Scenic, legacy flax checkpointing) writes one file per saved step,
`<workdir>/checkpoint_<step>`, the best one as step -1 (`checkpoint_-1`), each holding
`flax.serialization.to_bytes(train_state)`: a msgpack map of the TrainState's fields
{'opt_state', 'params', 'global_step', 'model_state', 'rng', 'metadata'} (older Scenic:
'optimizer': {'target': params, ...}). Its config.json (ml_collections `to_json_best_effort`,
written as a JSON object or, by older versions, as a JSON string holding one) sits beside them.

Files are read with flax's msgpack restore only (no pickle: nothing in them runs) and refused
above a size bound (environment variable UE_MAX_CHECKPOINT_GB, default 8) so that a wrong or
hostile file cannot exhaust memory.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping

CHECKPOINT_RE = re.compile(r"checkpoint_(-?\d+)")
BEST_STEP = -1
CONFIG_FILE = "config.json"
DEFAULT_MAX_GB = 8.0


class OriginalCheckpointError(ValueError):
    """An original checkpoint that cannot be read or does not fit the model."""


def checkpoint_files(workdir: str) -> dict[int, str]:
    """{step: path} of the `checkpoint_<step>` files in `workdir` (temporary files ignored)."""
    if not os.path.isdir(workdir):
        return {}
    out = {}
    for name in os.listdir(workdir):
        m = CHECKPOINT_RE.fullmatch(name)
        path = os.path.join(workdir, name)
        if m and os.path.isfile(path):
            out[int(m.group(1))] = path
    return out


def is_original_workdir(path: str) -> bool:
    """True for a directory with `checkpoint_<step>` files and no orbax `checkpoints/` folder."""
    return (
        os.path.isdir(path)
        and not os.path.isdir(os.path.join(path, "checkpoints"))
        and bool(checkpoint_files(path))
    )


def is_checkpoint_file(path: str) -> bool:
    """True for a file named `checkpoint_<step>` (what the original's init_ckpt names)."""
    return os.path.isfile(path) and CHECKPOINT_RE.fullmatch(os.path.basename(path)) is not None


def pick(workdir: str, which: str | int = "best") -> tuple[int, str]:
    """(step, path) of the checkpoint `which` names in an original workdir.

    'best': checkpoint_-1, or the newest step when the run kept no best checkpoint;
    'latest': the newest step >= 0 (checkpoint_-1 when it is the only one); 'N' / '-1': step N.
    """
    files = checkpoint_files(workdir)
    steps = sorted(files)
    text = str(which).strip()
    if not steps:
        raise FileNotFoundError(f"No checkpoint_<step> file in {workdir}.")
    if text == "best":
        step = BEST_STEP if BEST_STEP in files else steps[-1]
    elif text == "latest":
        step = steps[-1]
    elif re.fullmatch(r"-?\d+", text):
        step = int(text)
        if step not in files:
            raise FileNotFoundError(
                f"No checkpoint_{step} in {workdir} (available steps: {steps}); set "
                "--config.checkpoint to one of them, 'best' or 'latest'."
            )
    else:
        raise ValueError(f"checkpoint must be 'best', 'latest' or a step number, got '{text}'.")
    return step, files[step]


def max_bytes() -> int:
    """The size bound for a checkpoint file (UE_MAX_CHECKPOINT_GB, default 8 GB)."""
    text = os.environ.get("UE_MAX_CHECKPOINT_GB", "")
    try:
        gb = float(text) if text else DEFAULT_MAX_GB
    except ValueError:
        raise ValueError(f"UE_MAX_CHECKPOINT_GB={text!r} is not a number of gigabytes.") from None
    return int(gb * 1e9)


def read_state(path: str) -> dict:
    """The state dict of a flax msgpack checkpoint file (arrays as numpy), size-checked."""
    from flax import serialization

    size, limit = os.path.getsize(path), max_bytes()
    if size > limit:
        raise OriginalCheckpointError(
            f"{path} is {size / 1e9:.1f} GB, over the {limit / 1e9:.1f} GB bound for a "
            "checkpoint file; nothing was read. If it really is a training checkpoint, raise "
            "the bound with the environment variable UE_MAX_CHECKPOINT_GB."
        )
    with open(path, "rb") as f:
        data = f.read()
    try:
        state = serialization.msgpack_restore(data)
    except Exception as e:  # noqa: BLE001 - any decoding failure means: not such a file
        raise OriginalCheckpointError(
            f"{path} is not a flax msgpack checkpoint ({type(e).__name__}: "
            f"{str(e).splitlines()[0][:120] if str(e) else ''}); give a checkpoint_<step> file "
            "written by the original UnED trainer."
        ) from None
    if not isinstance(state, dict):
        raise OriginalCheckpointError(
            f"{path} holds a msgpack {type(state).__name__}, not a train state; give a "
            "checkpoint_<step> file written by the original UnED trainer."
        )
    return state


def state_params(state: Mapping, path: str) -> dict:
    """The parameter tree of a Scenic train state dict ('params', or 'optimizer/target')."""
    params = state.get("params")
    if params is None and isinstance(state.get("optimizer"), Mapping):
        params = state["optimizer"].get("target")
    if not isinstance(params, Mapping) or not params:
        raise OriginalCheckpointError(
            f"{path} holds no parameters (top-level fields: {sorted(state)[:8]}); expected "
            "Scenic's train state with 'params'."
        )
    return dict(params)


def read_params(path: str) -> tuple[dict, int | None]:
    """(params, global_step) of one checkpoint file."""
    state = read_state(path)
    step = state.get("global_step")
    try:
        step = int(step) if step is not None else None
    except (TypeError, ValueError):
        step = None
    return state_params(state, path), step


def read_config(workdir: str) -> dict | None:
    """The original run's config.json as a dict, or None when the workdir has none."""
    path = os.path.join(workdir, CONFIG_FILE)
    if not os.path.isfile(path):
        return None
    try:
        with open(path) as f:
            config = json.load(f)
        if isinstance(config, str):  # older versions wrote the JSON text as a JSON string
            config = json.loads(config)
    except ValueError as e:
        raise ValueError(f"{path} is not valid JSON ({e}); fix or remove it.") from None
    if not isinstance(config, dict):
        raise ValueError(f"{path} holds a JSON {type(config).__name__}, not a config object.")
    return config
