"""The pip package: dependency ranges admit the pins, console scripts exist, configs by name;
the light `serve` install (slow: a fresh venv) embeds without TensorFlow or JAX."""

from __future__ import annotations

import importlib
import os
import pathlib
import subprocess
import sys
import tomllib

import pytest
from packaging.requirements import Requirement

from universal_embedding.configs import _locate as locate

REPO = pathlib.Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
SCRIPTS = ("ue-train", "ue-knn", "ue-descr-eval", "ue-extract-dir", "ue-convert", "ue-prepare",
           "ue-export", "ue-index", "ue-synthetic", "ue-demo", "ue-download-models")  # fmt: skip


EXTRAS = PYPROJECT["optional-dependencies"]


def _pins(file: str = "requirements.txt") -> dict[str, str]:
    pins = {}
    for line in (REPO / file).read_text().splitlines():
        line = line.split("#")[0].strip()
        if "==" in line:
            name, version = line.split("==")
            pins[name.split("[")[0].lower()] = version
    return pins


def _requirements(*extras: str) -> list[Requirement]:
    """The base dependencies and those of `extras` (self-references left out)."""
    specs = PYPROJECT["dependencies"] + [s for e in extras for s in EXTRAS[e]]
    return [r for r in map(Requirement, specs) if r.name != "universal_embedding"]


def test_runtime_ranges_admit_every_pin():
    """requirements.txt pins exactly the base + `train` dependencies, inside their ranges."""
    pins = _pins()
    reqs = _requirements("train")
    here = [r for r in reqs if r.marker is None or r.marker.evaluate()]
    names = {r.name.lower() for r in here}
    assert names == set(pins), names ^ set(pins)  # every pin declared, nothing unpinned
    for r in here:
        assert r.specifier.contains(pins[r.name.lower()]), (r, pins[r.name.lower()])


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"sys_platform": "linux", "platform_machine": "x86_64"}, "tensorflow-cpu"),
        ({"sys_platform": "linux", "platform_machine": "aarch64"}, "tensorflow"),
        ({"sys_platform": "darwin", "platform_machine": "arm64"}, "tensorflow"),
        ({"sys_platform": "win32", "platform_machine": "AMD64"}, "tensorflow-cpu"),
    ],
)
def test_tensorflow_cpu_only_where_it_has_wheels(env, expected):
    reqs = _requirements("train")
    chosen = [r.name for r in reqs if r.name.startswith("tensorflow") and r.marker is not None
              and r.marker.evaluate(env)]  # fmt: skip
    assert chosen == [expected]


def test_serve_and_onnx_extras_admit_their_pins_and_leave_out_tensorflow_and_jax():
    pins = _pins("requirements-onnx.txt")
    assert EXTRAS["onnx"][0] == "universal_embedding[serve]"
    light = _requirements("serve", "onnx")
    for r in light:
        assert r.name.lower() in ("numpy", "pillow") or r.specifier.contains(pins[r.name]), r
    assert {r.name.lower() for r in light} == {"numpy", "pillow", "onnxruntime", "simplejpeg",
                                               "onnx", "onnx-ir"}  # fmt: skip
    assert _pins("requirements-nodeps.txt") == {"jax2onnx": "0.17.1"}


def test_python_and_extras():
    assert PYPROJECT["requires-python"] == ">=3.11"
    assert set(EXTRAS) == {"train", "serve", "onnx", "cuda12", "cuda13", "tpu", "test", "wandb"}
    test_pins = {}
    for line in (REPO / "requirements-test.txt").read_text().splitlines():
        if "==" in line:
            name, version = line.split("==")
            test_pins[name.lower()] = version
    for spec in PYPROJECT["optional-dependencies"]["test"]:
        r = Requirement(spec)
        assert r.specifier.contains(test_pins[r.name.lower()]), r


@pytest.mark.parametrize("script", SCRIPTS)
def test_console_scripts_point_at_callables(script):
    module, func = PYPROJECT["scripts"][script].split(":")
    assert callable(getattr(importlib.import_module(module), func))


def test_packaged_configs_are_found_by_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    packaged = os.path.join(locate.CONFIG_DIR, "config_train_vit.py")
    assert locate.resolve("config_train_vit.py") == packaged
    assert locate.resolve("universal_embedding/configs/tiny.py:data_dir=/d") == (
        os.path.join(locate.CONFIG_DIR, "tiny.py") + ":data_dir=/d"
    )
    assert locate.resolve("tiny") == os.path.join(locate.CONFIG_DIR, "tiny.py")
    assert locate.resolve("nope.py") == "nope.py"  # left for ml_collections to report
    assert locate.resolve("_locate.py") == "_locate.py"  # helper modules are not configs
    assert "_locate.py" not in locate.available() and "tiny.py" in locate.available()
    (tmp_path / "tiny.py").write_text("")
    assert locate.resolve("tiny.py") == "tiny.py"  # an existing file wins
    argv = ["prog", "--config", "demo.py", "--config=config_knn_vit.py:variant=S/16", "-x"]
    assert locate.resolve_argv(argv) == [
        "prog", "--config", os.path.join(locate.CONFIG_DIR, "demo.py"),
        "--config=" + os.path.join(locate.CONFIG_DIR, "config_knn_vit.py") + ":variant=S/16",
        "-x",
    ]  # fmt: skip


def test_packaged_config_used_outside_the_repository(tmp_path):
    """`--config=config_knn_descr_eval.py` from another folder loads the packaged config."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "JAX_PLATFORMS": "cpu"}
    proc = subprocess.run(
        [sys.executable, "-m", "universal_embedding.descr_eval",
         "--config=config_knn_descr_eval.py", "--workdir=w", "--config.descr_path=missing.npz"],
        capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300,
    )  # fmt: skip
    assert proc.returncode != 0
    assert "missing.npz" in proc.stderr and "does not exist" in proc.stderr, proc.stderr[-2000:]


@pytest.mark.skipif(
    not os.environ.get("UE_SLOW_TESTS"),
    reason="slow (a fresh venv installs every dependency from the index, ~15 min): "
    "set UE_SLOW_TESTS=1",
)
def test_pip_install_into_a_fresh_venv(tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=600)
    pip = subprocess.run([str(venv / "bin" / "pip"), "install", f"{REPO}[train]"],
                         capture_output=True, text=True, timeout=3600)  # fmt: skip
    assert pip.returncode == 0, pip.stdout[-3000:] + pip.stderr[-3000:]
    for name in ("jax", "flax", "faiss-cpu", "safetensors", "universal_embedding"):
        assert subprocess.run([str(venv / "bin" / "pip"), "show", name]).returncode == 0, name
    for script in SCRIPTS:  # absl prints the help and exits with status 1, as for any --help
        out = subprocess.run([str(venv / "bin" / script), "--helpfull"], capture_output=True,
                             text=True, cwd=tmp_path, timeout=600)  # fmt: skip
        text = out.stdout + out.stderr
        assert out.returncode == 1 and "USAGE:" in text and "Traceback" not in text, (script, text)
        if script in ("ue-train", "ue-knn", "ue-descr-eval", "ue-extract-dir"):
            assert "--config" in text and "--workdir" in text, script
