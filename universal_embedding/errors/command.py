"""What every command shares: absl's run with `--verbose` and one-line user errors.

A command's `cli()` defines its own flags, then calls `run(main)`: `run` adds `--verbose`,
parses the command line, refuses positional arguments the command does not take, and calls
`main(argv)` wrapped by `one_line_errors` (a user error ends in one line on stderr and exit
code 1; `--verbose` or UE_VERBOSE=1 shows the traceback). It lives in errors/ so that the
commands inside data/ (prepare, synthetic), which may import only `errors`, use it too; the
config-driven commands go through `universal_embedding.runner`, which calls it.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence

from absl import app as absl_app
from absl import flags, logging

from universal_embedding.errors import define_verbose_flag, one_line_errors


def reject_arguments(argv: Sequence[str]) -> None:
    """UsageError (absl prints it with the usage, exit 1) when argv has positional arguments."""
    if len(argv) > 1:
        raise absl_app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")


def log_warnings_only() -> None:
    """Only warnings and errors in the log unless --verbosity is given (--verbosity=0 shows
    INFO): orbax, TensorFlow and JAX are chatty at INFO."""
    if not flags.FLAGS["verbosity"].present:
        logging.set_verbosity(logging.WARNING)


def written_lines(paths: Iterable[str]) -> list[str]:
    """'Wrote <path>' for each output (a folder ends in '/'), duplicates and empties left out."""
    lines = []
    for path in dict.fromkeys(p for p in paths if p):
        slash = os.sep if os.path.isdir(path) and not path.endswith(os.sep) else ""
        lines.append(f"Wrote {path}{slash}")
    return lines


def print_written(paths: Iterable[str]) -> None:
    """A command's last lines: what it wrote and where (written_lines on stdout)."""
    for line in written_lines(paths):
        print(line, flush=True)


def run(
    main: Callable[[list[str]], object],
    *,
    positional: bool = False,
    quiet: bool = False,
    argv: list[str] | None = None,
    flags_parser: Callable[[list[str]], list[str]] | None = None,
) -> None:
    """Parse the command line (flags defined before the call, plus --verbose) and call main(argv).

    positional: main takes positional arguments (argv[1:]) and checks them itself; otherwise
    any is a UsageError. quiet: log only warnings unless --verbosity is given. argv and
    flags_parser are absl.app.run's (default: sys.argv, absl's parser).
    """
    define_verbose_flag()

    def checked(args: list[str]) -> object:
        if not positional:
            reject_arguments(args)
        if quiet:
            log_warnings_only()
        return main(args)

    absl_app.run(
        one_line_errors(checked),
        argv=argv,
        flags_parser=flags_parser or absl_app.parse_flags_with_usage,
    )
