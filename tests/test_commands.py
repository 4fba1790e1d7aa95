"""The console scripts' launcher: a missing `train` extra is one line, not a traceback."""

from __future__ import annotations

import importlib
import tomllib
from pathlib import Path

import pytest

from universal_embedding import commands

REPO = Path(__file__).resolve().parents[1]


def test_every_console_script_is_a_launcher_of_an_existing_command():
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    for script, target in scripts.items():
        module, function = target.split(":")
        assert module == "universal_embedding.commands", script
        assert callable(getattr(commands, function)), script
        real_module, real_function = commands.TARGETS[function].split(":")
        assert callable(getattr(importlib.import_module(real_module), real_function)), script


def test_a_missing_train_package_is_one_line(monkeypatch, capsys):
    def fake_import(name):
        raise ModuleNotFoundError("No module named 'jax'", name="jax")

    monkeypatch.setattr(commands.importlib, "import_module", fake_import)
    with pytest.raises(SystemExit) as e:
        commands.knn()
    assert e.value.code == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "needs 'jax'" in err and "pip install 'universal_embedding[train]'" in err


def test_another_missing_module_is_not_hidden(monkeypatch):
    def fake_import(name):
        raise ModuleNotFoundError("No module named 'universal_embedding.nope'", name="nope")

    monkeypatch.setattr(commands.importlib, "import_module", fake_import)
    with pytest.raises(ModuleNotFoundError, match="nope"):
        commands.launch("index")


def test_a_launcher_runs_its_command(monkeypatch):
    ran = []
    fake = type("M", (), {"cli": staticmethod(lambda: ran.append(True))})
    monkeypatch.setattr(commands.importlib, "import_module", lambda name: fake)
    commands.demo()
    assert ran == [True]
