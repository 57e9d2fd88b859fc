"""Write a model's prediction on an MR series as a DICOM SEG (highdicom), reproducibly.

The SEG references its source series instance by instance (one frame per source
slice with tumour; frames are matched by SOP Instance UID, not by order),
inherits the source's patient and study modules (so it files next to the series
in a PACS or treatment planning system, de-identified or not), and identifies
the algorithm: segkit version, model variant and run id.

Reproducible bytes: highdicom stamps the wall clock and a random
DimensionOrganizationUID.  Here every UID is derived with
:func:`segkit.dicom.uids.uid_from` from the source series, the run and a digest of the
segmentation, and every date/time is pinned to ``created`` — by default
``SOURCE_DATE_EPOCH`` when set, otherwise the source study's date and time — so
the same series, run and prediction always give byte-identical files.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset

from segkit._version import __version__
from segkit.errors import DicomError, UsageError
from segkit.dicom.uids import IMPLEMENTATION_UID, uid_from

__all__ = ["Algorithm", "prediction_seg", "write_dataset", "slice_order"]

SERIES_NUMBER = 910


@dataclass(frozen=True)
class Algorithm:
    """What produced the segmentation (recorded in the SEG's Segment and Contributing Equipment)."""

    model: str
    run_id: str
    version: str = __version__

    @property
    def name(self) -> str:
        return f"segkit {self.model}"


def slice_order(datasets: Sequence[Dataset]) -> list[int]:
    """Indices of ``datasets`` sorted by position along the slice normal (ascending).

    Raises
    ------
    DicomError
        If an instance lacks ImageOrientationPatient or ImagePositionPatient.
    """
    try:
        iop = np.asarray([float(v) for v in datasets[0].ImageOrientationPatient])
        normal = np.cross(iop[:3], iop[3:])
        along = [float(np.dot([float(v) for v in ds.ImagePositionPatient], normal)) for ds in datasets]
    except (AttributeError, TypeError, ValueError):
        raise DicomError("series", "an image has no valid ImageOrientationPatient/ImagePositionPatient") from None
    return sorted(range(len(datasets)), key=lambda i: along[i])


def _created(source: Dataset, created: dt.datetime | None) -> dt.datetime:
    if created is not None:
        return created
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    if epoch:
        return dt.datetime.fromtimestamp(int(epoch), dt.timezone.utc).replace(tzinfo=None)
    date = str(source.get("StudyDate", "") or source.get("SeriesDate", "") or "19700101")
    time = str(source.get("StudyTime", "") or "000000").split(".")[0].ljust(6, "0")[:6]
    try:
        return dt.datetime.strptime(date + time, "%Y%m%d%H%M%S")
    except ValueError:
        return dt.datetime(1970, 1, 1)


def prediction_seg(
    source: Sequence[Dataset],
    prob: np.ndarray,
    algorithm: Algorithm,
    *,
    label: str = "Tumour",
    threshold: float = 0.5,
    fractional: bool = False,
    created: dt.datetime | None = None,
) -> Dataset:
    """Build a DICOM SEG of a predicted tumour on its source MR series.

    Parameters
    ----------
    source:
        The source series' datasets (any order; pixel data not needed).
    prob:
        ``(z, rows, columns)`` tumour probabilities in [0, 1], slices ordered by
        position along the normal, ascending (see :func:`slice_order`; the
        ``Volume`` order of ``segkit convert``).
    algorithm:
        Model variant and run id, recorded in the SEG.
    label:
        The segment label (e.g. ``Tumour``, ``GTV``).
    threshold:
        Binary SEG: a pixel is tumour when ``prob >= threshold``.
    fractional:
        Write a FRACTIONAL (probability, 8-bit) SEG instead of a binary one.
    created:
        Date/time written into the SEG (default: ``SOURCE_DATE_EPOCH``, else the
        source study's date/time), so the bytes do not depend on the clock.

    Returns
    -------
    pydicom.dataset.Dataset
        A ``highdicom.seg.Segmentation``.

    Raises
    ------
    UsageError
        If ``prob`` does not match the series or is not in [0, 1], or ``label`` is empty.
    DicomError
        If the source images lack the geometry a SEG needs.
    """
    import highdicom as hd
    from pydicom.sr.codedict import codes

    if not source:
        raise UsageError("series", "has no image to segment")
    prob = np.asarray(prob)
    rows, columns = int(source[0].Rows), int(source[0].Columns)
    if prob.shape != (len(source), rows, columns):
        raise UsageError("prediction", f"has shape {prob.shape}, the series is {(len(source), rows, columns)}")
    if not np.all(np.isfinite(prob)) or prob.min(initial=0) < 0 or prob.max(initial=0) > 1:
        raise UsageError("prediction", "must hold probabilities in [0, 1]")
    if not label.strip():
        raise UsageError("--roi-label", "must not be empty")
    order = slice_order(source)
    ordered = [source[i] for i in order]

    if fractional:
        pixels = np.round(prob.astype(np.float64) * 255) / 255  # what the 8-bit SEG can hold, exactly
        seg_type = hd.seg.SegmentationTypeValues.FRACTIONAL
    else:
        pixels = (prob >= threshold).astype(np.uint8)
        seg_type = hd.seg.SegmentationTypeValues.BINARY
    content = hashlib.sha256(np.ascontiguousarray(pixels).tobytes()).hexdigest()
    key = (str(ordered[0].SeriesInstanceUID), algorithm.run_id, algorithm.model, label,
           "fractional" if fractional else f"binary {threshold!r}", content)
    series_uid = uid_from("segkit predict series", *key)
    instance_uid = uid_from("segkit predict instance", *key)

    identification = hd.AlgorithmIdentificationSequence(
        name=algorithm.name,
        family=codes.cid7162.ArtificialIntelligence,
        version=algorithm.version,
        source="segkit",
        parameters={"model": algorithm.model, "run": algorithm.run_id,
                    "threshold": "fractional" if fractional else f"{threshold:g}"},
    )
    description = hd.seg.SegmentDescription(
        segment_number=1,
        segment_label=label,
        segmented_property_category=codes.SCT.MorphologicallyAbnormalStructure,
        segmented_property_type=codes.SCT.Neoplasm,
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
        algorithm_identification=identification,
    )
    with warnings.catch_warnings():
        # The patient module is copied verbatim from the source; a de-identified single-component
        # PatientName (a pseudonym) is legal and is not ours to "fix".
        warnings.filterwarnings("ignore", message=r".*unlikely to represent the intended person name", category=UserWarning)
        seg = hd.seg.Segmentation(
            source_images=ordered,
            pixel_array=pixels,
            segmentation_type=seg_type,
            segment_descriptions=[description],
            series_instance_uid=series_uid,
            series_number=SERIES_NUMBER,
            sop_instance_uid=instance_uid,
            instance_number=1,
            manufacturer="segkit",
            manufacturer_model_name=algorithm.name[:64],
            software_versions=algorithm.version,
            device_serial_number=algorithm.run_id[:64],
            content_label="TUMOUR",
            content_description=f"{label} predicted by segkit {algorithm.model} (run {algorithm.run_id})"[:64],
            content_creator_name=None,
            series_description=f"segkit {algorithm.model} {label}"[:64],
            omit_empty_frames=bool(pixels.any()),
        )
    pin_reproducible(seg, _created(ordered[0], created))
    return seg


def pin_reproducible(seg: Dataset, when: dt.datetime) -> None:
    """Make a highdicom SEG's bytes depend only on its inputs.

    highdicom stamps the wall clock into the creation, content, series and
    contribution dates/times and draws a random DimensionOrganizationUID; set the
    former to ``when`` and the latter to a UID derived from the SEG's own
    SOPInstanceUID, and name segkit as the implementation.
    """
    seg.InstanceCreationDate = seg.ContentDate = seg.SeriesDate = when.strftime("%Y%m%d")
    seg.InstanceCreationTime = seg.ContentTime = seg.SeriesTime = when.strftime("%H%M%S")
    for item in seg.get("ContributingEquipmentSequence", []):
        if "ContributionDateTime" in item:
            item.ContributionDateTime = when.strftime("%Y%m%d%H%M%S")
    dim_uid = uid_from(str(seg.SOPInstanceUID), "dimension organization")
    for item in [*seg.DimensionOrganizationSequence, *seg.DimensionIndexSequence]:
        item.DimensionOrganizationUID = dim_uid
    seg.file_meta.ImplementationClassUID = IMPLEMENTATION_UID
    seg.file_meta.ImplementationVersionName = f"SEGKIT_{__version__}"[:16]


def write_dataset(ds: Dataset, out: str | os.PathLike[str], *, overwrite: bool = False) -> Path:
    """Write ``ds`` to ``out`` atomically (a temporary file beside it, then rename).

    Raises
    ------
    OutputExistsError
        If ``out`` exists and ``overwrite`` is false.
    """
    from segkit.errors import OutputExistsError

    out = Path(out)
    if out.exists() and not overwrite:
        raise OutputExistsError(str(out), "already exists; choose another path or pass --force")
    from segkit.atomic import atomic_path

    with atomic_path(out) as tmp:
        ds.save_as(tmp, enforce_file_format=True)
    return out
