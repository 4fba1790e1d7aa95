"""User errors end a program with one line on stderr and exit code 1; --verbose shows more."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from universal_embedding import errors


def test_one_line_folds_lines_names_the_type_and_cuts_long_messages():
    e = ValueError("weights.npz: 2 missing tensors:\n  a/kernel\n  b/bias\n")
    assert errors.one_line(e) == (
        "error (ValueError): weights.npz: 2 missing tensors: | a/kernel | b/bias "
        "[--verbose for the traceback]"
    )
    assert "missing key 'lr'" in errors.one_line(KeyError("lr"))
    long = errors.one_line(FileNotFoundError("x" * 5000))
    assert "\n" not in long and long.count("x") == errors.MAX_CHARS - 3


def test_wrapped_main_exits_1_with_one_line(capsys, monkeypatch):
    monkeypatch.delenv("UE_VERBOSE", raising=False)

    def main(argv):
        raise FileNotFoundError("/data/info_files/cars/test.json not found: run prepare first")

    with pytest.raises(SystemExit) as e:
        errors.one_line_errors(main)(["prog"])
    assert e.value.code == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cars/test.json not found" in err


def test_verbose_env_keeps_the_traceback(monkeypatch):
    monkeypatch.setenv("UE_VERBOSE", "1")

    def main(argv):
        raise ValueError("bad")

    with pytest.raises(ValueError, match="bad"):
        errors.one_line_errors(main)(["prog"])


def test_program_errors_are_one_line(tmp_path):
    """descr_eval on a file that is not there: exit 1, one 'error' line, no traceback."""
    env = {k: v for k, v in os.environ.items() if k != "UE_VERBOSE"}
    cmd = [
        sys.executable,
        "-m",
        "universal_embedding.descr_eval",
        "--config=universal_embedding/configs/config_knn_descr_eval.py",
        f"--workdir={tmp_path}",
        f"--config.descr_path={tmp_path / 'missing.npz'}",
    ]
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=root, env=env, timeout=300)
    assert out.returncode == 1
    lines = [line for line in out.stderr.splitlines() if line.startswith("error (")]
    assert len(lines) == 1 and "missing.npz" in lines[0], out.stderr
    assert "Traceback" not in out.stderr
    verbose = subprocess.run(cmd + ["--verbose"], capture_output=True, text=True, cwd=root,
                             env=env, timeout=300)  # fmt: skip
    assert verbose.returncode != 0 and "Traceback" in verbose.stderr
