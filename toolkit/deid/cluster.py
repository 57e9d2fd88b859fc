"""``segkit anonymize --dask ADDRESS``: the per-file de-identification spread over a Dask cluster.

The same engine as ``segkit convert --dask``: :func:`segkit.workers.dask_client` (``local[:N]``
starts a LocalCluster of N worker processes that die with this process; ``tcp://host:8786``
uses a running scheduler) and the windowed, in-order consumption of
:func:`segkit.workers.ordered_map`.  Only the de-identification pass runs on the cluster; the
header-only first pass (the run dictionary), the audit, linkage, quarantine list and DICOMDIR
stay in the calling process, which holds the run lock.

**State, once per worker.**  The run's settings (site key included), its dictionary and its
list of files travel in one :class:`_RunState` worker plugin: pickled once, kept by the
scheduler for the run, set up once on every worker (workers that join later get it too) and
removed when the run ends.  A task carries only ``(run token, first, stop)``; each worker
process builds one de-identifier from the state on its first task and runs one file at a
time (the de-identifier is not thread-safe and the work holds the GIL: give workers one
thread each and more processes, as ``local:N`` does).

**No PHI on the cluster's record.**  Task keys are ``segkit-anonymize-<random run token>-<batch
index>``; task arguments are integers; an exception on a worker is replaced by one that names
only its type (the original message may name an input path), raised outside the handler so no
chained message reaches the worker's ``Compute Failed`` log.

**Outputs are written by the workers**, with the same code as a local worker process: each
output under a temporary name in OUT, then renamed; quarantined files copied to the quarantine
folder.  Only the small audit records come back, and the caller consumes them in file order, so
the audit, linkage and every byte are what a local run writes, and resuming works the same way
(a file the audit does not list is done again, to the same bytes).  Returning each output's
bytes to the caller instead would ship every image twice over the network and need a second
write path for no change in the result.  Hence OUT and ``--quarantine`` must be on a file
system the workers share, at the same paths, as the input already must be.
"""

from __future__ import annotations

import logging
import secrets
import threading
from collections.abc import Iterator
from typing import Any

from segkit.errors import MissingExtraError
from segkit.workers import _close_client, _windowed, dask_client, parse_dask_address

try:
    from distributed.diagnostics.plugin import WorkerPlugin
except ImportError:  # without the 'dask' extra; check_dask says so before the run starts
    WorkerPlugin = object  # type: ignore[assignment,misc]

__all__ = ["check_dask", "dask_outcomes", "DaskTaskError"]

log = logging.getLogger("segkit.anonymize")

_STATES: dict[str, "_RunState"] = {}  # in each worker process: run token → state
_BATCH = 64  # at most this many files per task


def check_dask(dask: str | Any) -> None:
    """Fail at once (before OUT is touched) on a bad ``local:N`` or a missing 'dask' extra."""
    if not isinstance(dask, str):
        return
    parse_dask_address(dask)
    try:
        import distributed  # noqa: F401
    except ImportError:
        raise MissingExtraError("--dask", "needs dask.distributed: pip install 'segkit[dask]'") from None


class _RunState(WorkerPlugin):
    """The run's settings, dictionary and files, on every worker of the cluster for one run."""

    def __init__(self, token: str, cfg: Any, run_dict: Any, jobs: list[tuple[str, str]]) -> None:
        self.token = token
        self.name = f"segkit-anonymize-{token}"
        self.cfg, self.run_dict, self.jobs = cfg, run_dict, jobs
        self._lock: threading.Lock | None = None
        self._worker: Any = None

    def setup(self, worker: Any) -> None:  # noqa: ARG002 - the plugin protocol
        self._lock = threading.Lock()
        _STATES[self.token] = self

    def teardown(self, worker: Any) -> None:  # noqa: ARG002
        _STATES.pop(self.token, None)

    def run(self, start: int, stop: int) -> list[Any]:
        from segkit.deid.filepass import FilePass

        assert self._lock is not None
        with self._lock:
            if self._worker is None:
                self._worker = FilePass(self.cfg, self.run_dict)
            return [self._worker.process(src, rel) for src, rel in self.jobs[start:stop]]


class DaskTaskError(RuntimeError):
    """A de-identification task failed on a Dask worker (the message names only the exception type)."""


def _run_batch(token: str, start: int, stop: int) -> list[Any]:
    try:
        return _STATES[token].run(start, stop)
    except Exception as exc:  # noqa: BLE001 - re-raised below without its message
        failure = type(exc).__name__
    raise DaskTaskError(f"{failure} in a de-identification task on a Dask worker (message withheld: it may "
                        "name an input file); run without --dask to see it")


def dask_outcomes(dask: str | Any, cfg: Any, jobs: list[tuple[str, str]], run_dict: Any = None
                  ) -> Iterator[Any]:
    """Yield the :class:`~segkit.deid.filepass.FileOutcome` of every job, in job order, computed on Dask.

    *dask*: a scheduler address, ``"local[:N]"`` (a cluster for this run, closed at the end) or
    a ``distributed.Client`` (left open).  Close the generator to stop early: pending tasks
    are cancelled and the run's state is removed from the workers.
    """
    own = isinstance(dask, str)
    client = dask_client(dask) if own else dask
    state = _RunState(secrets.token_hex(8), cfg, run_dict, jobs)
    try:
        client.register_plugin(state)
        threads = max(1, sum(client.nthreads().values()))
        size = max(1, min(_BATCH, len(jobs) // (threads * 8)))
        batches = list(enumerate(range(0, len(jobs), size)))

        def submit(batch: tuple[int, int]) -> Any:
            index, first = batch
            return client.submit(_run_batch, state.token, first, min(first + size, len(jobs)),
                                 key=f"{state.name}-{index}", pure=False)

        for outcomes in _windowed(submit, batches, 2 * threads):
            yield from outcomes
    finally:
        try:
            client.unregister_worker_plugin(state.name)
        except Exception as exc:  # noqa: BLE001 - never hide the run's own error
            log.debug("could not remove the run's state from the Dask workers (%s)", type(exc).__name__)
        if own:
            _close_client(client)
