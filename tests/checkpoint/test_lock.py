"""One run per workdir: train.lock refuses a second live run, replaces a dead run's lock."""

import json
import os
import socket
import subprocess

import pytest

from universal_embedding.checkpoint import lock


def _write_lock(workdir, pid, host=None):
    os.makedirs(workdir, exist_ok=True)
    with open(lock.lock_path(workdir), "w") as f:
        json.dump({"pid": pid, "host": host or socket.gethostname(), "started": 0}, f)


@pytest.fixture
def live_pid():
    proc = subprocess.Popen(["sleep", "60"])
    yield proc.pid
    proc.kill()
    proc.wait()


def test_lock_is_taken_and_released(tmp_path):
    with lock.WorkdirLock(str(tmp_path)):
        with open(lock.lock_path(str(tmp_path))) as f:
            owner = json.load(f)
        assert (owner["pid"], owner["host"]) == (os.getpid(), socket.gethostname())
        with pytest.raises(lock.WorkdirLocked):  # the same process cannot take it twice
            lock.acquire(str(tmp_path))
    assert not os.path.exists(lock.lock_path(str(tmp_path)))


def test_live_owner_refuses_with_one_line(tmp_path, live_pid):
    _write_lock(str(tmp_path), live_pid)
    with pytest.raises(lock.WorkdirLocked) as e:
        lock.acquire(str(tmp_path))
    msg = str(e.value)
    assert "\n" not in msg and f"in use by pid {live_pid} on {socket.gethostname()}" in msg
    assert "another --workdir" in msg
    with open(lock.lock_path(str(tmp_path))) as f:
        assert json.load(f)["pid"] == live_pid  # left alone


def test_owner_on_another_host_cannot_be_checked_so_refuses(tmp_path):
    _write_lock(str(tmp_path), 1, host="some-other-host")
    with pytest.raises(lock.WorkdirLocked, match="pid 1 on some-other-host"):
        lock.acquire(str(tmp_path))


def test_dead_owner_lock_is_replaced(tmp_path):
    proc = subprocess.Popen(["true"])
    proc.wait()
    _write_lock(str(tmp_path), proc.pid)
    with lock.WorkdirLock(str(tmp_path)):
        with open(lock.lock_path(str(tmp_path))) as f:
            assert json.load(f)["pid"] == os.getpid()
    assert not os.path.exists(lock.lock_path(str(tmp_path)))


def test_own_pid_from_a_previous_life_is_stale(tmp_path):
    _write_lock(str(tmp_path), os.getpid())  # e.g. the same pid in a restarted container
    path = lock.acquire(str(tmp_path))
    lock.release(path)
    assert not os.path.exists(path)
