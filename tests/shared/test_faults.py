"""Faults: a run killed with SIGKILL leaves no process and no file beyond its resumable journal (and its
now-stale lock, which the next run takes over); the rerun ends with the same bytes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from segkit.store.format import store_digest
from segkit.store.reader import open_store

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads process trees from /proc")

SEGKIT = str(Path(sys.executable).with_name("segkit"))


def _descendants(pid: int) -> set[int]:
    """Every live (not zombie) descendant of ``pid``, from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if fields[0] != "Z":
                children.setdefault(int(fields[1]), []).append(int(entry.name))
    out, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.add(child)
            todo.append(child)
    return out


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _wait_for(condition, what: str, proc: subprocess.Popen, patience: float = 120.0) -> None:  # noqa: ANN001
    deadline = time.monotonic() + patience  # a guard against hanging, not a speed requirement
    while not condition():
        if proc.poll() is not None:
            pytest.fail(f"the run ended (exit {proc.returncode}) before {what}")
        if time.monotonic() > deadline:
            pytest.fail(f"gave up waiting for {what}")
        time.sleep(0.01)


def _kill_and_check(proc: subprocess.Popen, out: Path) -> set[int]:
    family = _descendants(proc.pid)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    deadline = time.monotonic() + 60
    while any(_alive(p) for p in family) and time.monotonic() < deadline:
        time.sleep(0.05)
    survivors = {p for p in family if _alive(p)}
    assert survivors == set(), f"processes outlived their killed parent: {sorted(survivors)}"
    assert sorted(p.name for p in out.parent.iterdir()) == [f".{out.name}.lock", f".{out.name}.partial"]
    return family


def _small_store(tmp_path: Path) -> Path:
    from segkit.convert.plan import ConvertOptions
    from segkit.convert.run import convert
    from segkit.synth import SynthConfig, write_cohort

    write_cohort(tmp_path / "cohort", SynthConfig(patients=4, slices=64, size=96, seed=2))
    convert(tmp_path / "cohort", tmp_path / "ref.zarr", ConvertOptions(val_patients=1, test_patients=1))
    return tmp_path / "cohort"


def test_killed_convert_leaves_only_its_journal_and_resumes_to_the_same_bytes(tmp_path):
    cohort = _small_store(tmp_path)
    out = tmp_path / "run" / "s.zarr"
    cmd = [SEGKIT, "convert", str(cohort), str(out), "--workers", "2", "--val-patients", "1", "--test-patients", "1"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    journal = out.parent / f".{out.name}.partial" / "segkit-resume.json"
    _wait_for(journal.exists, "the first shard was journalled", proc)
    _kill_and_check(proc, out)
    done = subprocess.run(cmd, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "resuming an interrupted run" in done.stderr
    assert sorted(p.name for p in out.parent.iterdir()) == ["s.zarr"]
    assert store_digest(out) == store_digest(tmp_path / "ref.zarr")


def test_killed_augment_takes_its_worker_pool_with_it(tmp_path):
    _small_store(tmp_path)
    out = tmp_path / "run" / "aug.zarr"
    cmd = [SEGKIT, "augment", str(tmp_path / "ref.zarr"), str(out), "--target", "20000", "--workers", "2"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    partial = out.parent / f".{out.name}.partial"
    _wait_for(lambda: len(_descendants(proc.pid)) >= 2 and (partial / "segkit-resume.json").exists(),
              "the workers started and a shard was journalled", proc)
    family = _kill_and_check(proc, out)
    assert len(family) >= 2  # the pool's workers (and multiprocessing's resource tracker) were there, and are gone
    assert open_store(tmp_path / "ref.zarr")  # the input is untouched


def test_killed_convert_on_a_local_dask_cluster_takes_its_worker_processes_with_it(tmp_path):
    pytest.importorskip("distributed", reason="the 'dask' extra runs convert on Dask")
    cohort = _small_store(tmp_path)
    out = tmp_path / "run" / "s.zarr"
    cmd = [SEGKIT, "convert", str(cohort), str(out), "--dask", "local:2", "--val-patients", "1", "--test-patients", "1"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    journal = out.parent / f".{out.name}.partial" / "segkit-resume.json"
    _wait_for(lambda: journal.exists() and len(_descendants(proc.pid)) >= 2, "the cluster converted a shard", proc)
    family = _kill_and_check(proc, out)
    assert len(family) >= 2  # the cluster's worker processes were there, and are gone


_LATE_WORKER = '''
import multiprocessing, os, sys, time

def late_worker(flag):
    # a worker still starting up (importing its task's modules) when its parent is killed
    while multiprocessing.parent_process().pid == os.getppid():
        time.sleep(0.01)
    from segkit.workers import die_with_parent
    die_with_parent()  # must notice that the parent is already gone
    open(flag, "w").write("survived")
    time.sleep(60)

if __name__ == "__main__":
    child = multiprocessing.get_context(sys.argv[2]).Process(target=late_worker, args=(sys.argv[1],))
    child.start()
    print(child.pid, flush=True)
    time.sleep(60)
'''


@pytest.mark.parametrize("method", ["spawn", "fork"])
def test_a_worker_whose_parent_died_while_it_started_exits(tmp_path, method):
    script = tmp_path / "parent.py"
    script.write_text(_LATE_WORKER)
    flag = tmp_path / "survived"
    proc = subprocess.Popen([sys.executable, str(script), str(flag), method], stdout=subprocess.PIPE, text=True)
    child = int(proc.stdout.readline())
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    deadline = time.monotonic() + 60
    while _alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    alive = _alive(child)
    if alive:
        os.kill(child, signal.SIGKILL)
    assert not alive, "the worker outlived its parent"
    assert not flag.exists()
