"""User errors end a program with one line on stderr and exit code 1, not a traceback.

Every program runs through `errors.command.run`, which wraps its absl main with
`one_line_errors`. What counts as a user error: bad values, missing or unreadable files,
mismatched data and weights (ValueError, OSError, KeyError, and RuntimeError, which is how
some libraries report bad input), a missing optional dependency (ImportError) and a file whose
declared sizes exceed the memory (MemoryError). The traceback is printed only with
`--verbose` or the environment variable `UE_VERBOSE=1`.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable

USER_ERRORS = (ValueError, OSError, KeyError, RuntimeError, ImportError, MemoryError)
MAX_CHARS = 2000


def define_verbose_flag(flag_values=None) -> None:
    """--verbose (full tracebacks); called by each program next to its other flags."""
    from absl import flags

    flag_values = flags.FLAGS if flag_values is None else flag_values
    if "verbose" not in flag_values:
        flags.DEFINE_bool(
            "verbose", False, "Show the full traceback of an error.", flag_values=flag_values
        )


def verbose_requested() -> bool:
    """True with --verbose or UE_VERBOSE=1."""
    from absl import flags

    if os.environ.get("UE_VERBOSE", "") not in ("", "0"):
        return True
    return "verbose" in flags.FLAGS and flags.FLAGS.is_parsed() and flags.FLAGS.verbose


def one_line(error: BaseException) -> str:
    """'error: <message>' on one line (newlines folded, long messages cut), naming the type."""
    text = " | ".join(line.strip() for line in str(error).splitlines() if line.strip())
    if isinstance(error, KeyError) and len(error.args) == 1:
        text = f"missing key {error.args[0]!r}"
    if isinstance(error, MemoryError):
        text = (
            f"out of memory{': ' + text if text else ''}; an input declares more data than this "
            "machine holds (a damaged or hostile file, or a batch or model too large for it)"
        )
    text = text or type(error).__name__
    if len(text) > MAX_CHARS:
        text = text[: MAX_CHARS - 3] + "..."
    return f"error ({type(error).__name__}): {text} [--verbose for the traceback]"


def one_line_errors(main: Callable[[list[str]], object]) -> Callable[[list[str]], object]:
    """`main` for absl.app.run whose user errors exit 1 with one line on stderr."""

    @functools.wraps(main)
    def wrapped(argv: list[str]) -> object:
        try:
            return main(argv)
        except USER_ERRORS as e:
            if verbose_requested():
                raise
            print(one_line(e), file=sys.stderr, flush=True)
            sys.exit(1)

    return wrapped
