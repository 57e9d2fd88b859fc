"""DICOM SEG → one boolean mask per segment on the referenced :class:`~segkit.dicom.volume.Volume`.

Read with highdicom (BINARY, FRACTIONAL with a threshold, LABELMAP; sparse
frames; overlapping segments).  Frames are placed on the volume's slices by the
SOP Instance UIDs they were derived from; a SEG without per-frame references is
placed by the position of each frame along the normal — never by frame order.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np
from pydicom.dataset import Dataset

from segkit.errors import DicomError, GeometryError
from segkit.dicom.volume import Volume

__all__ = ["seg_segments", "seg_referenced_instances", "seg_masks"]

log = logging.getLogger(__name__)


def _highdicom_seg(ds: Dataset, label: str):
    import highdicom as hd

    try:
        return hd.seg.Segmentation.from_dataset(ds, copy=False)
    except Exception as exc:  # noqa: BLE001 - highdicom raises several types for invalid SEGs
        raise DicomError(label, f"is not a valid DICOM SEG ({type(exc).__name__}: {str(exc)[:120]})") from None


def seg_segments(ds: Dataset) -> dict[int, str]:
    """Segment number → segment label."""
    return {int(item.SegmentNumber): str(item.get("SegmentLabel", f"segment-{item.SegmentNumber}"))
            for item in ds.get("SegmentSequence", [])}


def seg_referenced_instances(ds: Dataset) -> set[str]:
    """SOP Instance UIDs a SEG references (ReferencedSeriesSequence and per-frame derivations)."""
    uids = {str(i.ReferencedSOPInstanceUID) for s in ds.get("ReferencedSeriesSequence", [])
            for i in s.get("ReferencedInstanceSequence", [])}
    for frame in ds.get("PerFrameFunctionalGroupsSequence", []):
        for derivation in frame.get("DerivationImageSequence", []):
            for source in derivation.get("SourceImageSequence", []):
                uids.add(str(source.ReferencedSOPInstanceUID))
    return uids


def _by_position(seg, volume: Volume, numbers: list[int], label: str) -> np.ndarray:
    """Place frames by their ImagePositionPatient; returns ``(z, y, x, segments)`` float."""
    out = np.zeros((*volume.shape, len(numbers)), dtype=np.float32)
    shared = seg.get("SharedFunctionalGroupsSequence", [None])[0]
    orientation = None
    if shared is not None and "PlaneOrientationSequence" in shared:
        orientation = np.asarray(shared.PlaneOrientationSequence[0].ImageOrientationPatient, dtype=float)
    for i, frame in enumerate(seg.PerFrameFunctionalGroupsSequence):
        if "PlanePositionSequence" not in frame:
            raise GeometryError(label, "has frames with neither source-image references nor positions")
        position = np.asarray(frame.PlanePositionSequence[0].ImagePositionPatient, dtype=float)
        frame_orientation = orientation
        if "PlaneOrientationSequence" in frame:
            frame_orientation = np.asarray(frame.PlaneOrientationSequence[0].ImageOrientationPatient, dtype=float)
        if frame_orientation is None or np.max(np.abs(frame_orientation - np.r_[volume.row_dir, volume.col_dir])) > 1e-3:
            raise GeometryError(label, f"frame {i + 1} is not in the plane orientation of series {volume.label}")
        col, row, k = volume.to_index(position)[0]
        kk = int(round(k))
        if abs(col) > 0.01 or abs(row) > 0.01 or abs(k - kk) > 0.05 or not 0 <= kk < volume.shape[0]:
            raise GeometryError(label, f"frame {i + 1} lies on no slice of series {volume.label}")
        number = int(frame.SegmentIdentificationSequence[0].ReferencedSegmentNumber) \
            if "SegmentIdentificationSequence" in frame else None
        pixels = seg.get_frame(i + 1)
        if number is None:  # LABELMAP: one frame carries every segment
            for j, n in enumerate(numbers):
                out[kk, :, :, j] = np.maximum(out[kk, :, :, j], pixels == n)
        elif number in numbers:
            j = numbers.index(number)
            out[kk, :, :, j] = np.maximum(out[kk, :, :, j], pixels)
    return out


def seg_masks(
    ds: Dataset,
    volume: Volume,
    select: Callable[[str], bool] = lambda name: True,
    *,
    threshold: float = 0.5,
    label: str = "SEG",
) -> dict[str, np.ndarray]:
    """Read the selected segments of a SEG as boolean masks on ``volume``.

    Parameters
    ----------
    ds:
        The DICOM SEG dataset.
    volume:
        The series it segments (geometry only).
    select:
        Which segment labels to read.
    threshold:
        FRACTIONAL segments are inside where the value (scaled to [0, 1]) is ``>= threshold``.
    label:
        How messages name the SEG (no PHI).

    Returns
    -------
    dict
        Segment label → boolean ``(z, y, x)`` mask (same-label segments merged).

    Raises
    ------
    GeometryError
        If the SEG is in another frame of reference, has another matrix, or a frame lies on no slice.
    DicomError
        If highdicom cannot read it.
    """
    if str(ds.get("FrameOfReferenceUID", "")) != volume.frame_of_reference:
        raise GeometryError(label, f"is in another frame of reference than series {volume.label}")
    if (int(ds.Rows), int(ds.Columns)) != volume.matrix:
        raise GeometryError(label, f"has a {ds.Rows}x{ds.Columns} matrix, series {volume.label} has "
                                   f"{volume.rows}x{volume.columns}")
    segments = seg_segments(ds)
    numbers = [n for n, name in sorted(segments.items()) if select(name)]
    if not numbers:
        return {}
    seg = _highdicom_seg(ds, label)
    referenced = seg_referenced_instances(ds)
    sources = [uid for uid in volume.sop_instance_uids if uid in referenced]
    values: np.ndarray | None = None
    if sources:
        try:
            by_instance = seg.get_pixels_by_source_instance(
                source_sop_instance_uids=sources, segment_numbers=numbers, combine_segments=False,
                assert_missing_frames_are_empty=False, rescale_fractional=True, skip_overlap_checks=True,
                dtype=np.float32,
            )
        except (ValueError, KeyError, AttributeError, RuntimeError) as exc:
            log.debug("%s: no per-frame source references (%s); placing frames by position", label, exc)
        else:
            values = np.zeros((*volume.shape, len(numbers)), dtype=np.float32)
            for i, uid in enumerate(sources):
                values[volume.sop_instance_uids.index(uid)] = by_instance[i]
    if values is None:
        values = _by_position(ds, volume, numbers, label)
        if str(ds.get("SegmentationType", "")).upper() == "FRACTIONAL":
            values = values / float(ds.get("MaximumFractionalValue", 255) or 255)
    fractional = str(ds.get("SegmentationType", "")).upper() == "FRACTIONAL"
    masks: dict[str, np.ndarray] = {}
    for j, number in enumerate(numbers):
        inside = values[..., j] >= threshold if fractional else values[..., j] > 0
        name = segments[number]
        masks[name] = masks[name] | inside if name in masks else inside
    return masks
