"""provenance.git_commit: filled when run from a checkout, also for a package installed from it
(`make demo` wrote null), and when git itself is missing or refuses the folder."""

from __future__ import annotations

import os
import subprocess

import pytest

from universal_embedding.writers import provenance

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SHA = "0123456789abcdef0123456789abcdef01234567"


def git_head() -> str:
    return subprocess.run(
        ["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=REPO, check=True
    ).stdout.strip()


@pytest.fixture(autouse=True)
def fresh_cache():
    provenance._commit_of.cache_clear()
    yield
    provenance._commit_of.cache_clear()


def test_a_package_installed_elsewhere_run_in_the_checkout_reports_its_commit(
    tmp_path, monkeypatch
):
    installed = tmp_path / "site-packages"  # no .git above the package's files
    installed.mkdir()
    monkeypatch.chdir(os.path.join(REPO, "docs"))  # anywhere inside the checkout
    assert provenance.git_commit(str(installed)).removesuffix("-dirty") == git_head()
    monkeypatch.chdir(tmp_path)  # outside any checkout: nothing to report
    assert provenance.git_commit(str(installed)) is None


def test_without_git_the_commit_is_read_from_the_git_files(monkeypatch):
    def no_git(*args, **kwargs):
        raise OSError("git: not found")

    head = git_head()
    monkeypatch.setattr(provenance.subprocess, "run", no_git)
    assert provenance.git_commit(REPO) == head  # this checkout (a worktree or a clone)


@pytest.mark.parametrize(
    "files",
    [
        {"HEAD": "ref: refs/heads/main\n", "refs/heads/main": SHA + "\n"},
        {"HEAD": "ref: refs/heads/main\n", "packed-refs": f"# pack-refs\n{SHA} refs/heads/main\n"},
        {"HEAD": SHA + "\n"},  # detached
    ],
)
def test_read_head_follows_loose_packed_and_detached_refs(tmp_path, files):
    for name, text in files.items():
        path = tmp_path / ".git" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    assert provenance.read_head(str(tmp_path)) == SHA


def test_read_head_of_a_worktree_uses_the_common_refs(tmp_path):
    common = tmp_path / "main" / ".git"
    own = common / "worktrees" / "wt"
    own.mkdir(parents=True)
    (own / "HEAD").write_text("ref: refs/heads/wt\n")
    (own / "commondir").write_text("../..\n")
    (common / "refs" / "heads").mkdir(parents=True)
    (common / "refs" / "heads" / "wt").write_text(SHA + "\n")
    (tmp_path / "wt").mkdir()
    (tmp_path / "wt" / ".git").write_text(f"gitdir: {own}\n")
    assert provenance.read_head(str(tmp_path / "wt")) == SHA
    (own / "HEAD").write_text("not a ref\n")
    assert provenance.read_head(str(tmp_path / "wt")) is None
