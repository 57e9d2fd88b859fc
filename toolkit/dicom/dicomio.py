"""Find DICOM files under a folder and sort them into image series, RTSTRUCTs and SEGs.

Only headers are read here (``stop_before_pixels``); pixels are read per series,
one volume at a time, by :mod:`segkit.dicom.volume`.
"""

from __future__ import annotations

import logging
import os
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

from segkit.errors import DicomError, InputError

__all__ = ["Instance", "Scan", "RTSTRUCT_STORAGE", "SEG_STORAGE", "scan_folder", "read_header",
           "read_header_and_offset", "read_dataset"]

log = logging.getLogger(__name__)

RTSTRUCT_STORAGE = "1.2.840.10008.5.1.4.1.1.481.3"
SEG_STORAGE = "1.2.840.10008.5.1.4.1.1.66.4"
#: File name endings that are never DICOM; they are skipped (and counted) instead of failing the scan.
NOT_DICOM_SUFFIXES = frozenset({
    ".json", ".jsonl", ".txt", ".md", ".csv", ".tsv", ".nrrd", ".nii", ".gz", ".png", ".jpg", ".jpeg",
    ".html", ".pdf", ".xml", ".yaml", ".yml", ".log", ".py", ".zip", ".h5", ".npy",
})


@dataclass(frozen=True)
class Instance:
    """One DICOM file: where it is and its header (no pixel data).

    ``pixel_offset`` is where the header ends in the file (the Pixel Data
    element, if any, starts there), or ``None`` if unknown; it lets a reader
    take the pixels straight from the file bytes without parsing the header
    again (:func:`segkit.dicom.volume.read_volume_pixels`).
    """

    path: Path
    header: Dataset
    pixel_offset: int | None = None

    @property
    def sop_instance_uid(self) -> str:
        return str(self.header.SOPInstanceUID)


@dataclass
class Scan:
    """What :func:`scan_folder` found."""

    root: Path
    images: dict[str, list[Instance]] = field(default_factory=dict)  # SeriesInstanceUID → instances
    rtstructs: list[Instance] = field(default_factory=list)
    segs: list[Instance] = field(default_factory=list)
    skipped: dict[str, int] = field(default_factory=dict)  # reason → count
    files: list[Path] = field(default_factory=list)  # every DICOM file used or skipped-by-class

    def label(self, path: Path) -> str:
        """A path relative to the scanned root, for messages."""
        try:
            return path.relative_to(self.root).as_posix()
        except ValueError:
            return str(path)


def read_header(path: Path) -> Dataset:
    """Read a DICOM file's header (no pixel data).

    Raises
    ------
    DicomError
        If the file is not DICOM or cannot be parsed.
    """
    return read_header_and_offset(path)[0]


def read_header_and_offset(path: Path) -> tuple[Dataset, int | None]:
    """Read a DICOM file's header (no pixel data) and the file offset where it stops.

    Raises
    ------
    DicomError
        If the file is not DICOM or cannot be parsed.
    """
    try:
        with open(path, "rb") as fh:
            header = pydicom.dcmread(fh, stop_before_pixels=True)
            return header, fh.tell()
    except InvalidDicomError:
        raise DicomError(str(path), "is not a DICOM file (no DICM preamble)") from None
    except (EOFError, OSError, ValueError, KeyError, TypeError) as exc:
        raise DicomError(str(path), f"cannot be parsed as DICOM ({type(exc).__name__}); is it truncated?") from None


def read_dataset(path: Path) -> Dataset:
    """Read a whole DICOM file, pixel data included (decoding is left to the caller).

    Raises
    ------
    DicomError
        If the file is not DICOM or cannot be parsed (e.g. truncated inside its header).
    """
    try:
        ds = pydicom.dcmread(path)
    except InvalidDicomError:
        raise DicomError(str(path), "is not a DICOM file (no DICM preamble)") from None
    except (EOFError, OSError, ValueError, KeyError, TypeError) as exc:
        raise DicomError(str(path), f"cannot be parsed as DICOM ({type(exc).__name__}); is it truncated?") from None
    return ds


def _is_segkit_record(path: Path) -> bool:
    """segkit's own records beside DICOM (anonymize's audit and settings): not worth a "skipped" line."""
    return path.name.startswith("segkit-") and path.suffix in (".json", ".jsonl")


def _walk(root: Path) -> Iterable[Path]:
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if not name.startswith("."):
                yield Path(dirpath) / name


def scan_folder(root: str | os.PathLike[str], *, progress: bool = False) -> Scan:
    """Read every DICOM header under ``root`` and group the files.

    Image instances (anything with pixel data that is not a SEG) are grouped by
    SeriesInstanceUID; RTSTRUCTs and SEGs are listed.  Files whose name ends in
    a known non-DICOM suffix (``.json``, ``.nrrd`` …) and DICOM objects of other
    classes (SR, presentation states …) are skipped and counted.

    Raises
    ------
    InputError
        If ``root`` is not a folder or holds no DICOM file.
    DicomError
        If a file that should be DICOM is not, or is truncated.
    """
    root = Path(root)
    if not root.is_dir():
        raise InputError(str(root), "is not a folder")
    scan = Scan(root=root)
    skipped: dict[str, int] = defaultdict(int)
    paths = list(_walk(root))
    if progress:
        from tqdm import tqdm

        paths = tqdm(paths, desc="scan", unit="file", leave=False)
    images: dict[str, list[Instance]] = defaultdict(list)
    for path in paths:
        if _is_segkit_record(path):
            continue
        if path.suffix.lower() in NOT_DICOM_SUFFIXES:
            skipped["not DICOM (by file name)"] += 1
            continue
        header, offset = read_header_and_offset(path)
        sop_class = str(header.get("SOPClassUID", ""))
        instance = Instance(path, header, offset)
        if sop_class == RTSTRUCT_STORAGE:
            scan.rtstructs.append(instance)
        elif sop_class == SEG_STORAGE:
            scan.segs.append(instance)
        elif "Rows" in header and "Columns" in header and "SeriesInstanceUID" in header:
            if int(header.get("NumberOfFrames", 1) or 1) > 1:
                skipped["multi-frame image (not supported)"] += 1
                continue
            images[str(header.SeriesInstanceUID)].append(instance)
        else:
            skipped[f"{header.get('Modality', 'unknown')} object without an image"] += 1
            continue
        scan.files.append(path)
    scan.images = dict(images)
    scan.skipped = dict(skipped)
    if not scan.files:
        raise InputError(str(root), "holds no DICOM image, RTSTRUCT or SEG file")
    for reason, count in sorted(scan.skipped.items()):
        log.info("skipped %d file(s): %s", count, reason)
    return scan
