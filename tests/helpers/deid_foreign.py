"""A corpus of DICOM that segkit did not write, for the de-identification tests (not a test module).

Built here, from pydicom, highdicom and OpenCV, the way other tools write it:

- :func:`mr_patient`: an MR series as a scanner that fills in little writes it (Burned In
  Annotation = NO, no Image Type), a pydicom-built RTSTRUCT and a highdicom SEG on it;
- :func:`secondary_capture`: a secondary capture with a patient's name rendered into its pixels
  (grey or RGB, optionally multi-frame, optionally JPEG-compressed);
- :func:`structured_report`: a Comprehensive SR with PNAME, TEXT, DATE, DATETIME, TIME and UIDREF
  content items nested three levels deep;
- :func:`gsps`: a presentation state with a text object and an acquisition context.

Every identifier planted is returned, so a test can search the output for it independently.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

MR_CLASS = "1.2.840.10008.5.1.4.1.1.4"
SC_CLASS = "1.2.840.10008.5.1.4.1.1.7"
SC_MULTIFRAME_GREY = "1.2.840.10008.5.1.4.1.1.7.2"
SC_MULTIFRAME_RGB = "1.2.840.10008.5.1.4.1.1.7.4"
RTSTRUCT_CLASS = "1.2.840.10008.5.1.4.1.1.481.3"
COMPREHENSIVE_SR = "1.2.840.10008.5.1.4.1.1.88.33"
GSPS_CLASS = "1.2.840.10008.5.1.4.1.1.11.1"
_PREFIX = "1.2.826.0.1.3680043.10.1001."  # a made-up root: every UID below is random under it


@dataclass
class Patient:
    """One invented patient and everything that identifies them."""

    family: str
    given: str
    mrn: str
    birth: str
    study_date: str
    accession: str
    study_uid: str = field(default_factory=lambda: generate_uid(_PREFIX))
    frame_uid: str = field(default_factory=lambda: generate_uid(_PREFIX))

    @property
    def name(self) -> str:
        return f"{self.family}^{self.given}"

    def identifiers(self) -> set[str]:
        """What an independent scan of the output must not find (names, IDs, dates, the study UID)."""
        y, m, d = self.study_date[:4], self.study_date[4:6], self.study_date[6:]
        return {self.family, self.given, self.mrn, self.birth, self.study_date, self.accession,
                f"{d}/{m}/{y}", self.study_uid}


PATIENTS = (
    Patient("Wolkenstein", "Adalbert", "KH20417733", "19580214", "20220307", "ACC7302211"),
    Patient("Brennholz", "Theodora", "KH20419154", "19710930", "20220411", "ACC7302877"),
    Patient("Quappendorf", "Leopoldine", "KH20420086", "19640519", "20220502", "ACC7303514"),
)


def _meta(sop_class: str, sop_instance: str, ts: str = ExplicitVRLittleEndian) -> FileMetaDataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = sop_instance
    meta.TransferSyntaxUID = ts
    meta.ImplementationClassUID = "1.2.826.0.1.3680043.10.1001.9"
    return meta


def _common(ds: Dataset, p: Patient, modality: str, sop_class: str, series_uid: str) -> None:
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = generate_uid(_PREFIX)
    ds.file_meta = _meta(sop_class, ds.SOPInstanceUID)
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = p.study_date
    ds.StudyTime = ds.SeriesTime = ds.ContentTime = "101500"
    ds.AccessionNumber = p.accession
    ds.Modality = modality
    ds.Manufacturer = "Nordlicht Medical"
    ds.InstitutionName = "Klinikum Sonnenfeld"
    ds.ReferringPhysicianName = "Hufnagel^Korbinian"
    ds.StudyDescription = "MRT Schaedel nativ"
    ds.PatientName = p.name
    ds.PatientID = p.mrn
    ds.PatientBirthDate = p.birth
    ds.PatientSex = "F"
    ds.StudyInstanceUID = p.study_uid
    ds.SeriesInstanceUID = series_uid
    ds.StudyID = p.accession[-4:]
    ds.SeriesNumber = 3
    ds.InstanceNumber = 1


def _save(ds: Dataset, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


def mr_patient(root: Path, p: Patient, *, slices: int = 6, size: int = 48, spacing: float = 2.5
               ) -> tuple[list[Path], Path, Path]:
    """An MR series (Burned In Annotation = NO, no Image Type), its RTSTRUCT (pydicom) and SEG (highdicom).

    The tumour is a square on the middle slices; the RTSTRUCT traces its pixel edges, so the
    even-odd pixel-centre rule gives it back exactly.  Returns ``(images, rtstruct, seg)``.
    """
    series = generate_uid(_PREFIX)
    rng = np.random.default_rng(sum(map(ord, p.mrn)))
    yy, xx = np.mgrid[:size, :size]
    head = ((yy - size / 2) ** 2 + (xx - size / 2) ** 2 < (0.42 * size) ** 2)
    mask = np.zeros((slices, size, size), bool)
    lo, hi = size // 3, size // 3 + size // 5
    mask[1:slices - 1, lo:hi, lo + 2:hi + 2] = True
    images, datasets = [], []
    for k in range(slices):
        ds = Dataset()
        _common(ds, p, "MR", MR_CLASS, series)
        ds.BurnedInAnnotation = "NO"  # and no ImageType at all, as some scanners and converters write
        ds.SeriesDescription = "t1_se_tra"
        ds.InstanceNumber = k + 1
        ds.FrameOfReferenceUID = p.frame_uid
        ds.PositionReferenceIndicator = ""
        ds.ImagePositionPatient = [-60.0, -60.0, 10.0 + k * spacing]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.PixelSpacing = [2.5, 2.5]
        ds.SliceThickness = spacing
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.Rows = ds.Columns = size
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
        img = head * 900 + mask[k] * 600 + rng.integers(0, 60, (size, size))
        ds.PixelData = img.astype(np.uint16).tobytes()
        ds.ScanningSequence, ds.SequenceVariant, ds.ScanOptions, ds.MRAcquisitionType = "SE", "NONE", "", "2D"
        ds.RepetitionTime, ds.EchoTime, ds.EchoTrainLength = 500, 15, 1
        images.append(_save(ds, root / "MR" / f"IM{k:04d}"))
        datasets.append(ds)
    rt = _save(_rtstruct(datasets, mask, p, size, spacing), root / "RT" / "RS0001")
    seg = _save(_seg(datasets, mask), root / "SEG" / "SG0001")
    return images, rt, seg


def _rtstruct(mr: list[Dataset], mask: np.ndarray, p: Patient, size: int, spacing: float) -> Dataset:
    ds = Dataset()
    _common(ds, p, "RTSTRUCT", RTSTRUCT_CLASS, generate_uid(_PREFIX))
    ds.OperatorsName = "Sauerampfer^Gisela"
    ds.FrameOfReferenceUID = p.frame_uid
    ds.StructureSetLabel = "RS1"
    ds.StructureSetName = f"{p.family} plan"
    ds.StructureSetDate, ds.StructureSetTime = p.study_date, "120000"

    def ref(im: Dataset) -> Dataset:
        r = Dataset()
        r.ReferencedSOPClassUID, r.ReferencedSOPInstanceUID = im.SOPClassUID, im.SOPInstanceUID
        return r

    series_ref = Dataset()
    series_ref.SeriesInstanceUID = mr[0].SeriesInstanceUID
    series_ref.ContourImageSequence = Sequence([ref(im) for im in mr])
    study_ref = Dataset()
    study_ref.ReferencedSOPClassUID = "1.2.840.10008.3.1.2.3.1"
    study_ref.ReferencedSOPInstanceUID = p.study_uid
    study_ref.RTReferencedSeriesSequence = Sequence([series_ref])
    for_ref = Dataset()
    for_ref.FrameOfReferenceUID = p.frame_uid
    for_ref.RTReferencedStudySequence = Sequence([study_ref])
    ds.ReferencedFrameOfReferenceSequence = Sequence([for_ref])
    roi = Dataset()
    roi.ROINumber, roi.ReferencedFrameOfReferenceUID, roi.ROIName = 1, p.frame_uid, "GTV"
    roi.ROIGenerationAlgorithm = "MANUAL"
    ds.StructureSetROISequence = Sequence([roi])
    contours = []
    for k in range(mask.shape[0]):
        ys, xs = np.nonzero(mask[k])
        if not len(ys):
            continue
        # pixel edges of the square (pixel centres at -60 + 2.5 i): corners half a pixel outside
        x0, x1 = -60 + 2.5 * (xs.min() - 0.5), -60 + 2.5 * (xs.max() + 0.5)
        y0, y1 = -60 + 2.5 * (ys.min() - 0.5), -60 + 2.5 * (ys.max() + 0.5)
        z = 10.0 + k * spacing
        c = Dataset()
        c.ContourImageSequence = Sequence([ref(mr[k])])
        c.ContourGeometricType = "CLOSED_PLANAR"
        c.NumberOfContourPoints = 4
        c.ContourData = [x0, y0, z, x1, y0, z, x1, y1, z, x0, y1, z]
        contours.append(c)
    rc = Dataset()
    rc.ReferencedROINumber, rc.ROIDisplayColor, rc.ContourSequence = 1, [255, 0, 0], Sequence(contours)
    ds.ROIContourSequence = Sequence([rc])
    obs = Dataset()
    obs.ObservationNumber, obs.ReferencedROINumber, obs.RTROIInterpretedType = 1, 1, "GTV"
    obs.ROIInterpreter = "Hufnagel^Korbinian"
    ds.RTROIObservationsSequence = Sequence([obs])
    return ds


def _seg(mr: list[Dataset], mask: np.ndarray) -> Dataset:
    import highdicom as hd
    from pydicom.sr.codedict import codes

    desc = hd.seg.SegmentDescription(
        segment_number=1, segment_label="GTV",
        segmented_property_category=codes.SCT.MorphologicallyAbnormalStructure,
        segmented_property_type=codes.SCT.Neoplasm, algorithm_type=hd.seg.SegmentAlgorithmTypeValues.MANUAL)
    return hd.seg.Segmentation(
        source_images=mr, pixel_array=mask.astype(np.uint8),
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY, segment_descriptions=[desc],
        series_instance_uid=generate_uid(_PREFIX), series_number=50, sop_instance_uid=generate_uid(_PREFIX),
        instance_number=1, manufacturer="Other Tool", manufacturer_model_name="labeller",
        software_versions="1.0", device_serial_number="SN-118822", content_creator_name="Sauerampfer^Gisela")


def text_image(lines: list[str], shape: tuple[int, int] = (256, 512), *, colour: bool = False,
               value: int = 255) -> np.ndarray:
    """A dark image with *lines* rendered large (OpenCV's Hershey font), as a screen save shows them."""
    import cv2

    h, w = shape
    img = np.zeros((h, w, 3) if colour else (h, w), np.uint8)
    yy, xx = np.mgrid[:h, :w]
    img[...] = (((yy - h * 0.6) ** 2 / (0.3 * h) ** 2 + (xx - w / 2) ** 2 / (0.25 * w) ** 2) < 1)[
        (...,) + ((None,) if colour else ())] * 90  # an 'organ' that is no text
    for i, line in enumerate(lines):
        cv2.putText(img, line, (12, 40 + 44 * i), cv2.FONT_HERSHEY_SIMPLEX, 1.1,
                    (value, value // 2 if colour else value, 40 if colour else value), 2, cv2.LINE_AA)
    return img


def secondary_capture(path: Path, p: Patient, *, colour: bool = False, frames: int = 1, text: bool = True,
                      compress: str | None = None) -> Path:
    """A secondary capture whose pixels show the patient's name and MRN (or no text, ``text=False``).

    ``compress="jpeg"`` stores the frame as JPEG baseline (encoded by OpenCV), as a PACS screen save may.
    """
    lines = [f"{p.given} {p.family}".upper(), f"ID {p.mrn}"] if text else []
    frame = text_image(lines, colour=colour)
    arr = np.stack([frame] * frames) if frames > 1 else frame
    ds = Dataset()
    sop = SC_CLASS if frames == 1 else (SC_MULTIFRAME_RGB if colour else SC_MULTIFRAME_GREY)
    _common(ds, p, "OT", sop, generate_uid(_PREFIX))
    ds.ConversionType = "WSD"
    ds.SeriesDescription = "Screen save"
    ds.SamplesPerPixel = 3 if colour else 1
    ds.PhotometricInterpretation = "RGB" if colour else "MONOCHROME2"
    if colour:
        ds.PlanarConfiguration = 0
    ds.Rows, ds.Columns = frame.shape[:2]
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    if frames > 1:
        ds.NumberOfFrames = frames
    ds.PixelData = arr.tobytes()
    if compress == "jpeg":
        from pydicom.encaps import encapsulate

        import cv2

        if frames > 1 or colour:
            raise ValueError("the JPEG builder writes single grey frames only")
        ok, jpg = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, 95])
        assert ok
        ds.PixelData = encapsulate([jpg.tobytes()])
        ds["PixelData"].VR = "OB"
        ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.4.50"
        ds.LossyImageCompression = "01"
    return _save(ds, path)


def _item(value_type: str, concept: tuple[str, str, str], relationship: str = "CONTAINS") -> Dataset:
    item = Dataset()
    item.RelationshipType = relationship
    item.ValueType = value_type
    code = Dataset()
    code.CodeValue, code.CodingSchemeDesignator, code.CodeMeaning = concept
    item.ConceptNameCodeSequence = Sequence([code])
    return item


def structured_report(path: Path, p: Patient, referenced: str | None = None) -> Path:
    """A Comprehensive SR whose content tree names the patient in PNAME, TEXT, DATE, DATETIME and UIDREF items."""
    ds = Dataset()
    _common(ds, p, "SR", COMPREHENSIVE_SR, generate_uid(_PREFIX))
    ds.CompletionFlag, ds.VerificationFlag = "COMPLETE", "UNVERIFIED"
    ds.ValueType = "CONTAINER"
    ds.ContinuityOfContent = "SEPARATE"
    title = Dataset()
    title.CodeValue, title.CodingSchemeDesignator, title.CodeMeaning = "18748-4", "LN", "Diagnostic Imaging Report"
    ds.ConceptNameCodeSequence = Sequence([title])
    observer = _item("PNAME", ("121008", "DCM", "Person Observer Name"), "HAS OBS CONTEXT")
    observer.PersonName = "Hufnagel^Korbinian"
    subject = _item("PNAME", ("121029", "DCM", "Subject Name"), "HAS OBS CONTEXT")
    subject.PersonName = p.name
    finding = _item("TEXT", ("121071", "DCM", "Finding"))
    finding.TextValue = (f"Patient {p.given} {p.family} (MRN {p.mrn}, born {p.birth[6:]}.{p.birth[4:6]}."
                         f"{p.birth[:4]}): no change since {p.study_date}.")
    when = _item("DATE", ("111060", "DCM", "Study Date"))
    when.Date = p.study_date
    stamp = _item("DATETIME", ("111526", "DCM", "DateTime Started"))
    stamp.DateTime = p.study_date + "101500"
    time = _item("TIME", ("111527", "DCM", "Time Started"))
    time.Time = "101500"
    uid = _item("UIDREF", ("110180", "DCM", "Study Instance UID"))
    uid.UID = p.study_uid
    innermost = _item("CONTAINER", ("121070", "DCM", "Findings"))
    innermost.ContinuityOfContent = "SEPARATE"
    innermost.ContentSequence = Sequence([finding, when, stamp, time, uid])
    middle = _item("CONTAINER", ("111028", "DCM", "Image Library"))
    middle.ContinuityOfContent = "SEPARATE"
    middle.ContentSequence = Sequence([subject, innermost])
    if referenced:
        image = _item("IMAGE", ("121200", "DCM", "Illustration of ROI"))
        ref = Dataset()
        ref.ReferencedSOPClassUID, ref.ReferencedSOPInstanceUID = MR_CLASS, referenced
        image.ReferencedSOPSequence = Sequence([ref])
        middle.ContentSequence.append(image)
    ds.ContentSequence = Sequence([observer, middle])
    return _save(ds, path)


def gsps(path: Path, p: Patient, referenced: str) -> Path:
    """A Grayscale Softcopy Presentation State with a text annotation naming the patient."""
    ds = Dataset()
    _common(ds, p, "PR", GSPS_CLASS, generate_uid(_PREFIX))
    ds.ContentLabel = "ANNOT"
    ds.ContentCreatorName = "Hufnagel^Korbinian"
    ds.PresentationCreationDate, ds.PresentationCreationTime = p.study_date, "130000"
    ref_series = Dataset()
    ref_image = Dataset()
    ref_image.ReferencedSOPClassUID, ref_image.ReferencedSOPInstanceUID = MR_CLASS, referenced
    ref_series.ReferencedImageSequence = Sequence([ref_image])
    ds.ReferencedSeriesSequence = Sequence([ref_series])
    text = Dataset()
    text.UnformattedTextValue = f"{p.given} {p.family} {p.mrn}"
    text.AnchorPointAnnotationUnits = "PIXEL"
    text.AnchorPoint = [10.0, 10.0]
    text.AnchorPointVisibility = "N"
    layer = Dataset()
    layer.GraphicLayer = "TEXT"
    layer.TextObjectSequence = Sequence([text])
    ds.GraphicAnnotationSequence = Sequence([layer])
    context = Dataset()
    context.ValueType = "TEXT"
    code = Dataset()
    code.CodeValue, code.CodingSchemeDesignator, code.CodeMeaning = "121106", "DCM", "Comment"
    context.ConceptNameCodeSequence = Sequence([code])
    context.TextValue = f"for {p.family}"
    ds.AcquisitionContextSequence = Sequence([context])
    return _save(ds, path)


def plant_in_free_text(path: Path, other: Patient) -> Path:
    """Write *other*'s name into a descriptor of the file at *path* (a clean-descriptors element)."""
    ds = pydicom.dcmread(path)
    ds.StudyDescription = f"MRT Schaedel, Vergleich mit {other.family}"
    ds.save_as(path)
    return path
