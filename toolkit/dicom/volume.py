"""A DICOM image series as a ``(z, y, x)`` array plus its geometry.

Geometry contract (DESIGN.md, "Series and geometry"): slices are ordered by
their position along the normal (never by InstanceNumber or file name); missing
slices, uneven spacing, mixed orientations, mixed frames of reference, mixed
matrices and sheared stacks are errors naming the series; rescale slope and
intercept are applied.

Index convention: a voxel is ``array[k, row, column]``; in *index coordinates*
``(column, row, k)`` the centre of that voxel is at integers, and
``patient = origin + column·Δx·row_dir + row·Δy·col_dir + k·Δz·normal``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from segkit.dicom.dicomio import Instance
from segkit.errors import DicomError, GeometryError
from segkit.convert.intensity import ValueCounts

__all__ = ["Volume", "PixelSource", "pixel_source", "read_volume", "read_volume_pixels", "volume_geometry"]

ORIENTATION_TOLERANCE = 1e-4
#: Relative tolerance on slice spacing (and absolute floor, mm) before spacing counts as uneven.
SPACING_RTOL, SPACING_ATOL = 0.01, 0.01


@dataclass(frozen=True)
class Volume:
    """An image series: pixels and geometry.

    Attributes
    ----------
    array:
        ``(z, y, x)`` float32, rescale slope/intercept applied; ``None`` for a
        geometry-only volume.
    origin:
        ImagePositionPatient of the first slice (lowest along the normal), mm.
    row_dir, col_dir, normal:
        Unit vectors: along a row (increasing column), down a column
        (increasing row), and ``row_dir × col_dir``.
    pixel_spacing:
        ``(Δy, Δx)`` mm — DICOM PixelSpacing (between rows, between columns).
    slice_spacing:
        ``Δz`` mm between consecutive slices.
    positions:
        Each slice's position along the normal, mm, ascending.
    sop_instance_uids:
        Each slice's SOPInstanceUID, in slice order.
    frame_of_reference, series_uid:
        FrameOfReferenceUID and SeriesInstanceUID.
    label:
        How messages name the series (a path relative to the input; no PHI).
    """

    array: np.ndarray | None
    origin: np.ndarray
    row_dir: np.ndarray
    col_dir: np.ndarray
    normal: np.ndarray
    pixel_spacing: tuple[float, float]
    slice_spacing: float
    positions: np.ndarray
    sop_instance_uids: tuple[str, ...]
    frame_of_reference: str
    series_uid: str
    label: str
    matrix: tuple[int, int]

    @property
    def shape(self) -> tuple[int, int, int]:
        """``(z, y, x)``."""
        return (len(self.positions), self.rows, self.columns)

    @property
    def rows(self) -> int:
        return self.matrix[0]

    @property
    def columns(self) -> int:
        return self.matrix[1]

    @property
    def affine(self) -> np.ndarray:
        """4×4 matrix mapping index coordinates ``(column, row, k, 1)`` to patient mm."""
        dy, dx = self.pixel_spacing
        m = np.eye(4)
        m[:3, 0] = self.row_dir * dx
        m[:3, 1] = self.col_dir * dy
        m[:3, 2] = self.normal * self.slice_spacing
        m[:3, 3] = self.origin
        return m

    def to_index(self, points: np.ndarray) -> np.ndarray:
        """Map patient mm ``(n, 3)`` to index coordinates ``(column, row, k)`` (floats)."""
        points = np.asarray(points, dtype=np.float64).reshape(-1, 3)
        rel = points - self.origin
        dy, dx = self.pixel_spacing
        return np.stack([rel @ self.row_dir / dx, rel @ self.col_dir / dy, rel @ self.normal / self.slice_spacing],
                        axis=1)

    def slice_of(self, sop_instance_uid: str) -> int | None:
        """Slice index of an instance of this series, or ``None``."""
        try:
            return self.sop_instance_uids.index(sop_instance_uid)
        except ValueError:
            return None


def _vec(value: Sequence[float] | None, n: int, what: str, label: str) -> np.ndarray:
    if value is None or len(value) != n:
        raise GeometryError(f"series {label}", f"has no valid {what}")
    return np.asarray([float(v) for v in value], dtype=np.float64)


def volume_geometry(instances: Sequence[Instance], label: str, *, allow_uneven: bool = False) -> tuple[Volume, list[int]]:
    """Check a series' geometry from headers and order its slices.

    Returns
    -------
    (Volume, order)
        A geometry-only volume (``array is None``) and the indices of
        ``instances`` in slice order.

    Raises
    ------
    GeometryError
        On mixed orientation / frame of reference / matrix / pixel spacing,
        duplicate positions, a sheared stack, missing slices or (unless
        ``allow_uneven``) uneven spacing.
    """
    what = f"series {label}"
    if not instances:
        raise GeometryError(what, "has no image")
    headers = [inst.header for inst in instances]
    first = headers[0]
    orientation = _vec(first.get("ImageOrientationPatient"), 6, "ImageOrientationPatient", label)
    for h in headers[1:]:
        other = _vec(h.get("ImageOrientationPatient"), 6, "ImageOrientationPatient", label)
        if np.max(np.abs(other - orientation)) > ORIENTATION_TOLERANCE:
            raise GeometryError(what, "mixes slice orientations (ImageOrientationPatient differs between slices)")
    frames = {str(h.get("FrameOfReferenceUID", "")) for h in headers}
    if len(frames) != 1:
        raise GeometryError(what, "mixes frames of reference (FrameOfReferenceUID differs between slices)")
    frame = frames.pop()
    matrices = {(int(h.Rows), int(h.Columns)) for h in headers}
    if len(matrices) != 1:
        raise GeometryError(what, f"mixes matrix sizes {sorted(matrices)}")
    spacings = {tuple(round(float(v), 6) for v in h.get("PixelSpacing", ()) or ()) for h in headers}
    if len(spacings) != 1 or len(next(iter(spacings))) != 2:
        raise GeometryError(what, "has missing or mixed PixelSpacing")
    dy, dx = next(iter(spacings))
    row_dir, col_dir = orientation[:3], orientation[3:]
    row_dir, col_dir = row_dir / np.linalg.norm(row_dir), col_dir / np.linalg.norm(col_dir)
    if abs(float(row_dir @ col_dir)) > 1e-3:
        raise GeometryError(what, "has ImageOrientationPatient rows and columns that are not perpendicular")
    normal = np.cross(row_dir, col_dir)
    ipp = np.stack([_vec(h.get("ImagePositionPatient"), 3, "ImagePositionPatient", label) for h in headers])
    along = ipp @ normal
    order = np.argsort(along, kind="stable")
    along, ipp = along[order], ipp[order]
    if len(along) > 1 and np.min(np.diff(along)) < SPACING_ATOL:
        raise GeometryError(what, "has two slices at the same position (several echoes, phases or a duplicate?)")
    # every slice must sit on the first one's normal line (no gantry tilt / shear)
    rel = ipp - ipp[0]
    inplane = rel - np.outer(rel @ normal, normal)
    if len(ipp) > 1 and np.max(np.linalg.norm(inplane, axis=1)) > 0.1 * min(dx, dy):
        raise GeometryError(what, "has slices shifted within their plane (sheared stack or gantry tilt)")
    if len(along) > 1:
        steps = np.diff(along)
        spacing = float(np.median(steps))
        tol = max(SPACING_ATOL, SPACING_RTOL * spacing)
        if np.max(np.abs(steps - spacing)) > tol and not allow_uneven:
            multiple = np.round(steps / spacing)
            gaps = np.flatnonzero((np.abs(steps - multiple * spacing) <= tol) & (multiple >= 2))
            if len(gaps):
                g = int(gaps[0])
                raise GeometryError(what, f"is missing {int(multiple[g]) - 1} slice(s) after slice {g} "
                                          f"(gap {steps[g]:.3g} mm, spacing {spacing:.3g} mm)")
            raise GeometryError(what, f"has uneven slice spacing ({steps.min():.3g} to {steps.max():.3g} mm)")
        if allow_uneven:
            spacing = float(np.mean(steps)) if np.max(np.abs(steps - spacing)) > tol else spacing
    else:
        spacing = float(first.get("SpacingBetweenSlices") or first.get("SliceThickness") or 1.0)
    volume = Volume(
        array=None,
        origin=ipp[0],
        row_dir=row_dir,
        col_dir=col_dir,
        normal=normal,
        pixel_spacing=(float(dy), float(dx)),
        slice_spacing=spacing,
        positions=along,
        sop_instance_uids=tuple(str(headers[i].SOPInstanceUID) for i in order),
        frame_of_reference=frame,
        series_uid=str(first.get("SeriesInstanceUID", "")),
        label=label,
        matrix=next(iter(matrices)),
    )
    return volume, [int(i) for i in order]


_NATIVE_LE = {"1.2.840.10008.1.2": True, "1.2.840.10008.1.2.1": False}  # transfer syntax → implicit VR?
_PIXEL_DATA_TAG = b"\xe0\x7f\x10\x00"


@dataclass(frozen=True)
class PixelSource:
    """Where one slice's pixels are and how to turn them into values (picklable; no header).

    Made from a scanned header by :func:`pixel_source`.  ``layout`` is
    ``(implicit VR, numpy dtype, bits stored, signed)`` when the pixels can be
    taken straight from the file bytes at ``offset`` (uncompressed little-endian
    greyscale), else ``None`` (pydicom decodes the file).
    """

    path: Path
    offset: int | None
    layout: tuple[bool, str, int, bool] | None
    rescale: tuple[float, float] | None  # (slope, intercept), as pydicom's apply_rescale uses them


def pixel_source(instance: Instance) -> PixelSource:
    """How :func:`read_volume_pixels` reads one scanned instance."""
    h = instance.header
    meta = getattr(h, "file_meta", None)
    syntax = str(meta.get("TransferSyntaxUID", "")) if meta is not None else ""
    layout = None
    bits = int(h.get("BitsAllocated", 0) or 0)
    if (syntax in _NATIVE_LE and instance.pixel_offset is not None and bits in (8, 16, 32)
            and int(h.get("SamplesPerPixel", 1) or 1) == 1 and int(h.get("NumberOfFrames", 1) or 1) == 1
            and not h.get("ModalityLUTSequence") and int(h.get("PixelRepresentation", 0) or 0) in (0, 1)):
        signed = int(h.get("PixelRepresentation", 0) or 0) == 1
        stored = int(h.get("BitsStored", bits) or bits)
        if 1 <= stored <= bits:
            layout = (_NATIVE_LE[syntax], f"<{'i' if signed else 'u'}{bits // 8}", stored, signed)
    rescale = None
    if "RescaleSlope" in h and "RescaleIntercept" in h:
        rescale = (h.RescaleSlope, h.RescaleIntercept)
    return PixelSource(instance.path, instance.pixel_offset, layout, rescale)


def _native_pixels(data: bytes, source: PixelSource, matrix: tuple[int, int]) -> np.ndarray | None:
    """The stored values straight from the file bytes, exactly as pydicom decodes them, or ``None``."""
    if source.layout is None or source.offset is None:
        return None
    implicit, dtype, stored, signed = source.layout
    o = source.offset
    if data[o:o + 4] != _PIXEL_DATA_TAG:
        return None
    if implicit:
        length, value = int.from_bytes(data[o + 4:o + 8], "little"), o + 8
    else:
        if data[o + 4:o + 6] not in (b"OW", b"OB"):
            return None
        length, value = int.from_bytes(data[o + 8:o + 12], "little"), o + 12
    count = matrix[0] * matrix[1]
    need = count * np.dtype(dtype).itemsize
    if length == 0xFFFFFFFF or length < need or len(data) < value + need:
        return None  # encapsulated or truncated: pydicom says what is wrong
    pixels = np.frombuffer(data, dtype=dtype, count=count, offset=value).reshape(matrix)
    bits = pixels.dtype.itemsize * 8
    if stored < bits:  # pydicom keeps only the stored bits (sign-extended when signed)
        if signed:
            shift = bits - stored
            pixels = (pixels << shift) >> shift
        else:
            pixels = pixels & np.array((1 << stored) - 1, dtype=pixels.dtype)
    return pixels


def _decoded_pixels(data: bytes, source: PixelSource, matrix: tuple[int, int]) -> np.ndarray:
    """Slow path: pydicom parses and decodes the file bytes (and applies its modality LUT or rescale)."""
    from io import BytesIO

    import pydicom
    from pydicom.pixels import apply_rescale

    path = source.path
    try:
        ds = pydicom.dcmread(BytesIO(data))
    except Exception as exc:  # noqa: BLE001 - pydicom raises many types for bad files
        raise DicomError(str(path), f"cannot be parsed as DICOM ({type(exc).__name__}); is it truncated?") from None
    if "PixelData" not in ds:
        raise DicomError(str(path), "has no pixel data")
    try:
        pixels = ds.pixel_array
    except Exception as exc:  # noqa: BLE001 - pydicom raises many types for bad pixel data
        raise DicomError(str(path), f"has unreadable pixel data ({type(exc).__name__}); is it truncated?") from None
    if pixels.shape != matrix:
        raise DicomError(str(path), f"has pixel data of shape {pixels.shape}, expected {matrix}")
    return apply_rescale(pixels, ds)


def _read_file(path: Path, buffer: bytearray) -> tuple[memoryview, bytearray]:
    """A whole file's bytes, read into ``buffer`` (reused from file to file; a new one only when it is too small).

    Returns the bytes (a view of the buffer, valid until the next call) and the buffer.
    """
    with open(path, "rb", buffering=0) as fh:
        size = os.fstat(fh.fileno()).st_size
        if len(buffer) <= size:
            buffer = bytearray(size + 1 + size // 8)  # room to see the end of the file
        view = memoryview(buffer)
        n = 0
        while n < len(buffer):
            got = fh.readinto(view[n:])
            if not got:
                return view[:n], buffer
            n += got
        return memoryview(bytes(view) + fh.read()), buffer  # the file grew while being read


def read_volume_pixels(geometry: Volume, sources: Sequence[PixelSource], *,
                       counts: ValueCounts | None = None,
                       out: np.ndarray | None = None) -> tuple[Volume, dict[str, str]]:
    """Read the pixels of a geometry-only volume, one file per slice (``sources`` in slice order).

    Each file is read once: its bytes are hashed (SHA-256, for the provenance
    digest) and its pixels taken from them — straight from the bytes for
    uncompressed little-endian greyscale, otherwise decoded by pydicom.  The
    values are the same as pydicom's ``apply_rescale(ds.pixel_array, ds)``.
    Given ``counts``, the stored integers of each slice taken from the bytes
    are counted into it (for exact percentiles without sorting the volume:
    :func:`segkit.convert.intensity.normalise_volume`); a slice pydicom decodes spoils them.
    ``out`` is a float32 array of the volume's shape to read into (else a new one).

    Returns
    -------
    (Volume, dict)
        The volume with its float32 ``array``, and file path → SHA-256 hex digest.

    Raises
    ------
    DicomError
        If a file is truncated, has no (or undecodable) pixel data, or pixels of another shape.
    """
    import hashlib

    if len(sources) != geometry.shape[0]:
        raise DicomError(f"series {geometry.label}", f"has {len(sources)} files for {geometry.shape[0]} slices")
    if out is not None and (out.shape != geometry.shape or out.dtype != np.float32):
        raise ValueError(f"out must be float32 of shape {geometry.shape}")
    array = np.empty(geometry.shape, dtype=np.float32) if out is None else out
    digests: dict[str, str] = {}
    buffer = bytearray()
    for k, source in enumerate(sources):
        try:
            data, buffer = _read_file(source.path, buffer)
        except OSError as exc:
            raise DicomError(str(source.path), f"cannot be read ({type(exc).__name__})") from None
        digests[str(source.path)] = hashlib.sha256(data).hexdigest()
        pixels = _native_pixels(data, source, geometry.matrix)
        if counts is not None:
            if pixels is None:
                counts.spoil()
            else:
                counts.add(pixels, source.rescale)
        if pixels is None:
            array[k] = _decoded_pixels(data, source, geometry.matrix)
        elif source.rescale is not None:  # exactly as pydicom's apply_rescale
            value = pixels.astype(np.float64) * source.rescale[0]
            value += source.rescale[1]
            array[k] = value
        else:
            array[k] = pixels
    return replace(geometry, array=array), digests


def read_volume(instances: Sequence[Instance], label: str, *, allow_uneven: bool = False) -> Volume:
    """Read an image series (one file per slice) into a :class:`Volume`.

    Parameters
    ----------
    instances:
        The series' files (any order).
    label:
        How messages name the series (no PHI).
    allow_uneven:
        Accept uneven slice spacing (positions are still exact; ``slice_spacing``
        is then the mean).

    Raises
    ------
    GeometryError
        See :func:`volume_geometry`.
    DicomError
        If a file is truncated or has no pixel data.
    """
    volume, order = volume_geometry(instances, label, allow_uneven=allow_uneven)
    return read_volume_pixels(volume, [pixel_source(instances[i]) for i in order])[0]
