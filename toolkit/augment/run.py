"""``segkit augment``: grow the training split of a store to exactly ``target`` images, reproducibly.

The output store holds, in this order: every row of the input unchanged (train,
val and test originals, same row numbers), then the augmented images in plan
order.  Each augmented row names its ``parent`` (the row it was made from, a
training original) and its ``transform`` (the ops and their parameters as JSON),
so any image can be traced and replayed with :func:`segkit.augment.ops.apply_ops`.

How the bytes stay reproducible
-------------------------------
* The plan is drawn from one seeded generator before any pixel is read
  (:func:`segkit.augment.plan.draw_plan`).
* Each augmented image is a pure function of its parent's pixels and its
  recorded steps, so it does not matter which worker computes it or when.
* Results are appended in plan order through :class:`segkit.store.writer.StoreWriter`,
  which writes whole shards once each, to a temporary store that is renamed
  into place when complete.  A killed run leaves that temporary store behind;
  rerunning the same command picks it up at the last whole shard.
* OpenCV runs single-threaded inside the run (its own thread pool would compete
  with ``--workers`` for the cores).

With ``--workers`` > 1 the workers also compress and write: each computes
whole shards and writes them straight into the temporary store
(:meth:`segkit.store.writer.StoreWriter.reserve` / :func:`segkit.store.shards.write_rows`),
and the writer commits their table rows in order.  Compression is most of the
cost of a slice, so this is what lets more workers help.

Memory is bounded whatever the target: per process, its block arrays (reused
from block to block) and at most :data:`segkit.augment.worker.PARENT_CACHE_BYTES`
of decoded parents; in the main process, ``2 × workers`` queued shards' table rows.
"""

from __future__ import annotations

import hashlib
import json
import logging
import multiprocessing
import os
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from segkit._version import __version__
from segkit.augment.ops import DEFAULT_OPS
from segkit.augment.plan import PlannedSample, draw_plan, make_ops, plan_digest
from segkit.augment.worker import (_end_of_run, _started, _worker_init, _write_shard, render_and_write,
                                   render_block)
from segkit.errors import InputError, UsageError
from segkit.store.provenance import provenance_step
from segkit.runlock import locks_output
from segkit.store.format import SHARD_SLICES
from segkit.store.reader import open_store
from segkit.store.writer import StoreWriter

__all__ = ["AugmentResult", "augment_store", "DEFAULT_TARGET", "BLOCK"]

log = logging.getLogger(__name__)

#: The reference study's training-set size.
DEFAULT_TARGET = 6080
#: Slices computed per task (and per worker round trip): one shard of the output store.
BLOCK = SHARD_SLICES

#: ``segkit`` attributes the writer sets itself; everything else is carried over from the input.
_WRITER_KEYS = {"format", "version", "segkit_version", "size", "slices", "split", "provenance"}


@dataclass(frozen=True)
class AugmentResult:
    """What :func:`augment_store` wrote.

    Attributes
    ----------
    path:
        The output store.
    slices:
        Rows in the output (all splits).
    train:
        Training images in the output (originals + augmented) — the target.
    augmented:
        Augmented images added.
    resumed_from:
        Rows already on disk from a killed run that this run continued (0 for a fresh run).
    """

    path: Path
    slices: int
    train: int
    augmented: int
    resumed_from: int


@locks_output("dst", "augment")  # a second run into the same dst is refused at once
def augment_store(
    src: str | os.PathLike[str],
    dst: str | os.PathLike[str],
    *,
    target: int = DEFAULT_TARGET,
    seed: int = 0,
    ops: Sequence[str] = DEFAULT_OPS,
    op_settings: Mapping[str, Mapping[str, Any]] | None = None,
    workers: int = 1,
    overwrite: bool = False,
    progress: bool = False,
) -> AugmentResult:
    """Copy ``src`` to ``dst`` and add augmented training images until the train split holds ``target``.

    Parameters
    ----------
    src:
        A store written by ``segkit convert`` (originals only).
    dst:
        The output store; must not exist unless ``overwrite``.
    target:
        Training images wanted in ``dst``, originals included.
    seed:
        Seed of the plan; same input + seed + ops ⇒ byte-identical output.
    ops:
        Names of the ops to draw from (flip, rotate, blur, contrast).
    op_settings:
        Optional per-op ranges and probabilities, e.g. ``{"rotate": {"angle": (-10, 10)}}``.
    workers:
        Processes computing augmented images; the output does not depend on it.
    overwrite:
        Replace an existing ``dst`` once the new store is complete.
    progress:
        Show a progress bar on stderr.

    Returns
    -------
    AugmentResult

    Raises
    ------
    InputError
        If ``src`` is not a segkit store or already holds augmented images.
    UsageError
        If ``dst`` is ``src``, ``target`` is below the training originals, ``workers < 1``,
        or an op or its settings are invalid.
    OutputExistsError
        If ``dst`` exists and ``overwrite`` is false.
    """
    src, dst = Path(src), Path(dst)
    if workers < 1:
        raise UsageError("--workers", f"must be at least 1, got {workers}.")
    if dst.resolve() == src.resolve():
        raise UsageError(str(dst), "is the input store; write the augmented store to a new path.")
    with _worker_pool(workers) as pool:  # started first: the workers' start-up overlaps the plan and digest
        return _augment(src, dst, target, seed, ops, op_settings, pool, overwrite, progress)


def _augment(src: Path, dst: Path, target: int, seed: int, ops: Sequence[str],
             op_settings: Mapping[str, Mapping[str, Any]] | None, pool: tuple[ProcessPoolExecutor, int] | None,
             overwrite: bool, progress: bool) -> AugmentResult:
    store = open_store(src)
    table = store.table
    if np.any(table["source"] != "original"):
        raise InputError(str(src), "already holds augmented images; augment the store that segkit convert wrote.")
    chosen = make_ops(ops, op_settings)
    train_rows = store.indices("train")
    plan = draw_plan(train_rows, target, chosen, seed)

    n_src = len(store)
    digest_in = store.digest()
    parameters = {
        "target": int(target),
        "ops": {op.name: op.config() for op in chosen},
        "train_originals": int(train_rows.size),
        "augmented": len(plan),
        "plan_digest": "sha256:" + plan_digest(plan),
    }
    step = provenance_step("augment", parameters, input_digest=digest_in, seed=int(seed))
    attrs = {k: v for k, v in store.attrs.items() if k not in _WRITER_KEYS}
    engine = f"opencv {cv2.__version__}"
    attrs["augmentation"] = {"seed": int(seed), **parameters, "pixel_engine": engine}
    resume_key = hashlib.sha256(
        json.dumps([__version__, engine, digest_in, parameters, seed], sort_keys=True).encode()
    ).hexdigest()

    log.info("augment: %d training originals + %d augmented = %d; val/test copied unchanged (%d rows)",
             train_rows.size, len(plan), target, n_src - train_rows.size)
    output = _OutputRows(table, n_src, plan)
    with _single_threaded_opencv(), StoreWriter(
        dst, tuple(store.attrs["size"]), provenance=[*store.provenance, step], attrs=attrs,
        overwrite=overwrite, resume_key=resume_key,
    ) as writer:
        resumed = writer.count
        if resumed:
            log.info("augment: resuming a killed run at row %d of %d", resumed, len(output))
        with _progress(len(output), resumed, progress) as bar:
            if pool is not None:
                _write_in_parallel(writer, src, output, resumed, pool, bar)
            else:
                _append_in_process(writer, src, output, resumed, bar)
    return AugmentResult(dst, len(output), int(train_rows.size) + len(plan), len(plan), resumed)


class _OutputRows:
    """The rows of the output store: every input row unchanged (same row number), then the plan.

    An input row is "rendered" from itself with no steps, so copies and
    augmented images take the same path (and the same workers).
    """

    def __init__(self, table: Mapping[str, np.ndarray], n_src: int, plan: Sequence[PlannedSample]) -> None:
        self.table, self.n_src, self.plan = table, n_src, plan

    def __len__(self) -> int:
        return self.n_src + len(self.plan)

    def block(self, start: int, stop: int) -> tuple[list[tuple[int, str]], dict[str, Any]]:
        """``(parent row, transform)`` pairs and table columns of output rows ``start…stop``."""
        table, n_src = self.table, self.n_src
        copied = np.arange(min(start, n_src), min(stop, n_src), dtype=np.int64)
        made = self.plan[max(start - n_src, 0):max(stop - n_src, 0)]
        parents = np.concatenate([copied, np.array([s.parent for s in made], dtype=np.int64)])
        extra = len(made)
        columns = {
            "patient": table["patient"][parents], "series": table["series"][parents],
            "index": table["index"][parents], "position": table["position"][parents],
            "split": np.concatenate([table["split"][copied], np.full(extra, "train", dtype=object)]),
            "source": np.concatenate([table["source"][copied], np.full(extra, "augmented", dtype=object)]),
            "parent": np.concatenate([table["parent"][copied], parents[len(copied):]]),
            "transform": [str(t) for t in table["transform"][copied]] + [s.transform for s in made],
        }
        pairs = [(int(r), "") for r in copied] + [(s.parent, s.transform) for s in made]
        return pairs, columns


def _append_in_process(writer: StoreWriter, src: Path, output: _OutputRows, start: int, bar: Any) -> None:
    """Compute shard after shard here; a thread compresses and writes the previous one meanwhile.

    Compression releases the GIL, so on two cores it runs beside the pixel work
    of the next shard.  At most two shards are in memory.
    """
    from concurrent.futures import ThreadPoolExecutor

    if start >= len(output):
        return
    tmp, first = writer.reserve(len(output) - start)
    size = writer.shard_slices
    try:
        with ThreadPoolExecutor(max_workers=1) as io:
            previous: tuple[int, int, dict[str, Any], Future] | None = None
            for a in range(first, len(output), size):
                b = min(a + size, len(output))
                pairs, columns = output.block(a, b)
                block = render_block(src, pairs, slot=(a // size) % 2)  # the other slot is being written
                if previous is not None:
                    _commit(writer, *previous, bar)
                previous = (a, b, columns, io.submit(_write_shard, str(tmp), a, *block))
                del block
            if previous is not None:
                _commit(writer, *previous, bar)
    finally:
        _end_of_run()


def _commit(writer: StoreWriter, a: int, b: int, columns: dict[str, Any], future: Future, bar: Any) -> None:
    has_tumour, digests = future.result()
    writer.commit(b - a, has_tumour=has_tumour, shard_digests=digests, **columns)
    bar.update(b - a)


@contextmanager
def _worker_pool(workers: int) -> Iterator[tuple[ProcessPoolExecutor, int] | None]:
    """The run's worker processes and their number (``None`` for ``workers == 1``), started at once.

    Each spawned worker spends ~0.5 s CPU importing numpy, OpenCV and zarr;
    starting them before the main process reads the input and draws the plan
    overlaps the two.
    """
    if workers <= 1:
        yield None
        return
    context = multiprocessing.get_context("spawn")  # the parent runs zarr's I/O threads: never fork it
    with ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=_worker_init) as pool:
        for _ in range(workers):
            pool.submit(_started)  # one process spawned per task while none is idle
        yield pool, workers


def _write_in_parallel(writer: StoreWriter, src: Path, output: _OutputRows, start: int,
                       pool: tuple[ProcessPoolExecutor, int], bar: Any) -> None:
    """Workers compute *and* compress+write whole shards; the writer commits their rows in order.

    Compression is a large part of the cost of a slice, so it runs in the
    workers, beside the pixel work.  At most ``2 × workers`` shards are queued;
    pixels exist only in the worker computing a shard.
    """
    if start >= len(output):
        return
    executor, workers = pool
    tmp, first = writer.reserve(len(output) - start)
    size = writer.shard_slices
    shards = iter(range(first, len(output), size))
    pending: deque[tuple[int, int, dict[str, Any], Future]] = deque()

    def submit() -> bool:
        a = next(shards, None)
        if a is None:
            return False
        b = min(a + size, len(output))
        pairs, columns = output.block(a, b)
        pending.append((a, b, columns, executor.submit(render_and_write, str(src), str(tmp), a, pairs)))
        return True

    try:
        while len(pending) < 2 * workers and submit():
            pass
        while pending:
            a, b, columns, future = pending.popleft()
            future.result()
            submit()
            _commit(writer, a, b, columns, future, bar)
    finally:
        for *_, future in pending:
            future.cancel()


@contextmanager
def _single_threaded_opencv() -> Iterator[None]:
    before = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        yield
    finally:
        cv2.setNumThreads(before)


@contextmanager
def _progress(total: int, initial: int, enabled: bool) -> Iterator[Any]:
    """A tqdm bar on stderr, or a silent stand-in with the same ``update``."""
    from tqdm import tqdm

    bar = tqdm(total=total, initial=initial, unit="slice", desc="augment", leave=False, disable=not enabled)
    try:
        yield bar
    finally:
        bar.close()
