"""One run per output: a lock file beside OUT naming the holder's pid and host.

``segkit convert``, ``augment`` and ``anonymize`` write OUT through a
temporary (and, for resumable runs, fixed-name) folder beside it; two runs into
the same OUT would clash over it.  :func:`run_lock` takes ``.<OUT name>.lock``
in OUT's parent before anything else is done:

* the lock file is created atomically, complete (written under a temporary
  name, then hard-linked to its final name, which fails if it exists), and
  holds JSON ``{"pid", "host", "start", "command", "since"}`` — ``start`` is
  the process's start time from ``/proc`` so a recycled pid is not mistaken
  for the holder;
* a second run finds it and is refused at once with :class:`RunLockedError`
  naming the holder's pid and host;
* a lock whose holder is dead (same host, no such pid, or a pid with another
  start time) is *stale*: it is taken over, with a log line.  A lock of another
  host cannot be checked from here; the error says how to remove it by hand;
* the lock is removed when the run ends (success, error or Ctrl-C).  A run
  killed with SIGKILL leaves it behind — it is then stale and the next run
  takes it over, so the only files a killed run leaves are its resumable
  journal and this lock.
"""

from __future__ import annotations

import functools
import inspect
import json
import logging
import os
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from segkit.errors import SegkitError

__all__ = ["RunLockedError", "run_lock", "locks_output", "lock_path", "read_lock"]

log = logging.getLogger(__name__)


class RunLockedError(SegkitError):
    """Another live run holds the output."""


def lock_path(out: str | os.PathLike[str]) -> Path:
    """The lock file of an output path: ``.<name>.lock`` beside it."""
    out = Path(out)
    return out.with_name(f".{out.name}.lock")


def _start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (Linux ``/proc``), or ``None``."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]  # field 22; the command name may hold spaces and ')'


def _alive(pid: int, start: str | None) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # someone else's process: it exists
    if start is not None:
        now = _start_time(pid)
        if now is not None and now != start:
            return False  # the pid was recycled
    return True


def read_lock(path: str | os.PathLike[str]) -> dict | None:
    """The holder recorded in a lock file, or ``None`` if there is none (or it is unreadable)."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _create(path: Path, record: dict) -> bool:
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(record, sort_keys=True), encoding="utf-8")
    try:
        os.link(tmp, path)  # atomic, fails if the lock exists; the lock is never seen half-written
        return True
    except FileExistsError:
        return False
    finally:
        tmp.unlink(missing_ok=True)


@contextmanager
def run_lock(out: str | os.PathLike[str], command: str) -> Iterator[Path]:
    """Hold the lock of ``out`` for the duration of a run.

    Parameters
    ----------
    out:
        The run's output path (file or folder); its parent is created if needed
        (and removed again at the end if it is still empty).
    command:
        The command's name, recorded in the lock.

    Raises
    ------
    RunLockedError
        If a live run (or a run on another host) holds ``out``.
    """
    path = lock_path(out)
    created = [d for d in [path.parent, *path.parent.parents] if not d.exists()]
    path.parent.mkdir(parents=True, exist_ok=True)
    host = socket.gethostname()
    record = {"pid": os.getpid(), "host": host, "start": _start_time(os.getpid()), "command": command,
              "since": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    for _ in range(5):
        if _create(path, record):
            break
        holder = read_lock(path)
        if holder is None:  # vanished meanwhile, or not ours to read: try again, then give up
            time.sleep(0.05)
            continue
        pid, where = int(holder.get("pid", -1)), str(holder.get("host", "?"))
        if where == host and not _alive(pid, holder.get("start")):
            log.info("taking over the stale lock of %s (pid %d on %s is gone)", out, pid, where)
            stale = path.with_name(f"{path.name}.stale-{os.getpid()}")
            try:
                os.replace(path, stale)  # one taker wins; the others find the new lock
                stale.unlink(missing_ok=True)
            except FileNotFoundError:
                pass
            continue
        hint = "" if where == host else f" (if that run is dead, delete {path})"
        raise RunLockedError(str(out), f"is being written by another {holder.get('command', 'segkit')} run "
                                       f"(pid {pid} on {where}, since {holder.get('since', '?')}){hint}")
    else:
        raise RunLockedError(str(out), f"cannot take its lock file {path}")
    try:
        yield path
    finally:
        if (read_lock(path) or {}).get("pid") == os.getpid():
            path.unlink(missing_ok=True)
        for folder in created:  # a run that wrote nothing leaves no empty folders either
            try:
                folder.rmdir()
            except OSError:
                break


def locks_output(parameter: str, command: str) -> Callable[[Callable], Callable]:
    """Decorate a command's library function so it holds :func:`run_lock` on its ``parameter`` argument.

    >>> @locks_output("dst", "augment")          # doctest: +SKIP
    ... def augment_store(src, dst, ...): ...
    """
    def decorate(fn: Callable) -> Callable:
        signature = inspect.signature(fn)

        @functools.wraps(fn)
        def locked(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202 - the wrapped function's own
            out = signature.bind(*args, **kwargs).arguments[parameter]
            with run_lock(out, command):
                return fn(*args, **kwargs)

        return locked

    return decorate
