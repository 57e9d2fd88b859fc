"""``segkit convert``: DICOM images + RTSTRUCT/SEG → the segkit slice store.

:func:`convert` first plans every series from the headers alone (:mod:`segkit.convert.plan`), so every
problem that headers can reveal stops the run before a pixel is read; then each series is converted by a
pure function of a small picklable task (:func:`segkit.convert.series._convert_series`), in worker
threads, worker processes or on a Dask cluster (:func:`segkit.workers.ordered_map`), results taken in plan
order; the :class:`~segkit.store.writer.StoreWriter` only assembles shards from the compressed chunks,
the provenance is recorded, and the store is renamed into place when it is complete.  The output does not
depend on where a series was converted.  An interrupted run with the same input files, options and segkit
version continues where it stopped; a lock file beside OUT (:mod:`segkit.runlock`) refuses a second run
into the same OUT.
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import logging
import os
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from segkit.dicom.dicomio import Scan, scan_folder
from segkit.errors import OutputExistsError, UsageError
from segkit.convert.plan import MASK_SOURCES, ConvertOptions, _assign_pseudonyms, _place_contours, _plan, _Plan
from segkit.convert.series import _convert_series, _Result, _Task
from segkit.store.provenance import combine_digests, file_digest, provenance_step
from segkit.convert.roi import RoiReport, RoiSelector
from segkit.runlock import run_lock
from segkit.store.split import assign_split
from segkit._version import __version__
from segkit.store.reader import open_store
from segkit.store.writer import StoreWriter
from segkit.workers import ordered_map

__all__ = ["ConvertReport", "convert"]

log = logging.getLogger(__name__)


@dataclass
class ConvertReport:
    """What :func:`convert` wrote."""

    store: Path
    patients: int
    series: int
    slices: int
    tumour_slices: int
    split: dict[str, str]
    rois: RoiReport
    skipped_series: int

    def summary(self) -> str:
        counts = defaultdict(int)
        for part in self.split.values():
            counts[part] += 1
        lines = [
            f"wrote {self.store}: {self.slices} slices ({self.tumour_slices} with tumour) from {self.series} series "
            f"of {self.patients} patients; split train/val/test = {counts['train']}/{counts['val']}/{counts['test']} patients",
            *self.rois.lines(),
        ]
        if self.skipped_series:
            lines.append(f"  {self.skipped_series} image series without a matching RTSTRUCT/SEG were left out")
        return "\n".join(lines)


def _trim_heap() -> None:
    """Give the C heap's free memory back to the OS (glibc): the worker threads' arenas keep a series' freed
    chunks otherwise, and the resident set grows by about one series."""
    try:
        libc = ctypes.CDLL(None)
        libc.malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _file_identity(scan: Scan) -> list[tuple[str, int, int]]:
    """(path relative to the input, size, modification time) of every input file: what a resume must match."""
    out = []
    for path in scan.files:
        st = path.stat()
        out.append((scan.label(path), st.st_size, st.st_mtime_ns))
    return sorted(out)


# --------------------------------------------------------------------------- entry point
def convert(
    in_dir: str | os.PathLike[str],
    out: str | os.PathLike[str],
    options: ConvertOptions = ConvertOptions(),
    *,
    workers: int = 1,
    dask: str | Any | None = None,
    overwrite: bool = False,
    progress: bool = False,
) -> ConvertReport:
    """Convert a folder of DICOM studies into a segkit slice store.

    Parameters
    ----------
    in_dir:
        Folder scanned recursively for image series, RTSTRUCTs and SEGs.
    out:
        The ``*.zarr`` store to write (atomically).
    options:
        See :class:`ConvertOptions`.
    workers:
        Series converted in parallel, in worker threads (the output does not depend on it).
    dask:
        Spread the series over a Dask cluster instead: a scheduler address
        (``tcp://host:8786``), ``"local"`` / ``"local:N"`` (a LocalCluster of N
        processes for this run) or a ``distributed.Client``; the output is the same.
    overwrite:
        Replace ``out`` if it exists.
    progress:
        Show progress bars on stderr.

    Raises
    ------
    SegkitError
        Any input problem (see the issue's list), always before anything is left at ``out``.
    """
    out = Path(out)
    if options.masks not in MASK_SOURCES:
        raise UsageError("--masks", f"must be one of {', '.join(MASK_SOURCES)}")
    if options.size is not None and options.size < 1:
        raise UsageError("--size", "must be a positive number of pixels")
    if out.exists() and not overwrite:
        raise OutputExistsError(str(out), "already exists; choose another path or pass --force")
    with run_lock(out, "convert"):
        return _convert_locked(Path(in_dir), out, options, workers=workers, dask=dask, overwrite=overwrite,
                               progress=progress)


def _convert_locked(in_dir: Path, out: Path, options: ConvertOptions, *, workers: int, dask: str | Any | None,
                    overwrite: bool, progress: bool) -> ConvertReport:
    select = RoiSelector(options.roi)
    scan = scan_folder(in_dir, progress=progress)
    plans, report, skipped = _plan(scan, options, select)
    _place_contours(plans, scan, options, select)
    _assign_pseudonyms(plans, scan)
    scan.images, scan.rtstructs, scan.segs = {}, [], []  # the headers are planned: let them go
    split = assign_split({p.patient for p in plans}, val=options.val_patients, test=options.test_patients,
                         seed=options.seed)
    matrices = sorted({p.geometry.matrix for p in plans})
    if options.size is None and len(matrices) > 1:
        shown = ", ".join(f"{r}x{c}" for r, c in matrices)
        raise UsageError("--size", f"the series have different matrices ({shown}); pass --size N to resample "
                                   f"every slice to NxN")
    size = (options.size, options.size) if options.size is not None else matrices[0]
    # same input files + options + segkit version ⇒ an interrupted run continues where it stopped
    resume_key = hashlib.sha256(json.dumps({"parameters": options.parameters(), "input": _file_identity(scan),
                                            "size": list(size), "segkit": __version__},
                                           sort_keys=True).encode()).hexdigest()
    # the input digest is filled in at the end, from the file hashes the workers make while reading
    step = provenance_step("convert", options.parameters(), input_digest=None, input_files=len(scan.files),
                           seed=options.seed)
    lengths = [p.geometry.shape[0] for p in plans]
    bar = _progress(sum(lengths), progress)
    digests: dict[str, str] = {}
    try:
        with StoreWriter(out, size, provenance=[step], overwrite=overwrite, resume_key=resume_key) as writer:
            done = writer.resumed
            if done:
                log.info("resuming an interrupted run: %d of %d slices were already written", done, sum(lengths))
                bar(done)
            todo, first = [], 0
            for plan, n in zip(plans, lengths):
                if first + n > done:  # skip the rows already in the store
                    todo.append((plan, _task(plan, scan, options, skip=max(0, done - first))))
                first += n
            tasks = [task for _, task in todo]
            for (plan, task), result in zip(todo, ordered_map(_convert_series, tasks, workers=workers, threads=True,
                                                              dask=dask)):
                n = len(result.positions)
                # attributes first: appending may complete a shard, and the journal then records them
                writer.attrs.setdefault("spacing", {})[plan.series] = result.spacing
                writer.attrs.setdefault("normalisation", {})[plan.series] = result.normalisation
                writer.attrs.setdefault("series", {})[plan.series] = _series_info(plan, result)
                writer.append_encoded(result.slices, patient=plan.patient, series=plan.series,
                                      split=split[plan.patient], index=np.arange(task.skip, n, dtype=np.int32),
                                      position=result.positions[task.skip:])
                digests.update(result.digests)
                result.slices = None  # written: the map's generator still holds the result while it waits
                _trim_heap()
                bar(n - task.skip)
            for info in writer.attrs["series"].values():
                for name, state in sorted(info["rois"].items()):
                    report.add(name, state != "not matched", state == "empty")
            writer.attrs["rois"] = report.as_dict()
            # files no worker read (structure sets, SEGs, series left out or already written) are hashed here
            writer.provenance[-1]["input_digest"] = combine_digests(
                digests.get(str(path)) or file_digest(path) for path in scan.files)
    finally:
        bar(None)
    tumour = int(open_store(out).table["has_tumour"].sum())
    return ConvertReport(store=out, patients=len(split), series=len(plans), slices=writer.count,
                         tumour_slices=tumour, split=split, rois=report, skipped_series=skipped)


def _task(plan: _Plan, scan: Scan, options: ConvertOptions, *, skip: int) -> _Task:
    return _Task(where=plan.where, geometry=plan.geometry, pixels=tuple(plan.pixels), modality=plan.modality,
                 has_rtstruct=bool(plan.rtstructs), placed=tuple(plan.placed), rt_unmatched=tuple(plan.rt_unmatched),
                 segs=tuple((s, scan.label(s)) for s in plan.segs),
                 source="seg" if plan.segs and options.masks != "rtstruct" else "rtstruct",
                 roi=tuple(options.roi), size=options.size, seg_threshold=options.seg_threshold, skip=skip)


def _series_info(plan: _Plan, result: _Result) -> dict[str, Any]:
    """What the store records about one source series (no identifiers)."""
    rank = {"not matched": 0, "empty": 1, "matched": 2}
    rois: dict[str, str] = {}
    for name, matched, empty in result.rois:  # a name may come from both the RTSTRUCT and the SEG
        state = "not matched" if not matched else "empty" if empty else "matched"
        rois[name] = max(rois.get(name, state), state, key=rank.__getitem__)
    info = {"patient": plan.patient, **result.native, "rois": dict(sorted(rois.items()))}
    if result.agreement is not None:
        info["seg_rtstruct_dice"] = round(result.agreement, 6)
    return info


def _progress(total: int, enabled: bool) -> Callable[[int | None], None]:
    if not enabled:
        return lambda n: None
    from tqdm import tqdm

    bar = tqdm(total=total, desc="convert", unit="slice", leave=False)

    def update(n: int | None) -> None:
        if n is None:
            bar.close()
        else:
            bar.update(n)

    return update
