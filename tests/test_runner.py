"""runner.py, the runner of config-driven commands: flags defined only when run, W&B shorthands,
config errors; --helpfull and --verbose on every command; a library that defines no flag when
imported."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib

import pytest
from absl import app as absl_app
from absl import flags

from universal_embedding import commands, runner

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = "universal_embedding/configs/tiny.py"
RUNNER_FLAGS = ("--config", "--workdir", "--use_wandb", "--wandb_project", "--wandb_name")


def parse(argv: list[str]) -> tuple:
    """The runner's flags defined on a fresh FlagValues, `argv` parsed, then config_and_workdir."""
    fv = flags.FlagValues()
    runner.define_flags(fv, ["prog", *argv])
    fv(["prog", *argv])
    return runner.config_and_workdir(fv)


def run_python(args: list[str], timeout: float = 180) -> subprocess.CompletedProcess:
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "TF_CPP_MIN_LOG_LEVEL": "2"}
    return subprocess.run(
        [sys.executable, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout
    )


def test_wandb_flags_set_the_config_wandb_fields():
    config, workdir = parse(
        [f"--config={TINY}:data_dir=/d", "--workdir=W", "--use_wandb", "--wandb_project=p"]
    )
    assert workdir == "W" and config.info_files_dir == "/d/info_files"
    assert config.wandb.to_dict() == {
        "enabled": True,
        "project": "p",
        "group": "",
        "entity": "",
        "name": "",
    }
    config, _ = parse([f"--config={TINY}", "--workdir=W", "--wandb_group=g", "--wandb_entity=e"])
    assert (config.wandb.enabled, config.wandb.group, config.wandb.entity) == (False, "g", "e")
    config, _ = parse(
        [f"--config={TINY}", "--workdir=W", "--config.wandb.enabled=True", "--wandb_name=n"]
    )
    assert (config.wandb.enabled, config.wandb.name) == (True, "n")
    assert runner.wandb_overrides(_defined()) == {}


def _defined() -> flags.FlagValues:
    fv = flags.FlagValues()
    runner.define_flags(fv, ["prog"])
    fv(["prog"])
    return fv


def test_config_and_workdir_are_required():
    with pytest.raises(absl_app.UsageError, match="--config is required"):
        runner.config_and_workdir(_defined())
    with pytest.raises(absl_app.UsageError, match="--workdir is required"):
        parse([f"--config={TINY}"])


def test_unknown_config_key_stops_main_naming_it_and_the_valid_keys(tmp_path):
    workdir = tmp_path / "W"
    out = run_python(
        [
            "-m",
            "universal_embedding.main",
            "--config=universal_embedding/configs/config_train_vit.py:classifier=joint,bogus=1",
            f"--workdir={workdir}",
        ]
    )
    assert out.returncode != 0
    assert "Unknown config argument 'bogus'" in out.stderr
    assert "Valid keys: classifier (default 'separate'), sampling" in out.stderr
    assert not workdir.exists()  # stopped while parsing flags, before any work


def override_error(argv: list[str]) -> Exception:
    """The exception parsing `argv` (the runner's flags on a fresh FlagValues) raises."""
    fv = flags.FlagValues()
    runner.define_flags(fv, ["prog", *argv])
    with pytest.raises((KeyError, AttributeError)) as info:
        fv(["prog", *argv])
    return info.value


def test_an_override_of_a_missing_field_is_named_in_one_line():
    argv = [f"--config={TINY}", "--workdir=W", "--config.model.nosuch.depth=3"]
    assert runner.unknown_override(argv, override_error(argv)) == (
        "--config.model.nosuch.depth=3: the config has no field 'nosuch'."
    )
    train = "universal_embedding/configs/config_train_vit.py"
    argv = [f"--config={train}", "--workdir=W", "--config.checkpoint=True"]
    assert runner.unknown_override(argv, override_error(argv)) == (
        "--config.checkpoint=True: the config has no field 'checkpoint' (did you mean "
        "'checkpoint_steps'?); the original code's 'checkpoint' needs no flag here: "
        "checkpoints are always written."
    )
    argv = [f"--config={TINY}", "--workdir=W", "--config.model.nosuch"]  # boolean form
    assert runner.unknown_override(argv, override_error(argv)) == (
        "--config.model.nosuch: the config has no field 'nosuch'."
    )
    # An error that names no override is not ours to rewrite.
    assert runner.unknown_override(argv, KeyError("'other'")) is None
    assert runner.unknown_override(argv, AttributeError("no quoted name")) is None


def test_main_stops_on_a_missing_field_override_without_a_traceback(tmp_path):
    workdir = tmp_path / "W"
    out = run_python(
        [
            "-m",
            "universal_embedding.main",
            "--config=universal_embedding/configs/config_train_vit.py",
            f"--workdir={workdir}",
            "--config.checkpoint=True",
        ]
    )
    assert out.returncode == 1
    assert "Traceback" not in out.stderr
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith("FATAL Flags parsing error: --config.checkpoint=True: the config has")
    assert not workdir.exists()


# Every command (the pyproject scripts and the top-level converter file): how to run it and
# flags of its own that --helpfull must list.
COMMANDS = {
    "main": (["-m", "universal_embedding.main"], RUNNER_FLAGS),
    "knn_main": (["-m", "universal_embedding.knn_main"], RUNNER_FLAGS),
    "descr_eval": (["-m", "universal_embedding.descr_eval"], RUNNER_FLAGS),
    "extract_dir": (["-m", "universal_embedding.extract_dir_descriptors"], RUNNER_FLAGS),
    "demo": (["-m", "universal_embedding.demo"], ("--workdir", "--dtype", "--data_dir")),
    "prepare": (
        ["-m", "universal_embedding.data.prepare"],
        ("--data_dir", "--domains", "--workers", "--skip_bad_images"),
    ),
    "synthetic": (
        ["-m", "universal_embedding.data.synthetic"],
        ("--data_dir", "--seed", "--scale"),
    ),
    "convert": (["-m", "universal_embedding.convert"], ("--info_file", "--output_file")),
    "converter": (["convert_to_tfrecord_from_file.py"], ("--info_file", "--num_shards", "--train")),
    "export": (["-m", "universal_embedding.export"], ("--workdir", "--checkpoint", "--out")),
    "index": (["-m", "universal_embedding.index"], ("--descriptors", "--index", "--images")),
    "download_models": (
        ["-m", "universal_embedding.download_models"],
        ("--data_dir", "--base_url"),
    ),
}


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_command_takes_verbose_and_lists_its_flags(name):
    """`--verbose --helpfull`: --verbose parses and the help lists it with the command's flags;
    absl prints the help to stdout and exits (status 1, absl's convention)."""
    args, expected = COMMANDS[name]
    out = run_python([*args, "--verbose", "--helpfull"])
    assert out.returncode in (0, 1) and "Traceback" not in out.stderr, out.stderr[-2000:]
    assert "Unknown command line flag" not in out.stderr, out.stderr[-2000:]
    for flag in (*expected, "--verbose", "--flagfile"):
        assert re.search(rf"--(\[no\])?{flag[2:]}:", out.stdout), (name, flag)  # bool: --[no]x


def test_every_pyproject_script_is_a_tested_command():
    """A new command in pyproject.toml gets a row in COMMANDS (so its --verbose is tested)."""
    with open(os.path.join(REPO, "pyproject.toml"), "rb") as f:
        scripts = tomllib.load(f)["project"]["scripts"].values()
    launched = {commands.TARGETS[s.partition(":")[2]] for s in scripts}  # via commands.launch
    tested = {args[1] for args, _ in COMMANDS.values() if args[0] == "-m"}
    assert len(launched) == len(commands.TARGETS) == 11
    assert {t.partition(":")[0] for t in launched} <= tested


IMPORT_ALL = """
import importlib, pkgutil
from absl import flags
# Third-party modules that define absl flags of their own when imported.
import absl.app, absl.logging, jax, flax, orbax.checkpoint, tensorflow, clu.metric_writers
import ml_collections.config_flags
before = set(flags.FLAGS)
import universal_embedding
package = universal_embedding.__path__
names = [m.name for m in pkgutil.walk_packages(package, "universal_embedding.")]
for name in names:
    importlib.import_module(name)
gained = {f: flags.FLAGS.find_module_defining_flag(f) for f in set(flags.FLAGS) - before}
assert not gained, gained
print(len(names))
"""


def test_importing_every_module_defines_no_flag():
    """Flags belong to the programs: importing any module of the package defines none."""
    out = run_python(["-c", IMPORT_ALL], timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    package = os.path.join(REPO, "universal_embedding")
    files = [f for _, _, fs in os.walk(package) for f in fs if f.endswith(".py")]
    assert int(out.stdout.strip()) == len(files) - 1  # every module (the top __init__ aside)


@pytest.mark.parametrize("kind", ["folder", "fifo"])
def test_a_config_that_is_a_folder_or_fifo_is_one_line_and_never_waits(tmp_path, kind):
    path = tmp_path / "cfg"
    if kind == "folder":
        path.mkdir()
    else:
        os.mkfifo(path)
    out = run_python(
        ["-m", "universal_embedding.knn_main", f"--config={path}", f"--workdir={tmp_path / 'w'}"],
        timeout=60,  # reading a FIFO would block until killed here
    )
    assert out.returncode == 1 and "Traceback" not in out.stderr, out.stderr[-2000:]
    assert f"{path} is {'a folder' if kind == 'folder' else 'not a regular file'}" in out.stderr
    assert not (tmp_path / "w").exists()


def test_export_out_naming_a_file_is_one_line(tmp_path):
    target = tmp_path / "afile"
    target.write_text("x")
    out = run_python(
        ["-m", "universal_embedding.export", f"--workdir={tmp_path}", f"--out={target}"], 60
    )
    assert out.returncode == 1 and "Traceback" not in out.stderr, out.stderr[-2000:]
    last = out.stderr.strip().splitlines()[-1]
    assert "is a file; give a folder (new or existing)." in last
    assert target.read_text() == "x"
