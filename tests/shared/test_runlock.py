"""segkit.runlock: one live run per output; stale locks (dead holder on this host) are taken over."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest

from segkit.convert.run import convert
from segkit.runlock import RunLockedError, lock_path, locks_output, read_lock, run_lock


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_a_second_run_into_a_held_output_is_refused_naming_pid_and_host(synth_cohort, tmp_path):
    out = tmp_path / "s.zarr"
    with run_lock(out, "convert") as path:
        assert path == tmp_path / ".s.zarr.lock"
        holder = read_lock(path)
        assert holder["pid"] == os.getpid() and holder["host"] == socket.gethostname()
        with pytest.raises(RunLockedError, match=rf"s\.zarr: is being written by another convert run "
                                                 rf"\(pid {os.getpid()} on {socket.gethostname()}, since "):
            convert(synth_cohort, out)
        assert sorted(p.name for p in tmp_path.iterdir()) == [".s.zarr.lock"]
    assert list(tmp_path.iterdir()) == []  # released


def test_a_live_run_in_another_process_is_refused(tmp_path):
    out = tmp_path / "out.zarr"
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from segkit.runlock import run_lock\n"
        f"with run_lock({str(out)!r}, 'augment'):\n    print('held', flush=True); time.sleep(60)")],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(RunLockedError, match=rf"another augment run \(pid {holder.pid} on "):
            with run_lock(out, "convert"):
                pass
    finally:
        holder.kill()
        holder.wait()
    with run_lock(out, "convert"):  # its holder is dead now: the stale lock is taken over
        assert read_lock(lock_path(out))["pid"] == os.getpid()


def test_a_stale_lock_is_taken_over_and_a_recycled_pid_is_not_a_holder(tmp_path):
    out = tmp_path / "s.zarr"
    host = socket.gethostname()
    for holder in ({"pid": _dead_pid(), "host": host},
                   {"pid": os.getppid(), "host": host, "start": "1"}):  # a live pid, but not the process that locked
        lock_path(out).write_text(json.dumps({**holder, "command": "convert", "since": "then"}))
        with run_lock(out, "convert"):
            assert read_lock(lock_path(out))["pid"] == os.getpid()
        assert not lock_path(out).exists()


def test_a_lock_from_another_host_is_refused_with_how_to_clear_it(tmp_path):
    out = tmp_path / "s.zarr"
    lock_path(out).write_text(json.dumps({"pid": 1, "host": "elsewhere", "command": "anonymize", "since": "x"}))
    with pytest.raises(RunLockedError, match=r"another anonymize run \(pid 1 on elsewhere, since x\) \(if that run is "
                                             r"dead, delete .*\.s\.zarr\.lock\)"):
        with run_lock(out, "convert"):
            pass


def test_locks_output_decorates_a_library_function(tmp_path):
    @locks_output("dst", "augment")
    def work(src, dst, *, n=1):  # noqa: ANN001, ANN202
        return read_lock(lock_path(dst))["command"], n

    assert work("in", tmp_path / "o.zarr", n=np.int64(3)) == ("augment", 3)
    assert not lock_path(tmp_path / "o.zarr").exists()


def test_a_second_anonymize_into_a_held_output_is_refused_and_writes_nothing(synth_cohort, tmp_path):
    from segkit.deid import anonymize_tree

    out = tmp_path / "clean"
    with run_lock(out, "anonymize"):
        with pytest.raises(RunLockedError, match=rf"clean: is being written by another anonymize run "
                                                 rf"\(pid {os.getpid()} on "):
            anonymize_tree(synth_cohort, out, b"\x07" * 32, workers=1)
        assert sorted(p.name for p in tmp_path.iterdir()) == [".clean.lock"]
