"""RT Structure Set → one boolean mask per ROI on the referenced :class:`~segkit.volume.Volume`.

Rules (DESIGN.md "Masks", issue 4):

* contour points (patient mm) go to index coordinates through the inverse of the
  volume's affine;
* each contour is matched to a slice **by geometry**: its plane's distance to
  each slice plane along the normal, within half the slice spacing;
  ContourImageSequence is only a cross-check (a disagreement is a warning);
* a contour on no slice, a contour that is not planar, or a structure set whose
  frame of reference is not the volume's is an error naming the ROI — or, with
  ``strict=False``, a warning and the contour is left out;
* all CLOSED_PLANAR contours of an ROI on one slice are filled together with the
  even-odd rule, pixel centre inside (:func:`segkit.rasterize.fill_polygons`);
* POINT and OPEN_PLANAR contours are skipped with a warning; degenerate
  polygons (fewer than 3 points, zero area) add nothing.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from pydicom.dataset import Dataset

from segkit.errors import DicomError, GeometryError
from segkit.rasterize import fill_polygons
from segkit.resample import scale_polygon
from segkit.volume import Volume

__all__ = ["RoiContours", "rtstruct_rois", "rtstruct_frame_of_reference", "rtstruct_referenced_instances",
           "rtstruct_masks"]

log = logging.getLogger(__name__)

#: A contour's points may spread this fraction of the slice spacing along the normal and still be planar.
PLANAR_TOLERANCE = 0.1
#: A contour matches a slice within this fraction of the slice spacing.
SLICE_TOLERANCE = 0.5


@dataclass(frozen=True)
class RoiContours:
    """One ROI of a structure set: its number, name and contour items."""

    number: int
    name: str
    contours: tuple[Dataset, ...]


def rtstruct_rois(ds: Dataset) -> list[RoiContours]:
    """List the ROIs of an RTSTRUCT with their contours (an ROI without contours has none)."""
    names = {int(item.ROINumber): str(item.get("ROIName", f"ROI-{item.ROINumber}"))
             for item in ds.get("StructureSetROISequence", [])}
    contours: dict[int, tuple[Dataset, ...]] = {}
    for item in ds.get("ROIContourSequence", []):
        contours[int(item.ReferencedROINumber)] = tuple(item.get("ContourSequence", []))
    return [RoiContours(number, name, contours.get(number, ())) for number, name in sorted(names.items())]


def rtstruct_frame_of_reference(ds: Dataset) -> set[str]:
    """Every FrameOfReferenceUID the structure set declares (for its ROIs and references)."""
    frames = {str(item.FrameOfReferenceUID) for item in ds.get("ReferencedFrameOfReferenceSequence", [])
              if "FrameOfReferenceUID" in item}
    frames |= {str(item.ReferencedFrameOfReferenceUID) for item in ds.get("StructureSetROISequence", [])
               if "ReferencedFrameOfReferenceUID" in item}
    return frames


def rtstruct_referenced_instances(ds: Dataset) -> set[str]:
    """SOP Instance UIDs the structure set references (series-level and per contour)."""
    uids: set[str] = set()
    for frame in ds.get("ReferencedFrameOfReferenceSequence", []):
        for study in frame.get("RTReferencedStudySequence", []):
            for series in study.get("RTReferencedSeriesSequence", []):
                uids |= {str(i.ReferencedSOPInstanceUID) for i in series.get("ContourImageSequence", [])}
    for roi in ds.get("ROIContourSequence", []):
        for contour in roi.get("ContourSequence", []):
            uids |= {str(i.ReferencedSOPInstanceUID) for i in contour.get("ContourImageSequence", [])}
    return uids


def _contour_data(contour: Dataset) -> np.ndarray | None:
    """ContourData as float64, parsed straight from the raw DS bytes when possible.

    pydicom's DS conversion validates every value and dominates the run time on
    large structure sets; numpy parses the same decimal strings ~10× faster.
    """
    elem = contour.get_item("ContourData") if "ContourData" in contour else None
    if elem is None:
        return None
    raw = elem.value
    if isinstance(raw, bytes | bytearray):
        text = bytes(raw).strip(b" \x00")
        if not text:
            return np.empty(0)
        try:
            return np.array(text.split(b"\\")).astype(np.float64)
        except ValueError:
            pass  # let pydicom say what is wrong with the values
    return np.asarray(contour.ContourData, dtype=np.float64)


def _fail(strict: bool, what: str, why: str, error: type[Exception] = GeometryError) -> None:
    if strict:
        raise error(what, why)
    log.warning("warning: %s: %s (ignored: --lenient)", what, why)


def rtstruct_masks(
    ds: Dataset,
    volume: Volume,
    select: Callable[[str], bool] = lambda name: True,
    *,
    strict: bool = True,
    label: str = "RTSTRUCT",
    size: int | None = None,
) -> dict[str, np.ndarray]:
    """Rasterise the selected ROIs of an RTSTRUCT onto ``volume``'s slices.

    Parameters
    ----------
    ds:
        The RT Structure Set.
    volume:
        The image series it was drawn on (only its geometry is used).
    select:
        Which ROI names to rasterise.
    strict:
        Turn "contour on no slice" and "contour not planar" into warnings when ``False``.
    label:
        How messages name the structure set (no PHI).
    size:
        Rasterise on a ``size×size`` grid of the same field of view instead of
        the volume's matrix (the polygons are resampled, not the mask).

    Returns
    -------
    dict
        ROI name → boolean ``(z, y, x)`` mask, for every selected ROI (empty ROIs
        give an all-False mask).  Two ROIs with the same name are merged (union).

    Raises
    ------
    GeometryError
        If the frame of reference differs from the volume's, or (``strict``) a
        contour is on no slice or not planar.
    DicomError
        If a contour's ContourData is malformed.
    """
    frames = rtstruct_frame_of_reference(ds)
    if frames and volume.frame_of_reference not in frames:
        _fail(strict, label, f"is in another frame of reference than series {volume.label}, whose images it references")
    nz, ny, nx = volume.shape
    if size is not None:
        ny = nx = int(size)
    masks: dict[str, np.ndarray] = {}
    for roi in rtstruct_rois(ds):
        if not select(roi.name):
            continue
        what = f"{label} ROI {roi.name!r}"
        per_slice: dict[int, list[np.ndarray]] = defaultdict(list)
        skipped: dict[str, int] = defaultdict(int)
        mismatched = 0
        for n, contour in enumerate(roi.contours):
            kind = str(contour.get("ContourGeometricType", "CLOSED_PLANAR")).upper()
            if kind != "CLOSED_PLANAR":
                skipped[kind] += 1
                continue
            data = _contour_data(contour)
            if data is None or len(data) == 0:
                continue
            if len(data) % 3:
                raise DicomError(what, f"contour {n + 1} has {len(data)} ContourData values (not x,y,z triplets)")
            ijk = volume.to_index(data.reshape(-1, 3))
            depth = ijk[:, 2]
            if np.ptp(depth) > PLANAR_TOLERANCE:
                _fail(strict, what, f"contour {n + 1} is not planar (its points span {np.ptp(depth) * volume.slice_spacing:.3g} mm "
                                    f"along the slice normal)")
                continue
            plane = float(np.mean(depth)) * volume.slice_spacing + float(volume.positions[0])
            k = int(np.argmin(np.abs(volume.positions - plane)))
            distance = abs(float(volume.positions[k]) - plane)
            if distance > SLICE_TOLERANCE * volume.slice_spacing:
                _fail(strict, what, f"contour {n + 1} lies on no slice of series {volume.label} "
                                    f"(nearest is {distance:.3g} mm away)")
                continue
            refs = [str(i.ReferencedSOPInstanceUID) for i in contour.get("ContourImageSequence", [])
                    if "ReferencedSOPInstanceUID" in i]
            if refs and volume.sop_instance_uids[k] not in refs:
                mismatched += 1
            per_slice[k].append(ijk[:, :2] if size is None else scale_polygon(ijk[:, :2], volume.matrix, size))
        for kind, count in sorted(skipped.items()):
            log.warning("warning: %s: skipped %d %s contour(s) (only CLOSED_PLANAR outlines an area)", what, count, kind)
        if mismatched:
            log.warning("warning: %s: %d contour(s) reference another image than the slice they lie on; "
                        "placed by geometry", what, mismatched)
        mask = masks.get(roi.name)
        if mask is None:
            mask = masks[roi.name] = np.zeros((nz, ny, nx), dtype=bool)
        for k, polygons in per_slice.items():
            mask[k] |= fill_polygons(polygons, (ny, nx))
    return masks
