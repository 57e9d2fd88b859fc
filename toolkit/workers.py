"""Worker pools that die with their parent, and one ordered map over them — local or on Dask.

:func:`ordered_map` runs a picklable function over jobs and yields the results
**in job order**, with a bounded number of jobs in flight (so memory stays
bounded by a few results whatever the number of jobs):

* ``workers <= 1``: in this process;
* ``workers > 1``: a ``spawn`` :class:`~concurrent.futures.ProcessPoolExecutor`
  whose workers call :func:`die_with_parent` first — or, with ``threads=True``,
  a thread pool (for work that releases the GIL: file reads, hashing, numpy,
  Blosc; threads cannot outlive the process);
* ``dask="tcp://host:8786"`` (or ``"local"``, ``"local:N"``): a
  ``dask.distributed`` cluster — an existing scheduler, or a LocalCluster of N
  worker processes started for the run (``pip install segkit[dask]``).

Commands use it as ``for result in ordered_map(fn, jobs, workers=…, dask=…)``;
the output cannot depend on where a job ran, because results are consumed in
job order.

Dying with the parent
---------------------
A pool worker blocks on its task queue and would outlive a parent killed with
SIGKILL (no Python code of the parent runs then).  :func:`die_with_parent`
asks Linux to send the worker SIGKILL when its parent dies
(``prctl(PR_SET_PDEATHSIG)`` through ctypes) and, as a fallback where prctl is
missing, starts a daemon thread that exits the worker as soon as its parent's
pid changes (or the multiprocessing parent sentinel closes).
"""

from __future__ import annotations

import ctypes
import logging
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from typing import Any, TypeVar

from segkit.errors import MissingExtraError, UsageError

__all__ = ["die_with_parent", "process_pool", "ordered_map", "parse_dask_address", "dask_client"]

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")

_PR_SET_PDEATHSIG = 1


def die_with_parent(parent_pid: int | None = None) -> None:
    """Make this process exit when its parent does (SIGKILL of the parent included).

    Call it first thing in a worker (a pool initializer).  Linux: the kernel
    sends SIGKILL on the parent's death; everywhere: a daemon thread watches
    the parent and calls ``os._exit`` when it is gone.
    """
    if parent_pid is None:
        # A multiprocessing child knows its parent's pid from the moment it was started; os.getppid()
        # would name the reaper (init or a subreaper) if the parent was killed while this child was
        # still starting up (importing its task's modules), and the worker would then live on forever.
        parent = multiprocessing.parent_process()
        parent_pid = parent.pid if parent is not None and parent.pid else os.getppid()
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os._exit(1)
    sentinel = None
    parent = multiprocessing.parent_process()
    if parent is not None and parent.pid == parent_pid:
        sentinel = parent.sentinel
    threading.Thread(target=_watch_parent, args=(parent_pid, sentinel), daemon=True,
                     name="segkit-parent-watch").start()


def _watch_parent(parent_pid: int, sentinel: int | None) -> None:
    if sentinel is not None:
        from multiprocessing.connection import wait

        wait([sentinel])
        os._exit(1)
    while os.getppid() == parent_pid:
        time.sleep(0.5)
    os._exit(1)


def _initialise(parent_pid: int, initializer: Callable[..., None] | None, initargs: tuple) -> None:
    die_with_parent(parent_pid)
    if initializer is not None:
        initializer(*initargs)


def process_pool(workers: int, initializer: Callable[..., None] | None = None,
                 initargs: tuple = ()) -> ProcessPoolExecutor:
    """A ``spawn`` process pool whose workers die with this process, then run ``initializer``.

    ``spawn``, not ``fork``: the parent runs zarr's and Blosc's threads, which a
    forked child would inherit in an undefined state.
    """
    return ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
                               initializer=_initialise, initargs=(os.getpid(), initializer, initargs))


# --------------------------------------------------------------------------- dask
def parse_dask_address(address: str) -> tuple[str, int | None]:
    """``"local"`` / ``"local:N"`` → ``("local", N or None)``; anything else is a scheduler address.

    Raises
    ------
    UsageError
        On ``local:`` followed by something that is not a positive integer.
    """
    if address == "local" or address.startswith("local:"):
        _, _, n = address.partition(":")
        if n and (not n.isdigit() or int(n) < 1):
            raise UsageError("--dask", f"local:N needs a positive number of workers, got {address!r}")
        return "local", int(n) if n else None
    return address, None


def dask_client(address: str, *, threads: bool = False) -> Any:
    """A ``distributed.Client`` on a scheduler address, or on a new LocalCluster for ``local[:N]``.

    ``threads=True`` makes the LocalCluster run its workers as threads of this
    process (fast to start; what the tests use).  The caller closes the client
    (and so a LocalCluster it started).
    """
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        raise MissingExtraError("--dask", "needs dask.distributed: pip install 'segkit[dask]'") from None
    where, n = parse_dask_address(address)
    if where == "local":
        cluster = LocalCluster(n_workers=n or os.cpu_count() or 1, threads_per_worker=1, processes=not threads,
                               dashboard_address=None)
        client = Client(cluster, set_as_default=False)
        client._segkit_cluster = cluster  # closed with the client
        if not threads:  # the worker processes are this process's children: they die with it
            from segkit.dask_plugin import DieWithParent

            client.register_plugin(DieWithParent(os.getpid()))
        return client
    try:
        return Client(where, set_as_default=False, timeout="30s")
    except OSError as exc:
        raise UsageError("--dask", f"cannot reach the Dask scheduler at {where} ({type(exc).__name__})") from None


def _close_client(client: Any) -> None:
    cluster = getattr(client, "_segkit_cluster", None)
    client.close()
    if cluster is not None:
        cluster.close()


# --------------------------------------------------------------------------- the ordered map
def ordered_map(
    fn: Callable[[T], R],
    jobs: Iterable[T],
    *,
    workers: int = 1,
    threads: bool = False,
    dask: str | Any | None = None,
    in_flight: int | None = None,
    initializer: Callable[..., None] | None = None,
    initargs: tuple = (),
) -> Iterator[R]:
    """Yield ``fn(job)`` for every job, in job order, computed here, in a process pool or on Dask.

    Parameters
    ----------
    fn:
        A picklable (module-level) function.
    jobs:
        Picklable arguments, one per call; consumed lazily.
    workers:
        Local worker processes (``<= 1``: in this process); ignored with ``dask``.
    threads:
        Local workers are threads of this process instead of processes.
    dask:
        A scheduler address, ``"local[:N]"``, or a ``distributed.Client`` (left open).
    in_flight:
        At most this many jobs submitted and not yet yielded (default: the
        number of workers — one result waiting per worker keeps them busy
        while memory stays bounded).
    initializer, initargs:
        Run once per local worker process (not on Dask workers).

    Closing the generator early (or an exception in ``fn``) cancels what is pending;
    local workers are shut down with it.
    """
    if dask is None and workers <= 1:
        if initializer is not None:
            initializer(*initargs)
        for job in jobs:
            yield fn(job)
        return
    if dask is not None:
        own = isinstance(dask, str)
        client = dask_client(dask) if own else dask
        try:
            n = in_flight or max(1, sum(w.get("nthreads", 1) for w in client.scheduler_info()["workers"].values()))
            yield from _windowed(lambda job: client.submit(fn, job, pure=False), jobs, n)
        finally:
            if own:
                _close_client(client)
        return
    if threads:
        from concurrent.futures import ThreadPoolExecutor

        if initializer is not None:
            initializer(*initargs)
        pool: Any = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="segkit-worker")
    else:
        pool = process_pool(workers, initializer, initargs)
    try:
        yield from _windowed(lambda job: pool.submit(fn, job), jobs, in_flight or workers)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _windowed(submit: Callable[[Any], Any], jobs: Iterable[Any], window: int) -> Iterator[Any]:
    pending: deque[Any] = deque()
    queue = iter(jobs)
    try:
        for job in queue:
            pending.append(submit(job))
            if len(pending) >= window:
                break
        while pending:
            result = pending.popleft().result()
            job = next(queue, _END)
            if job is not _END:
                pending.append(submit(job))
            yield result
    finally:
        for future in pending:
            future.cancel()


_END = object()
