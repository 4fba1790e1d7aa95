"""One training run per workdir: a lock file `<workdir>/train.lock` holding the owner's pid/host.

Taken before anything is written and removed on exit. A lock left by a process that died
(SIGKILL, machine reboot) is detected when it names this host and a pid that is no longer
running (or our own pid, reused in a fresh container), and is then replaced with a warning.
A lock from another host cannot be checked from here: the message says how to remove it.
"""

from __future__ import annotations

import json
import os
import socket
import time

from absl import logging

LOCK_FILE = "train.lock"
_HELD: set[str] = set()  # lock paths this process holds


class WorkdirLocked(RuntimeError):
    """Another live run holds the workdir's lock."""


def lock_path(workdir: str) -> str:
    return os.path.join(os.path.abspath(workdir), LOCK_FILE)


def _pid_running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def _read_owner(path: str) -> dict | None:
    """The lock's {'pid', 'host', 'started'}, or None when unreadable (half written)."""
    try:
        with open(path) as f:
            owner = json.load(f)
        return owner if isinstance(owner, dict) and isinstance(owner.get("pid"), int) else None
    except (OSError, ValueError):
        return None


def is_stale(owner: dict | None, path: str) -> bool:
    """True when the lock's owner certainly is no longer running."""
    if owner is None:  # unreadable: stale unless it was being written just now
        try:
            return time.time() - os.path.getmtime(path) > 10
        except OSError:
            return True
    if owner.get("host") != socket.gethostname():
        return False
    pid = owner["pid"]
    if pid == os.getpid():  # our pid, but this process does not hold it: a previous life
        return path not in _HELD
    return not _pid_running(pid)


def acquire(workdir: str) -> str:
    """Create workdir/train.lock for this process; WorkdirLocked if a live run holds it."""
    os.makedirs(workdir, exist_ok=True)
    path = lock_path(workdir)
    me = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time()}
    for _ in range(3):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            owner = _read_owner(path)
            if not is_stale(owner, path):
                who = f"pid {owner['pid']} on {owner.get('host')}" if owner else "another run"
                raise WorkdirLocked(
                    f"Workdir {os.path.dirname(path)} is in use by {who} (lock file {path}). "
                    "Wait for that run to end or use another --workdir; if it is certainly "
                    "gone, delete the lock file."
                ) from None
            logging.warning("Removing the stale lock %s of a run that is gone (%s).", path, owner)
            try:
                os.remove(path)
            except FileNotFoundError:
                pass
            continue
        with os.fdopen(fd, "w") as f:
            json.dump(me, f)
        _HELD.add(path)
        return path
    raise WorkdirLocked(f"Could not take the lock {path}: other runs keep taking it.")


def release(path: str) -> None:
    """Remove a lock this process took (nothing if it is gone or now someone else's)."""
    owner = _read_owner(path)
    _HELD.discard(path)
    if owner is not None and owner["pid"] == os.getpid():
        try:
            os.remove(path)
        except FileNotFoundError:
            pass


class WorkdirLock:
    """`with WorkdirLock(workdir):` holds workdir's lock for the block (no-op if not enabled)."""

    def __init__(self, workdir: str, enabled: bool = True):
        self._workdir, self._enabled, self._path = workdir, enabled, None

    def __enter__(self) -> WorkdirLock:
        if self._enabled:
            self._path = acquire(self._workdir)
        return self

    def __exit__(self, *exc) -> None:
        if self._path is not None:
            release(self._path)
            self._path = None
