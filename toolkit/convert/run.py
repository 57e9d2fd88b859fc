"""``segkit convert``: DICOM images + RTSTRUCT/SEG → the segkit slice store.

One pass over headers plans everything — which RTSTRUCT/SEG belongs to which
series, each series' geometry, where each slice's pixels start in its file,
the ROIs that match and where every contour lies, the patient split, the
output matrix — so every problem that headers can reveal stops the run before
a pixel is read.  Then each series is converted by a pure function of a small
picklable task (:func:`_convert_series`: each file read once — hashed for the
provenance and its pixels taken from the same bytes —, masks filled from the
placed contours, intensities normalised and resampled, slices compressed into
the store's chunks), in worker threads, worker processes or on a Dask cluster
(:func:`segkit.workers.ordered_map`), results taken in plan order; the
:class:`~segkit.store.writer.StoreWriter` only assembles shards from the compressed
chunks and renames the store into place when it is complete.  The output does
not depend on where a series was converted.  A lock file beside OUT
(:mod:`segkit.runlock`) refuses a second run into the same OUT.

Pseudonyms: the store names patients by their PatientID when the input is
marked de-identified (PatientIdentityRemoved = YES, as ``segkit anonymize``
writes it — the ID is then a pseudonym); otherwise by ``patient-01``, ``patient-02``
… in PatientID order, and no identifier of the input reaches the store or the log.
Series are ``<patient>-s<n>``.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import json
import logging
import mmap
import os
import threading
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from segkit.dicom.dicomio import Scan, scan_folder
from segkit.errors import GeometryError, InputError, OutputExistsError, UsageError
from segkit.convert.intensity import ValueCounts, normalise_volume
from segkit.store.provenance import combine_digests, file_digest, provenance_step
from segkit.convert.resample import resample_image, resample_mask, resampled_spacing
from segkit.convert.roi import DEFAULT_ROI_PATTERNS, RoiReport, RoiSelector
from segkit.convert.rtstruct import (fill_placed, rtstruct_frame_of_reference, rtstruct_placement,
                             rtstruct_referenced_instances, rtstruct_rois)
from segkit.runlock import run_lock
from segkit.convert.segmask import seg_masks, seg_referenced_instances, seg_segments
from segkit.store.split import assign_split
from segkit._version import __version__
from segkit.store.reader import open_store
from segkit.store.shards import EncodedSlices, encode_slices
from segkit.store.writer import StoreWriter
from segkit.dicom.volume import PixelSource, Volume, pixel_source, read_volume_pixels, volume_geometry
from segkit.workers import ordered_map

__all__ = ["MASK_SOURCES", "ConvertOptions", "ConvertReport", "convert"]

log = logging.getLogger(__name__)

MASK_SOURCES = ("auto", "rtstruct", "seg")
#: Worker threads take np.percentile's volume-sized copy one volume at a time (the counted path needs none).
_NORMALISING = threading.Lock()
#: Below this Dice between a series' SEG and RTSTRUCT masks, convert warns.
AGREEMENT_WARNING = 0.95


@dataclass(frozen=True)
class ConvertOptions:
    """Parameters of a conversion (recorded verbatim in the provenance step).

    Attributes
    ----------
    roi:
        Case-insensitive regular expressions on ROI / segment names; empty = the defaults.
    size:
        Resample every slice to ``size×size``; ``None`` keeps the native matrix
        (which every series must then share).
    val_patients, test_patients:
        Patients assigned to validation and test; the rest train.
    seed:
        Seed of the patient split.
    masks:
        ``auto`` (SEG where a series has one, else RTSTRUCT; both → cross-checked),
        ``rtstruct`` or ``seg``.
    allow_uneven:
        Accept series with uneven slice spacing.
    lenient:
        Turn contour problems (on no slice, not planar) and an RTSTRUCT frame of
        reference that differs from the series it references into warnings.
        It does not cover contours *off* the slice planes (see ``snap_contours``).
    snap_contours:
        Place contours that lie off every slice plane (farther than a tenth of
        the spacing, 0.05 mm at least) on the nearest slice with a warning
        instead of failing.
    seg_threshold:
        FRACTIONAL SEG values ``>=`` this are inside.
    """

    roi: tuple[str, ...] = ()
    size: int | None = None
    val_patients: int = 1
    test_patients: int = 1
    seed: int = 0
    masks: str = "auto"
    allow_uneven: bool = False
    lenient: bool = False
    seg_threshold: float = 0.5
    snap_contours: bool = False

    def parameters(self) -> dict[str, Any]:
        return {
            "roi": list(self.roi or DEFAULT_ROI_PATTERNS), "size": self.size, "val_patients": self.val_patients,
            "test_patients": self.test_patients, "seed": self.seed, "masks": self.masks,
            "allow_uneven": self.allow_uneven, "lenient": self.lenient, "seg_threshold": self.seg_threshold,
            "snap_contours": self.snap_contours,
        }


@dataclass
class _Plan:
    """One series to convert."""

    where: str  # folder relative to the input, for messages
    patient_id: str  # stays in this process; never logged
    patient: str = ""
    series: str = ""
    image_paths: list[Path] = field(default_factory=list)
    pixels: list[PixelSource] = field(default_factory=list)  # in slice order
    modality: str = ""
    rtstructs: list[Path] = field(default_factory=list)
    segs: list[Path] = field(default_factory=list)
    geometry: Volume | None = None
    sort_key: tuple = ()
    placed: list[tuple[str, dict[int, list[np.ndarray]]]] = field(default_factory=list)
    rt_unmatched: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class _Task:
    """What a worker needs to convert one series (picklable, no headers, no PHI)."""

    where: str
    geometry: Volume  # geometry only
    pixels: tuple[PixelSource, ...]  # in slice order
    modality: str
    has_rtstruct: bool
    placed: tuple[tuple[str, dict[int, list[np.ndarray]]], ...]  # RTSTRUCT contours on the output grid
    rt_unmatched: tuple[str, ...]
    segs: tuple[tuple[Path, str], ...]
    source: str  # rtstruct | seg
    roi: tuple[str, ...]
    size: int | None
    seg_threshold: float
    skip: int = 0  # leading slices already in the store (a resumed run)


@dataclass
class _Result:
    slices: EncodedSlices  # slices skip… of the series, compressed
    positions: np.ndarray
    normalisation: dict[str, Any]
    spacing: list[float]
    native: dict[str, Any]
    rois: list[tuple[str, bool, bool]]
    agreement: float | None
    digests: dict[str, str]  # image file → SHA-256


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


# --------------------------------------------------------------------------- planning
def _best_series(refs: set[str], frames: set[str], plans: dict[str, _Plan], what: str) -> str:
    """The series an RTSTRUCT/SEG belongs to: most referenced instances, else the only one in its frame."""
    overlap = {uid: len(refs & set(p.geometry.sop_instance_uids)) for uid, p in plans.items()}
    best = max(overlap.values(), default=0)
    if best:
        winners = [uid for uid, n in overlap.items() if n == best]
        if len(winners) > 1:
            raise GeometryError(what, f"references {len(winners)} series equally; cannot tell which it belongs to")
        return winners[0]
    in_frame = [uid for uid, p in plans.items() if p.geometry.frame_of_reference in frames]
    if len(in_frame) == 1:
        return in_frame[0]
    if len(in_frame) > 1:
        raise GeometryError(what, f"references no image in the input and its frame of reference holds "
                                  f"{len(in_frame)} series; cannot tell which it belongs to")
    raise GeometryError(what, "references no image in the input and its frame of reference matches no series "
                              "(is its image series missing?)")


def _plan(scan: Scan, options: ConvertOptions, select: RoiSelector) -> tuple[list[_Plan], RoiReport, int]:
    plans: dict[str, _Plan] = {}
    for uid, instances in sorted(scan.images.items(), key=lambda kv: sorted(i.path for i in kv[1])[0]):
        paths = sorted(i.path for i in instances)
        where = scan.label(paths[0].parent)
        geometry, order = volume_geometry(instances, where, allow_uneven=options.allow_uneven)
        header = instances[0].header
        plans[uid] = _Plan(where=where, patient_id=str(header.get("PatientID", "")), image_paths=paths,
                           pixels=[pixel_source(instances[i]) for i in order],
                           modality=str(header.get("Modality", "")), geometry=geometry,
                           sort_key=(int(header.get("SeriesNumber", 0) or 0), uid))
    report = RoiReport()
    if not plans:
        raise InputError(str(scan.root), "holds no image series (only RTSTRUCT/SEG objects)")
    for inst in scan.rtstructs:
        what = scan.label(inst.path)
        uid = _best_series(rtstruct_referenced_instances(inst.header), rtstruct_frame_of_reference(inst.header),
                           plans, what)
        plans[uid].rtstructs.append(inst.path)
    for inst in scan.segs if options.masks != "rtstruct" else ():  # --masks rtstruct: SEGs play no part
        what = scan.label(inst.path)
        frame = {str(inst.header.get("FrameOfReferenceUID", ""))}
        uid = _best_series(seg_referenced_instances(inst.header), frame, plans, what)
        plans[uid].segs.append(inst.path)
    chosen: list[_Plan] = []
    skipped = 0
    headers = {i.path: i.header for i in [*scan.rtstructs, *scan.segs]}
    for plan in plans.values():
        names = [r.name for p in plan.rtstructs for r in rtstruct_rois(headers[p])] if options.masks != "seg" else []
        labels = [n for p in plan.segs for n in seg_segments(headers[p]).values()] if options.masks != "rtstruct" else []
        usable_rt = any(select(n) for n in names)
        usable_seg = any(select(n) for n in labels)
        if not (usable_rt or usable_seg):
            skipped += 1
            for name in sorted(set(names) | set(labels)):
                report.add(name, False, False)
            if plan.rtstructs or plan.segs:
                log.warning("warning: series %s: no ROI/segment matches --roi; left out", plan.where)
            else:
                log.warning("warning: series %s: no RTSTRUCT or SEG references it; left out", plan.where)
            continue
        if not usable_rt:
            plan.rtstructs = []
        if not usable_seg:
            plan.segs = []
        chosen.append(plan)
    if not chosen:
        seen = ", ".join(sorted(report.seen)) or "none"
        source = {"auto": "an RTSTRUCT or SEG", "rtstruct": "an RTSTRUCT (--masks rtstruct)",
                  "seg": "a SEG (--masks seg)"}[options.masks]
        raise InputError(str(scan.root), f"no image series has {source} structure matching --roi (ROIs seen: {seen})")
    return chosen, report, skipped


def _place_contours(plans: list[_Plan], scan: Scan, options: ConvertOptions, select: RoiSelector) -> None:
    """Place every RTSTRUCT contour on its slice from the headers alone.

    Contours off the slice planes (and, unless lenient, on no slice) stop the
    run here, before anything is written; the placed polygons go to the workers,
    which never parse the structure set again.
    """
    headers = {i.path: i.header for i in scan.rtstructs}
    for plan in plans:
        for path in plan.rtstructs:
            placed, warnings = rtstruct_placement(headers[path], plan.geometry, select, strict=not options.lenient,
                                                  snap=options.snap_contours, label=scan.label(path),
                                                  size=options.size)
            for line in warnings:
                log.warning("%s", line)
            plan.placed.extend(placed)
            plan.rt_unmatched.extend(r.name for r in rtstruct_rois(headers[path]) if not select(r.name))


def _assign_pseudonyms(plans: list[_Plan], scan: Scan) -> None:
    deidentified = all(
        str(scan.images[p.geometry.series_uid][0].header.get("PatientIdentityRemoved", "")).upper() == "YES"
        and p.patient_id for p in plans
    )
    ids = sorted({p.patient_id for p in plans})
    if deidentified:
        names = {pid: pid for pid in ids}
    else:
        log.warning("warning: input is not marked de-identified (PatientIdentityRemoved is not YES): the store names "
                    "patients patient-01 … instead of their IDs; run segkit anonymize before data leaves the enclave")
        names = {pid: f"patient-{i + 1:02d}" for i, pid in enumerate(ids)}
    per_patient: dict[str, list[_Plan]] = defaultdict(list)
    for plan in plans:
        plan.patient = names[plan.patient_id]
        per_patient[plan.patient].append(plan)
    for patient, group in per_patient.items():
        for n, plan in enumerate(sorted(group, key=lambda p: p.sort_key)):
            plan.series = f"{patient}-s{n + 1}"
    plans.sort(key=lambda p: (p.patient, p.series))


# --------------------------------------------------------------------------- one series
def _dice(a: np.ndarray, b: np.ndarray) -> float:
    total = int(a.sum()) + int(b.sum())
    return 1.0 if total == 0 else 2.0 * int(np.logical_and(a, b).sum()) / total


class _Pages:
    """An anonymous memory mapping whose slices can be handed back to the OS one at a time."""

    def __init__(self, shape: tuple[int, int, int]) -> None:
        self.slice_bytes = int(np.prod(shape[1:])) * 4
        size = max(1, self.slice_bytes * shape[0])
        # private: MADV_DONTNEED frees its pages (a shared anonymous mapping would keep them in shmem)
        self.releasable = hasattr(mmap, "MAP_PRIVATE") and hasattr(mmap, "MADV_DONTNEED")
        self.map = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE) if self.releasable else mmap.mmap(-1, size)
        self.page = mmap.PAGESIZE

    def release(self, k: int) -> None:
        """Slice ``k`` is no longer needed: return its whole pages (they read as zeros afterwards)."""
        if not self.releasable:
            return
        start = -(-k * self.slice_bytes // self.page) * self.page  # whole pages inside the slice only
        stop = (k + 1) * self.slice_bytes // self.page * self.page
        if stop > start:
            self.map.madvise(mmap.MADV_DONTNEED, start, stop - start)


def _trim_heap() -> None:
    """Give the C heap's free memory back to the OS (glibc): the worker threads' arenas keep a series' freed
    chunks otherwise, and the resident set grows by about one series."""
    try:
        libc = ctypes.CDLL(None)
        libc.malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _released_volume(shape: tuple[int, int, int]) -> tuple[_Pages, np.ndarray]:
    """A float32 volume in its own mapping: compressing it slice by slice can give its memory back as it goes,
    so a series never holds its whole volume and its whole compressed chunks at once (≈ 180 + 140 MB at 175×512²)."""
    pages = _Pages(shape)
    return pages, np.frombuffer(pages.map, dtype=np.float32, count=int(np.prod(shape))).reshape(shape)


def _convert_series(task: _Task) -> _Result:
    """Read one series, fill its masks, normalise, resample and compress its slices (pure; runs anywhere)."""
    from pydicom import dcmread

    counts = ValueCounts()
    pages, array = _released_volume(task.geometry.shape)
    volume, digests = read_volume_pixels(task.geometry, task.pixels, counts=counts, out=array)
    select = RoiSelector(task.roi)
    rois: list[tuple[str, bool, bool]] = []

    def merged(found: dict[str, np.ndarray], shape: tuple[int, int, int]) -> np.ndarray:
        out = None
        for name, m in found.items():
            rois.append((name, True, not m.any()))
            out = m if out is None else out | m
        return np.zeros(shape, dtype=bool) if out is None else out

    size = task.size
    shape = volume.shape if size is None else (volume.shape[0], size, size)
    rt_mask = seg_mask = None
    if task.has_rtstruct:
        rt_mask = merged(fill_placed(task.placed, shape), shape)
        rois.extend((name, False, False) for name in task.rt_unmatched)
    if task.segs:
        found: dict[str, np.ndarray] = {}
        for path, what in task.segs:
            ds = dcmread(path)
            for name, m in seg_masks(ds, volume, select, threshold=task.seg_threshold, label=what).items():
                found[name] = found[name] | m if name in found else m
            rois.extend((n, False, False) for n in seg_segments(ds).values() if not select(n))
        seg_mask = merged(found, volume.shape)
        if size is not None:
            seg_mask = resample_mask(seg_mask, size)
    mask = seg_mask if task.source == "seg" else rt_mask
    agreement = None
    if seg_mask is not None and rt_mask is not None:
        agreement = _dice(seg_mask, rt_mask)
        if agreement < AGREEMENT_WARNING:
            log.warning("warning: series %s: its SEG and RTSTRUCT agree poorly (Dice %.3f); using the SEG",
                        task.where, agreement)
    raw, volume = volume.array, replace(volume, array=None)
    # in place, percentiles from the counts: no volume-sized buffer.  Without complete counts (pixels pydicom
    # decoded) np.percentile copies the volume: one series at a time then bounds the peak memory.
    with contextlib.nullcontext() if counts.table() is not None else _NORMALISING:
        image, normalisation = normalise_volume(raw, counts=counts, overwrite_input=True)
    del raw
    if size is not None:
        image = resample_image(image, size)
    dy, dx = volume.pixel_spacing if size is None else resampled_spacing(volume.pixel_spacing, volume.matrix, size)
    native = {"matrix": list(volume.matrix), "pixel_spacing": list(volume.pixel_spacing),
              "slice_spacing": volume.slice_spacing, "slices": volume.shape[0],
              "modality": task.modality, "mask_source": task.source.upper()}
    if image is array:  # compress slice by slice, handing each slice's pages back: the chunks take their place
        parts = []
        for k in range(task.skip, len(image)):
            parts.append(encode_slices(image[k:k + 1], mask[k:k + 1]))
            pages.release(k)
        slices = EncodedSlices([c for p in parts for c in p.image], [c for p in parts for c in p.mask],
                               np.concatenate([p.has_tumour for p in parts]) if parts else np.zeros(0, dtype=bool))
    else:
        slices = encode_slices(image[task.skip:], mask[task.skip:])
    return _Result(slices=slices, positions=volume.positions, normalisation=normalisation,
                   spacing=[volume.slice_spacing, dy, dx], native=native, rois=rois, agreement=agreement,
                   digests=digests)


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
