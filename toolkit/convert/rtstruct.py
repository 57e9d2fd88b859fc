"""RT Structure Set → one boolean mask per ROI on the referenced :class:`~segkit.dicom.volume.Volume`.

Rules (DESIGN.md "Masks", issue 4):

* contour points (patient mm) go to index coordinates through the inverse of the
  volume's affine;
* each contour is matched to a slice **by geometry**: its plane's distance to
  the nearest slice plane along the normal; ContourImageSequence is only a
  cross-check (a disagreement is a warning);
* a contour lies *on* a slice when that distance is at most
  :func:`slice_tolerance` — a tenth of the slice spacing, and never less than
  :data:`SLICE_TOLERANCE_FLOOR_MM` (0.05 mm), which absorbs the rounding of
  treatment planning systems (they write coordinates with 1–3 decimals: the
  dicompyler breast study's contours sit 0.0007 mm from its CT plane);
* a contour farther than that but within half a spacing of a slice is **off the
  plane**: it was drawn on another geometry, and placing it would move it.  It
  is an error naming the file, the ROI and the distance in mm — whatever
  ``strict`` says — unless ``snap=True`` (``--snap-contours``), which places it
  on the nearest slice with a warning;
* a contour on no slice (more than half a spacing from every slice: beyond
  the stack), a contour that is not planar, or a structure set whose frame of
  reference is not the volume's is an error naming the ROI — or, with
  ``strict=False`` (``--lenient``), a warning and the contour is left out;
* all CLOSED_PLANAR contours of an ROI on one slice are filled together with the
  even-odd rule, pixel centre inside (:func:`segkit.convert.rasterize.fill_polygons`);
* POINT and OPEN_PLANAR contours are skipped with a warning; degenerate
  polygons (fewer than 3 points, zero area) add nothing.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from pydicom.dataset import Dataset

from segkit.errors import DicomError, GeometryError
from segkit.convert.rasterize import fill_polygons
from segkit.convert.resample import scale_polygon
from segkit.dicom.volume import Volume

__all__ = ["RoiContours", "rtstruct_rois", "rtstruct_frame_of_reference", "rtstruct_referenced_instances",
           "rtstruct_masks", "rtstruct_placement", "fill_placed", "check_rtstruct", "slice_tolerance",
           "SLICE_TOLERANCE_FLOOR_MM"]

log = logging.getLogger(__name__)

#: A contour's points may spread this fraction of the slice spacing along the normal and still be planar.
PLANAR_TOLERANCE = 0.1
#: A contour lies on a slice within this fraction of the slice spacing …
SLICE_TOLERANCE = 0.1
#: … and never less than this many mm (TPS rounding: 2 decimals is ≤ 0.005 mm, 1 decimal ≤ 0.05 mm).
SLICE_TOLERANCE_FLOOR_MM = 0.05
#: Farther than this fraction of the spacing from every slice, a contour is on no slice at all.
NO_SLICE_FRACTION = 0.5


def slice_tolerance(slice_spacing: float) -> float:
    """How far (mm) a contour's plane may be from a slice plane and still lie on it."""
    return max(SLICE_TOLERANCE * float(slice_spacing), SLICE_TOLERANCE_FLOOR_MM)


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


def rtstruct_placement(
    ds: Dataset,
    volume: Volume,
    select: Callable[[str], bool],
    *,
    strict: bool = True,
    snap: bool = False,
    label: str = "RTSTRUCT",
    size: int | None = None,
) -> tuple[list[tuple[str, dict[int, list[np.ndarray]]]], list[str]]:
    """Place the selected ROIs' contours on ``volume``'s slices (geometry only; no pixels are needed).

    Returns ``(placed, warnings)``: each selected ROI's name with its polygons per
    slice (index coordinates of the output grid), for :func:`fill_placed`, and the
    warning lines to give.  Raises what :func:`rtstruct_masks` raises.
    """
    warnings: list[str] = []

    def fail(what: str, why: str) -> None:
        if strict:
            raise GeometryError(what, why)
        warnings.append(f"warning: {what}: {why} (ignored: --lenient)")

    frames = rtstruct_frame_of_reference(ds)
    if frames and volume.frame_of_reference not in frames:
        fail(label, f"is in another frame of reference than series {volume.label}, whose images it references")
    spacing = volume.slice_spacing
    tolerance = slice_tolerance(spacing)
    placed: list[tuple[str, dict[int, list[np.ndarray]]]] = []
    for roi in rtstruct_rois(ds):
        if not select(roi.name):
            continue
        what = f"{label} ROI {roi.name!r}"
        per_slice: dict[int, list[np.ndarray]] = defaultdict(list)
        placed.append((roi.name, per_slice))
        skipped: dict[str, int] = defaultdict(int)
        mismatched, snapped, farthest = 0, 0, 0.0
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
                fail(what, f"contour {n + 1} is not planar (its points span {np.ptp(depth) * spacing:.3g} mm "
                           f"along the slice normal)")
                continue
            plane = float(np.mean(depth)) * spacing + float(volume.positions[0])
            k = int(np.argmin(np.abs(volume.positions - plane)))
            distance = abs(float(volume.positions[k]) - plane)
            if distance > NO_SLICE_FRACTION * spacing:
                fail(what, f"contour {n + 1} lies on no slice of series {volume.label} (nearest is {distance:.3g} mm away)")
                continue
            if distance > tolerance:
                if not snap:
                    raise GeometryError(what, f"contour {n + 1} lies {distance:.3g} mm off the nearest slice plane of "
                                              f"series {volume.label} (tolerance {tolerance:.3g} mm, a tenth of its "
                                              f"{spacing:.3g} mm spacing): was it drawn on another geometry? "
                                              f"--snap-contours places such contours on the nearest slice")
                snapped += 1
                farthest = max(farthest, distance)
            refs = [str(i.ReferencedSOPInstanceUID) for i in contour.get("ContourImageSequence", [])
                    if "ReferencedSOPInstanceUID" in i]
            if refs and volume.sop_instance_uids[k] not in refs:
                mismatched += 1
            per_slice[k].append(ijk[:, :2] if size is None else scale_polygon(ijk[:, :2], volume.matrix, size))
        for kind, count in sorted(skipped.items()):
            warnings.append(f"warning: {what}: skipped {count} {kind} contour(s) (only CLOSED_PLANAR outlines an area)")
        if snapped:
            warnings.append(f"warning: {what}: {snapped} contour(s) up to {farthest:.3g} mm off the slice planes "
                            f"placed on the nearest slice (--snap-contours)")
        if mismatched:
            warnings.append(f"warning: {what}: {mismatched} contour(s) reference another image than the slice they "
                            f"lie on; placed by geometry")
    return placed, warnings


def check_rtstruct(
    ds: Dataset,
    volume: Volume,
    select: Callable[[str], bool] = lambda name: True,
    *,
    strict: bool = True,
    snap: bool = False,
    label: str = "RTSTRUCT",
) -> None:
    """Raise what :func:`rtstruct_masks` would raise, from geometry alone (no pixels, no warnings).

    ``volume`` may be geometry-only (``array is None``), so convert can refuse
    a structure set before it reads a pixel or creates anything at OUT.
    """
    rtstruct_placement(ds, volume, select, strict=strict, snap=snap, label=label, size=None)


def rtstruct_masks(
    ds: Dataset,
    volume: Volume,
    select: Callable[[str], bool] = lambda name: True,
    *,
    strict: bool = True,
    snap: bool = False,
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
        Turn "contour on no slice", "contour not planar" and "other frame of
        reference" into warnings when ``False`` (the contour is left out).
    snap:
        Place contours that lie off every slice plane (farther than
        :func:`slice_tolerance`, within half a spacing) on the nearest slice
        with a warning, instead of failing.
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
        If a contour is off the slice planes (unless ``snap``), or (``strict``)
        the frame of reference differs from the volume's or a contour is on no
        slice or not planar.
    DicomError
        If a contour's ContourData is malformed.
    """
    placed, warnings = rtstruct_placement(ds, volume, select, strict=strict, snap=snap, label=label, size=size)
    for line in warnings:
        log.warning("%s", line)
    nz, ny, nx = volume.shape
    if size is not None:
        ny = nx = int(size)
    return fill_placed(placed, (nz, ny, nx))


def fill_placed(placed: Sequence[tuple[str, Mapping[int, Sequence[np.ndarray]]]],
                shape: tuple[int, int, int]) -> dict[str, np.ndarray]:
    """Rasterise placed contours (from :func:`rtstruct_placement`) into ROI name → boolean ``(z, y, x)`` mask."""
    nz, ny, nx = shape
    masks: dict[str, np.ndarray] = {}
    for name, per_slice in placed:  # two ROIs of one name: the union of their masks
        mask = masks.get(name)
        if mask is None:
            mask = masks[name] = np.zeros((nz, ny, nx), dtype=bool)
        for k, polygons in per_slice.items():
            mask[k] |= fill_polygons(polygons, (ny, nx))
    return masks
