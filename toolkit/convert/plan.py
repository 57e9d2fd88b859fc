"""Planning a conversion from the headers alone: which series, which RTSTRUCT/SEG, where every contour lies.

One pass over the scanned headers (:func:`_plan`) matches every RTSTRUCT and SEG to the image series it
references (most referenced instances, else the only series in its frame of reference), keeps the series
that have an ROI or segment matching ``--roi``, places every RTSTRUCT contour on its slice
(:func:`_place_contours`) and names patients and series (:func:`_assign_pseudonyms`: by their PatientID
when the input is marked de-identified — PatientIdentityRemoved = YES, as ``segkit anonymize`` writes it,
the ID is then a pseudonym —, otherwise ``patient-01``, ``patient-02`` … in PatientID order, so no
identifier of the input reaches the store or the log; series are ``<patient>-s<n>``), so that every
problem the headers can reveal stops the run before a pixel is read.  :class:`ConvertOptions` holds the
parameters of a conversion.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from segkit.dicom.dicomio import Scan
from segkit.errors import GeometryError, InputError
from segkit.convert.roi import DEFAULT_ROI_PATTERNS, RoiReport, RoiSelector
from segkit.convert.rtstruct import (rtstruct_frame_of_reference, rtstruct_placement, rtstruct_referenced_instances,
                             rtstruct_rois)
from segkit.convert.segmask import seg_referenced_instances, seg_segments
from segkit.dicom.volume import PixelSource, Volume, pixel_source, volume_geometry

__all__ = ["MASK_SOURCES", "ConvertOptions"]

log = logging.getLogger(__name__)

MASK_SOURCES = ("auto", "rtstruct", "seg")


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
