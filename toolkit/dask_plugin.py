"""The Dask worker plugin of :mod:`segkit.workers` (a module of its own: it imports ``distributed``)."""

from __future__ import annotations

import os
from typing import Any

from distributed.diagnostics.plugin import WorkerPlugin

from segkit.workers import die_with_parent

__all__ = ["DieWithParent"]


class DieWithParent(WorkerPlugin):
    """A worker process of a LocalCluster exits when the process that started the cluster does (SIGKILL included)."""

    name = "segkit-die-with-parent"

    def __init__(self, parent_pid: int) -> None:
        self.parent_pid = parent_pid

    def setup(self, worker: Any) -> None:  # noqa: ARG002 - the plugin protocol
        if os.getppid() == self.parent_pid:  # a worker process of ours, not a thread of the parent itself
            die_with_parent(self.parent_pid)
