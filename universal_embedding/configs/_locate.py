"""Config files by name: `--config=config_train_vit.py` finds the packaged config when no such
file exists where the command runs (an installed package run outside the repository)."""

from __future__ import annotations

import os
from collections.abc import Sequence

CONFIG_DIR = os.path.dirname(os.path.abspath(__file__))
# The original's ICCV 2023 configs (universal_embedding/original/iccv_configs/), also by the
# path they had in the original code (universal_embedding/iccv_configs/).
ICCV_DIR = os.path.join(os.path.dirname(CONFIG_DIR), "original", "iccv_configs")
# The original UDON code's configs, by their path there (universal_embedding/udon_configs/).
UDON_DIR = os.path.join(os.path.dirname(CONFIG_DIR), "original", "udon_configs")
_PREFIXES = {
    "universal_embedding/configs/": CONFIG_DIR,
    "universal_embedding/original/iccv_configs/": ICCV_DIR,
    "universal_embedding/iccv_configs/": ICCV_DIR,
    "universal_embedding/original/udon_configs/": UDON_DIR,
    "universal_embedding/udon_configs/": UDON_DIR,
}


def packaged(name: str) -> str | None:
    """The packaged config file `name` refers to ('tiny', 'tiny.py', '.../configs/tiny.py',
    '.../iccv_configs/CLIP_vitb_uscrr_train.py', '.../original/iccv_configs/...',
    '.../udon_configs/config_train_vit.py')."""
    rel, folder = name.replace(os.sep, "/"), CONFIG_DIR
    for prefix, directory in _PREFIXES.items():
        if prefix in rel:
            rel, folder = rel[rel.index(prefix) + len(prefix) :], directory
    if "/" in rel:
        return None
    rel = rel if rel.endswith(".py") else rel + ".py"
    path = os.path.join(folder, rel)
    return path if os.path.isfile(path) and not rel.startswith("_") else None


def resolve(spec: str) -> str:
    """'FILE[:ARG]' with FILE replaced by the packaged config when FILE itself does not exist."""
    path, sep, arg = spec.partition(":")
    if not path or os.path.exists(path):
        return spec
    found = packaged(path)
    return f"{found}{sep}{arg}" if found else spec


def resolve_argv(argv: Sequence[str], flag: str = "config") -> list[str]:
    """argv with every `--config=X` / `--config X` value passed through `resolve`."""
    out = list(argv)
    for i, item in enumerate(out):
        if item.startswith(f"--{flag}="):
            out[i] = f"--{flag}=" + resolve(item.split("=", 1)[1])
        elif item == f"--{flag}" and i + 1 < len(out):
            out[i + 1] = resolve(out[i + 1])
    return out


def available() -> list[str]:
    """Names of the packaged config files."""
    return sorted(f for f in os.listdir(CONFIG_DIR) if f.endswith(".py") and not f.startswith("_"))
