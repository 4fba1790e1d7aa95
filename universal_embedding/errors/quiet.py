"""Quiet by default: third-party warnings and banners stay off the console.

Installed when the package is imported (universal_embedding/__init__.py), so commands and the
Python API alike are quiet: TensorFlow's C++ start-up lines (CPU instructions, oneDNN) are
off (TF_CPP_MIN_LOG_LEVEL=2 unless set), Python warnings raised inside the libraries below are
ignored, and their absl / Python log records under ERROR (orbax's CheckpointManager notes,
for instance) are dropped, and so are the bare "Event loop is closed" tracebacks TensorStore
reports after orbax closed its loop (closed_loop_noise). Our own log lines and every error
stay. `--verbose` on a command, or UE_VERBOSE=1, shows everything.

TensorFlow's oneDNN custom operations are off unless TF_ENABLE_ONEDNN_OPTS is set, verbose or
not (tensorflow_defaults): TensorFlow runs only tf.data here (decode, crop, resize), and on CPUs
with AVX-512 the start-up line saying they are on ignores TF_CPP_MIN_LOG_LEVEL (TF 2.21).
"""

from __future__ import annotations

import logging
import os
import sys
import sysconfig
import warnings
from collections.abc import Sequence

# Libraries whose warnings and sub-ERROR log records are hidden unless verbose.
LIBRARIES = ("orbax", "tensorflow", "tensorflow_datasets", "tf_keras", "keras", "jax", "jaxlib",
             "flax", "optax", "clu", "absl", "etils", "tensorboard", "google", "faiss")  # fmt: skip
# Loggers the libraries log to (absl's carries orbax, clu and absl itself).
LOGGERS = ("absl", "tensorflow", "jax", "jax._src.xla_bridge", "orbax", "flax")
_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_INSTALLED = False


def verbose_in_argv(argv: Sequence[str]) -> bool:
    """True when argv asks for --verbose (also --verbose=true / =1)."""
    return any(a in ("--verbose", "--verbose=true", "--verbose=True", "--verbose=1") for a in argv)


def verbose_wanted(argv: Sequence[str] | None = None) -> bool:
    """UE_VERBOSE=1, or --verbose on the command line."""
    if os.environ.get("UE_VERBOSE", "") not in ("", "0"):
        return True
    return verbose_in_argv(sys.argv[1:] if argv is None else argv)


def from_library(pathname: str) -> bool:
    """True for a source file of an installed library (not ours, not a user's script)."""
    path = os.path.abspath(pathname)
    if path.startswith(_PACKAGE_DIR + os.sep):
        return False
    parts = path.split(os.sep)
    return "site-packages" in parts or "dist-packages" in parts


def library_or_stdlib(pathname: str) -> bool:
    """True for a source file of an installed library or of Python's standard library."""
    stdlib = os.path.abspath(sysconfig.get_paths()["stdlib"])
    return from_library(pathname) or os.path.abspath(pathname).startswith(stdlib + os.sep)


class LibraryRecords(logging.Filter):
    """Drops a library's log records under ERROR unless verbose was asked for."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.ERROR or not from_library(record.pathname):
            return True
        from universal_embedding.errors import verbose_requested

        return verbose_wanted() or verbose_requested()


def closed_loop_noise(unraisable) -> bool:
    """True for TensorStore delivering a result to the private asyncio loop orbax already
    closed (its writes still pending after a failed save or restore): a RuntimeError('Event
    loop is closed') raised in asyncio's call_soon_threadsafe and reported, with no object,
    through sys.unraisablehook as a bare traceback. Nothing waits for that result."""
    error, tb = unraisable.exc_value, unraisable.exc_traceback
    if not isinstance(error, RuntimeError) or str(error) != "Event loop is closed":
        return False
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    return (
        unraisable.object is None
        and tb is not None
        and tb.tb_frame.f_code.co_name
        in (
            "_check_closed",
            "call_soon_threadsafe",
        )
    )


def quiet_closed_loop_noise() -> None:
    """Wrap sys.unraisablehook (once) so that closed_loop_noise is dropped unless verbose."""
    previous = sys.unraisablehook
    if getattr(previous, "_drops_closed_loop_noise", False):
        return

    def hook(unraisable) -> None:
        from universal_embedding.errors import verbose_requested

        if closed_loop_noise(unraisable) and not (verbose_wanted() or verbose_requested()):
            return
        previous(unraisable)

    hook._drops_closed_loop_noise = True
    sys.unraisablehook = hook


def tensorflow_defaults() -> None:
    """Off unless set: TensorFlow's oneDNN custom operations (the same tf.data on every CPU)."""
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")


def install(argv: Sequence[str] | None = None) -> bool:
    """Quiet the libraries (once per process) unless verbose; True when installed."""
    global _INSTALLED
    if _INSTALLED or verbose_wanted(argv):
        return _INSTALLED
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    pattern = "(" + "|".join(LIBRARIES) + r")(\.|$)"
    warnings.filterwarnings("ignore", module=pattern)
    from absl import logging as absl_logging  # before getLogger('absl'): absl's own class

    absl_logging.get_absl_logger().addFilter(LibraryRecords())
    for name in LOGGERS[1:]:
        logging.getLogger(name).addFilter(LibraryRecords())
    quiet_closed_loop_noise()
    _INSTALLED = True
    return True
