"""--helpconfig (config_help.py): every field of every config file listed with its type, default
and the config files' own description; config-file errors in one line."""

from __future__ import annotations

import importlib
import os
import re
import subprocess
import sys

import ml_collections
import pytest

from universal_embedding import config_help
from universal_embedding.configs import _locate

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LINE = re.compile(r"^  (\S+) \(([^,]+), default (.*)\): (.+)$")


def flat_keys(config: ml_collections.ConfigDict, prefix: str = "") -> set[str]:
    """Dotted names of the config's leaves, from its dict form."""
    out = set()
    for key, value in config.to_dict().items():
        if isinstance(value, dict):
            out |= flat_keys(ml_collections.ConfigDict(value), f"{prefix}{key}.")
        else:
            out.add(f"{prefix}{key}")
    return out


def listed(lines: list[str]) -> dict[str, tuple[str, str, str]]:
    """{name: (type, default, description)} of help_lines' field lines."""
    out = {}
    for line in lines[1:]:
        match = LINE.match(line)
        assert match, line
        out[match.group(1)] = match.group(2, 3, 4)
    return out


@pytest.mark.parametrize("name", _locate.available())
def test_every_field_of_every_config_file_is_listed_with_a_description(name):
    config = importlib.import_module(f"universal_embedding.configs.{name[:-3]}").get_config()
    fields = listed(config_help.help_lines(config, name))
    assert set(fields) == flat_keys(config)
    missing = [f for f, (_, _, text) in fields.items() if text == "(no description)"]
    assert missing == []


def test_comments_give_descriptions_trailing_first_then_the_lines_above():
    source = (
        "def get_config():\n"
        "    c = ml_collections.ConfigDict()\n"
        "    # ---- data ----\n"
        "    c.a = 1  # the a\n"
        "    # first line\n"
        "    # second line\n"
        "    c.b = (\n"
        "        2\n"
        "    )\n"
        "    c.m.x, c.m.y = 3, 4  # both\n"
        "    c.n = 5\n"
        "\n"
        "    c.z = 6  # last\n"
    )
    assert config_help.field_comments(source) == {
        "a": "the a",
        "b": "first line second line",
        "m.x": "both",
        "m.y": "both",
        "z": "last",
    }


def test_types_defaults_and_a_nested_field_described_by_its_parent():
    c = ml_collections.ConfigDict()
    c.n = ml_collections.FieldReference(None, field_type=int)
    c.t = ml_collections.ConfigDict({"teacher": 0.1})
    c.s = "x"
    assert list(config_help.leaves(c)) == [
        ("n", "int | None"),
        ("s", "str"),
        ("t.teacher", "float"),
    ]
    assert config_help.describe("t.teacher", {"t": "temperatures"}) == "temperatures"
    base = importlib.import_module("universal_embedding.configs.base").get_config()
    fields = listed(config_help.help_lines(base))
    assert fields["model.num_layers"] == ("int | None", "None", "encoder blocks")
    assert fields["batch_size"] == ("int", "128", "training batch, global, one domain per batch")


def run_python(args: list[str]) -> subprocess.CompletedProcess:
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    return subprocess.run(
        [sys.executable, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=180
    )


def test_helpconfig_lists_the_given_config_and_the_commands_default():
    out = run_python(["-m", "universal_embedding.main", "--config=tiny.py", "--helpconfig"])
    assert out.returncode == 0, out.stderr[-2000:]
    tiny = importlib.import_module("universal_embedding.configs.tiny").get_config()
    lines = out.stdout.strip().splitlines()
    assert lines[0].startswith("Fields of ") and "tiny.py" in lines[0]
    fields = listed(lines)
    assert set(fields) == flat_keys(tiny)
    assert fields["num_training_steps"][:2] == ("int", "6")  # tiny's value, not base's
    out = run_python(["-m", "universal_embedding.descr_eval", "--helpconfig"])  # no --config
    assert out.returncode == 0, out.stderr[-2000:]
    lines = out.stdout.strip().splitlines()
    assert "config_knn_descr_eval.py, the default config" in lines[0]
    default = importlib.import_module("universal_embedding.configs.config_knn_descr_eval")
    assert set(listed(lines)) == flat_keys(default.get_config())


def test_an_unknown_key_of_the_argument_string_is_one_line(tmp_path):
    config = "universal_embedding/configs/tiny.py:data_dir=D,foo=1"
    workdir = tmp_path / "W"
    out = run_python(
        ["-m", "universal_embedding.main", f"--config={config}", f"--workdir={workdir}"]
    )
    assert out.returncode == 1
    assert out.stderr.strip().splitlines() == [
        f"FATAL Flags parsing error: flag --config={config}: Unknown config argument 'foo'. "
        "Valid keys: data_dir (default 'demo_work/data'), backbone (default 'vit')."
    ]
    assert not workdir.exists()
