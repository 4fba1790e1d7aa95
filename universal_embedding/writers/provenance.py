"""What produced a result: package versions, the git commit (when run from a checkout), devices.

Written as the "provenance" object of every results.json and config.json.
"""

from __future__ import annotations

import functools
import os
import subprocess
from importlib import metadata

PACKAGES = ("universal_embedding", "jax", "jaxlib", "flax", "optax", "orbax-checkpoint",
            "tensorflow", "tensorflow-cpu", "numpy", "faiss-cpu")  # fmt: skip
_REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def package_versions(names=PACKAGES) -> dict[str, str]:
    """Installed version of each package that is installed (read from metadata, not imported)."""
    out = {}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            if name == "universal_embedding":  # run from a checkout without installing
                import universal_embedding

                out[name] = universal_embedding.__version__
    return out


@functools.lru_cache(maxsize=1)
def git_commit(path: str = _REPO) -> str | None:
    """HEAD of the git checkout holding the package (+ '-dirty' with local changes), else None."""
    if not os.path.exists(os.path.join(path, ".git")):
        return None
    try:
        run = {"capture_output": True, "text": True, "timeout": 10, "check": True}
        head = subprocess.run(["git", "-C", path, "rev-parse", "HEAD"], **run).stdout.strip()
        status = ["git", "-C", path, "status", "--porcelain", "-uno"]
        dirty = subprocess.run(status, **run).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{head}-dirty" if dirty else head


def devices() -> list[str]:
    """'<count> x <platform> <device kind>' for each kind of device JAX uses (all processes)."""
    import jax

    counts: dict[str, int] = {}
    for d in jax.devices():
        key = f"{d.platform} {d.device_kind}"
        counts[key] = counts.get(key, 0) + 1
    return [f"{n} x {key}" for key, n in counts.items()]


def provenance() -> dict:
    """{'versions': {...}, 'git_commit': str | None, 'devices': [...]}."""
    return {"versions": package_versions(), "git_commit": git_commit(), "devices": devices()}
