"""What produced a result: package versions, the git commit (when run from a checkout), devices.

Written as the "provenance" object of every results.json and config.json.
"""

from __future__ import annotations

import functools
import os
import re
import subprocess
from importlib import metadata

PACKAGES = ("universal_embedding", "jax", "jaxlib", "flax", "optax", "orbax-checkpoint",
            "tensorflow", "tensorflow-cpu", "numpy", "faiss-cpu")  # fmt: skip
_SHA = re.compile(r"[0-9a-f]{40}([0-9a-f]{24})?")
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


def project_checkout(start: str) -> str | None:
    """The nearest folder at or above `start` that is a git checkout of this project (holds
    .git and universal_embedding/__init__.py), else None."""
    folder = os.path.abspath(start)
    while True:
        if os.path.exists(os.path.join(folder, ".git")) and os.path.isfile(
            os.path.join(folder, "universal_embedding", "__init__.py")
        ):
            return folder
        parent = os.path.dirname(folder)
        if parent == folder:
            return None
        folder = parent


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8") as f:
            return f.read().strip()
    except (OSError, UnicodeDecodeError):
        return None


def _git_dir(root: str) -> str | None:
    """root/.git, or the folder a worktree's .git file points to."""
    dotgit = os.path.join(root, ".git")
    if os.path.isdir(dotgit):
        return dotgit
    text = _read(dotgit) or ""
    if text.startswith("gitdir:"):
        return os.path.normpath(os.path.join(root, text[len("gitdir:") :].strip()))
    return None


def read_head(root: str) -> str | None:
    """HEAD's commit read from the files of root's git folder (loose or packed ref), without
    running git: for when git is missing or refuses the checkout (another owner)."""
    git_dir = _git_dir(root)
    head = _read(os.path.join(git_dir, "HEAD")) if git_dir else None
    if not head:
        return None
    if not head.startswith("ref:"):
        return head if _SHA.fullmatch(head) else None
    ref = head[len("ref:") :].strip()
    common = _read(os.path.join(git_dir, "commondir"))
    common_dir = os.path.normpath(os.path.join(git_dir, common)) if common else git_dir
    for folder in dict.fromkeys((git_dir, common_dir)):
        sha = _read(os.path.join(folder, *ref.split("/")))
        if sha and _SHA.fullmatch(sha):
            return sha
    for line in (_read(os.path.join(common_dir, "packed-refs")) or "").splitlines():
        sha, _, name = line.partition(" ")
        if name.strip() == ref and _SHA.fullmatch(sha):
            return sha
    return None


def _git_head(root: str) -> str | None:
    """`git rev-parse HEAD` (+ '-dirty' with local changes) in root; None when git fails."""
    try:
        run = {"capture_output": True, "text": True, "timeout": 10, "check": True}
        head = subprocess.run(["git", "-C", root, "rev-parse", "HEAD"], **run).stdout.strip()
        status = ["git", "-C", root, "status", "--porcelain", "-uno"]
        dirty = subprocess.run(status, **run).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{head}-dirty" if dirty else head


@functools.lru_cache(maxsize=8)
def _commit_of(root: str) -> str | None:
    return _git_head(root) or read_head(root)


def git_commit(path: str = _REPO) -> str | None:
    """HEAD of the git checkout holding the package (+ '-dirty' with local changes), else of
    the checkout of this project the command runs in (a package installed from it), else None.
    Read from git's files when git itself is missing or refuses the folder."""
    roots = [path if os.path.exists(os.path.join(path, ".git")) else None]
    roots.append(project_checkout(os.getcwd()))
    for root in dict.fromkeys(r for r in roots if r):
        commit = _commit_of(os.path.abspath(root))
        if commit:
            return commit
    return None


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
