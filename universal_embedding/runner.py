"""Runs a config-driven command (main, knn_main, descr_eval, extract_dir_descriptors): each
one's `cli()` is `runner.run(fn, defaults=<its default config module>)`.

`run` defines `--config` (a get_config() file, found in the package when not on disk),
`--workdir`, `--verbose`, `--helpconfig` (every config field with its type, default and
description: config_help.py) and the W&B flags when called (importing this module defines no
flag), parses the command line (original-code field names translated onto ours), joins a
multi-process run (see `universal_embedding.distributed`) and calls `fn(config, workdir)`.
What every command shares (absl run, --verbose, one-line errors) is `errors.command.run`.
"""

from __future__ import annotations

import importlib
import os
import re
import sys
from collections.abc import Callable
from typing import Any

import ml_collections
from absl import app as absl_app
from absl import flags, logging
from ml_collections import config_flags

from universal_embedding import config_help, distributed, errors
from universal_embedding.configs import _locate as locate
from universal_embedding.errors import command, limits
from universal_embedding.original import config_fields, field_translation

# --flag -> config.wandb field it sets (only when the flag is given).
WANDB_FLAGS = {
    "use_wandb": "enabled",
    "wandb_project": "project",
    "wandb_group": "group",
    "wandb_entity": "entity",
    "wandb_name": "name",
}


def define_flags(
    flag_values: flags.FlagValues = flags.FLAGS, argv: list[str] | None = None
) -> None:
    """--config, --workdir and the W&B flags (shorthands for --config.wandb.*).

    `argv` (default sys.argv) is where config_flags finds the `--config.<field>` overrides.
    """
    config_flags.DEFINE_config_file(
        "config",
        None,
        "Path to a get_config() file[:argument string]; --helpconfig lists its fields.",
        flag_values=flag_values,
        sys_argv=argv,
    )
    flags.DEFINE_string(
        "workdir", None, "Where results, checkpoints and logs go.", flag_values=flag_values
    )
    errors.define_verbose_flag(flag_values)
    flags.DEFINE_bool(
        "helpconfig",
        False,
        "List every field of the config (--config, else the command's default config) with its "
        "type, default and description, then exit.",
        flag_values=flag_values,
    )
    flags.DEFINE_bool(
        "use_wandb",
        False,
        "Also log to Weights & Biases (sets config.wandb.enabled).",
        flag_values=flag_values,
    )
    for name, field in WANDB_FLAGS.items():
        if name != "use_wandb":
            flags.DEFINE_string(
                name, None, f"W&B {field} (sets config.wandb.{field}).", flag_values=flag_values
            )


def wandb_overrides(flag_values: flags.FlagValues = flags.FLAGS) -> dict[str, Any]:
    """{config.wandb field: value} of the W&B flags given on the command line."""
    return {
        field: flag_values[name].value
        for name, field in WANDB_FLAGS.items()
        if flag_values[name].present
    }


def config_and_workdir(
    flag_values: flags.FlagValues = flags.FLAGS,
    original_overrides: dict[str, Any] | None = None,
    defaults: str = "",
) -> tuple[ml_collections.ConfigDict, str]:
    """The parsed config (W&B flags applied) and workdir; UsageError when one is missing.

    Fields of the original UnED code, in the config file or in `original_overrides` (the
    `--config.<field>` arguments `field_translation.split_argv` took out), are translated onto ours,
    one logged line each; an unsupported one raises ValueError naming it. A config file of the
    original code gets the fields it lacks from `defaults` (a config module name, e.g.
    'config_knn_vit': the program's default config).
    """
    config = flag_values["config"].value
    if config is None:
        raise absl_app.UsageError("--config is required (a get_config() file).")
    if not flag_values["workdir"].value:
        raise absl_app.UsageError("--workdir is required.")
    default_config = _default_config(_defaults_for(config, defaults)) if defaults else None
    for line in field_translation.translate(config, original_overrides, default_config):
        logging.warning(line)
    for field, value in wandb_overrides(flag_values).items():
        config.wandb[field] = value
    return config, flag_values["workdir"].value


def unknown_override(argv: list[str], error: Exception) -> str | None:
    """The one-line message for a `--config.<path>` override naming a field the config lacks
    (ml_collections raises KeyError / AttributeError while parsing it), or None when `error`
    is not about an override in argv."""
    text = str(error.args[0] if error.args else error).replace("\\n", " ").replace("\\", "")
    text = " ".join(text.split())
    key = re.search(r"'([^'\s]+)'", text)
    if not key:
        return None
    name = key.group(1)
    given = [a for a in argv if a.startswith("--config.")]
    culprit = next(
        (a for a in given if name in a[len("--config.") :].partition("=")[0].split(".")), None
    )
    if culprit is None:
        return None
    message = f"{culprit}: the config has no field '{name}'"
    suggestion = re.search(r'Did you mean "([^"]+)"', text)
    if suggestion:
        message += f" (did you mean '{suggestion.group(1)}'?)"
    rule = config_fields.RULES.get(name)
    if rule is not None and rule.advice:
        message += f"; the original code's '{name}' needs no flag here: {rule.advice}"
    return message + "."


def config_file_error(error: Exception) -> str | None:
    """The one-line message for an error raised while loading the config file (ml_collections
    wraps it with the file's traceback, e.g. an unknown key of the argument string:
    `tiny.py:data_dir=D,foo=1`): '<flag>: <the error's own message>'; None for other errors."""
    head, sep, rest = str(error).partition(": Error whilst parsing config file")
    causes = re.findall(r"^\s*(?:\w+\.)*\w*(?:Error|Exception): (.+)$", rest, re.MULTILINE)
    if not sep or not causes:
        return None
    return f"{head.strip()}: {causes[-1].strip()}"


def special_config_file(argv: list[str]) -> str | None:
    """The one-line message when a --config file (the part before ':') exists but is not a
    regular file (a folder, FIFO, device or socket); None otherwise."""
    for i, item in enumerate(argv):
        if item.startswith("--config="):
            value = item.split("=", 1)[1]
        elif item == "--config" and i + 1 < len(argv):
            value = argv[i + 1]
        else:
            continue
        path = value.split(":", 1)[0]
        if os.path.exists(path) and not os.path.isfile(path):
            kind = "a folder" if os.path.isdir(path) else "not a regular file"
            return (
                f"--config={limits.short(value)}: {limits.short(path)} is {kind}; give a .py file"
            )
    return None


def _fatal(message: str, hint: bool = False) -> None:
    """Exit 1 with absl's 'FATAL Flags parsing error' line (and its help hint)."""
    sys.stderr.write(f"FATAL Flags parsing error: {message}\n")
    if hint:
        sys.stderr.write("Pass --helpshort or --helpfull to see help on flags.\n")
    sys.exit(1)


def parse_flags(argv: list[str]) -> list[str]:
    """absl's flag parser, except that an override of a field the config lacks, or an error in
    the config file or its argument string, ends in one line (absl's 'FATAL Flags parsing
    error' form) instead of ml_collections' traceback; a --config naming a folder, a FIFO or a
    device is refused before anything opens it (reading a FIFO would wait forever)."""
    message = special_config_file(argv)
    if message is not None:
        _fatal(message)
    try:
        return flags.FLAGS(argv)
    except (KeyError, AttributeError) as e:
        message = unknown_override(argv, e)
        if message is None:
            raise
        _fatal(message)
    except flags.Error as e:
        message = config_file_error(e)
        if message is not None:
            _fatal(message)
        _fatal(" | ".join(line.strip() for line in str(e).splitlines() if line.strip()), True)


def _defaults_for(config: ml_collections.ConfigDict, defaults: str) -> str:
    """The training defaults for a config file of the original UDON code (a UDON model_class):
    config_train_udon (its UDON-only fields), else `defaults`."""
    if defaults != "config_train_vit":  # descr_eval and the others never import the models
        return defaults
    from universal_embedding.models import udon as udon_model

    return "config_train_udon" if udon_model.is_udon(str(config.get("model_class"))) else defaults


def _default_config(name: str) -> ml_collections.ConfigDict:
    return importlib.import_module(f"universal_embedding.configs.{name}").get_config()


def print_config_help(flag_values: flags.FlagValues = flags.FLAGS, defaults: str = "") -> None:
    """--helpconfig: the fields of --config (else of the `defaults` config module) on stdout."""
    config = flag_values["config"].value
    if config is not None:
        source = flag_values["config"].config_filename
    elif defaults:
        config, source = _default_config(defaults), f"configs/{defaults}.py, the default config"
    else:
        raise absl_app.UsageError("--helpconfig needs --config=<a get_config() file>.")
    print("\n".join(config_help.help_lines(config, source)), flush=True)


def run(fn: Callable[[ml_collections.ConfigDict, str], object], defaults: str = "") -> None:
    """Define the flags, parse the command line and call fn(config, workdir).

    `defaults`: the program's default config module (fills in a config file of the original
    code, which lacks our fields).
    """
    # --config=config_train_vit.py also finds the packaged config outside the repository.
    argv = locate.resolve_argv(sys.argv)
    # --config.num_training_epochs=7 and other original field names: applied after parsing.
    argv, original = field_translation.split_argv(argv)
    define_flags(argv=argv)

    def _main(argv: list[str]) -> None:
        if flags.FLAGS.helpconfig:
            print_config_help(defaults=defaults)
            return
        config, workdir = config_and_workdir(original_overrides=original, defaults=defaults)
        distributed.maybe_initialize_distributed()
        fn(config, workdir)

    command.run(_main, quiet=True, argv=argv, flags_parser=parse_flags)
