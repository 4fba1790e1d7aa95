"""A full disk while a checkpoint is written: recognised however the storage layer wraps it,
the partial save removed, and one line (DiskFull) instead of orbax's logged tracebacks."""

from __future__ import annotations

import errno
import logging
import os
import shutil

from absl import logging as absl_logging

from universal_embedding.errors import quiet, verbose_requested

LOGGERS = ("orbax", "asyncio", "concurrent.futures")  # besides absl's, where orbax's fail


class DiskFull(OSError):
    """No space left on device while a checkpoint was written (the partial save is removed)."""


def no_space(error: BaseException) -> bool:
    """True for a full disk or quota, however the storage layer wraps it (TensorStore raises
    ValueError('RESOURCE_EXHAUSTED: ... No space left on device'))."""
    errno_ = getattr(error, "errno", None)
    return errno_ in (errno.ENOSPC, errno.EDQUOT) or "No space left on device" in str(error)


def _chain(error: BaseException | None):
    """error, then its __cause__ / __context__ chain (orbax re-raises a thread's error)."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        yield error
        error = error.__cause__ or error.__context__


class FullDiskRecords(logging.Filter):
    """Drops library (and standard library) log records about a full disk: orbax's background
    save threads log the failure with its traceback (several times), asyncio its "Future
    exception was never retrieved", before Checkpoints raises it as DiskFull, one line. Kept
    with --verbose or UE_VERBOSE=1."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not quiet.library_or_stdlib(record.pathname):
            return True
        error = record.exc_info[1] if record.exc_info else None
        full = any(no_space(e) for e in _chain(error)) or "No space left on device" in str(
            record.msg
        )
        return not full or quiet.verbose_wanted() or verbose_requested()


def quiet_full_disk_records() -> None:
    """Install FullDiskRecords on the loggers orbax logs to (once per process)."""
    loggers = [absl_logging.get_absl_logger()] + [logging.getLogger(n) for n in LOGGERS]
    for logger in loggers:
        if not any(isinstance(f, FullDiskRecords) for f in logger.filters):
            logger.addFilter(FullDiskRecords())


PARTIAL = ".orbax-checkpoint-tmp"  # orbax's '<step>.orbax-checkpoint-tmp*' of an unfinished save


def partial_steps(folder: str) -> list[int]:
    """The steps of the unfinished saves in a series folder."""
    names = os.listdir(folder) if os.path.isdir(folder) else []
    return sorted(int(n.split(".")[0]) for n in names if PARTIAL in n and n.split(".")[0].isdigit())


def failed_save(latest: str, best: str, what: str) -> str:
    """What the interrupted save was, named by its partial folder (an asynchronous save fails
    on the next call, which does not know it): 'step N', 'the best checkpoint (step N)', or
    `what` when no partial folder is left."""
    for folder, name in ((latest, "step {}"), (best, "the best checkpoint (step {})")):
        steps = partial_steps(folder)
        if steps:
            return name.format(steps[-1])
    return what


def remove_partial_saves(folders: tuple[str, ...]) -> None:
    """Delete the temporary folders of unfinished saves."""
    for folder in folders:
        if os.path.isdir(folder):
            for name in os.listdir(folder):
                if PARTIAL in name:
                    shutil.rmtree(os.path.join(folder, name), ignore_errors=True)
