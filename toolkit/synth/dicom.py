"""Write the synthetic phantom as real DICOM: MR images, an RTSTRUCT and a DICOM SEG.

The MR headers carry what a real scanner writes, PHI included (all of it invented,
see :mod:`segkit.synth.phi`); the RTSTRUCT follows the RT Structure Set IOD with
CLOSED_PLANAR contours along the pixel edges of the truth mask; the SEG is written
by highdicom.  Nothing depends on the clock, so the bytes depend only on the inputs.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, RTStructureSetStorage

from segkit._version import __version__
from segkit.synth.contours import mask_to_polygons
from segkit.synth.geometry import SliceGeometry
from segkit.synth.phi import FakeIdentity
from segkit.dicom.uids import IMPLEMENTATION_UID, uid_from

__all__ = ["SeriesUIDs", "make_uids", "mr_datasets", "rtstruct_dataset", "seg_dataset", "IMPLEMENTATION_UID"]

MANUFACTURER = "segkit synthetic scanner"
PRIVATE_CREATOR = "SEGKIT SYNTH PHI"


class SeriesUIDs:
    """Deterministic UIDs of one synthetic patient (``2.25.<int>`` from a hash of the inputs)."""

    def __init__(self, fingerprint: str, patient: str, slices: int) -> None:
        uid = lambda *parts: uid_from(fingerprint, patient, *parts)  # noqa: E731
        self.study = uid("study")
        self.frame_of_reference = uid("frame of reference")
        self.mr_series = uid("mr series")
        self.mr_instances = [uid("mr instance", str(k)) for k in range(slices)]
        self.rt_series = uid("rtstruct series")
        self.rt_instance = uid("rtstruct instance")
        self.seg_series = uid("seg series")
        self.seg_instance = uid("seg instance")


def make_uids(fingerprint: str, patient: str, slices: int) -> SeriesUIDs:
    """UIDs for ``patient`` in the cohort identified by ``fingerprint``."""
    return SeriesUIDs(fingerprint, patient, slices)


def _da(d: dt.date) -> str:
    return d.strftime("%Y%m%d")


def _tm(t: dt.datetime) -> str:
    return t.strftime("%H%M%S")


def _ds(v: float, decimals: int = 4) -> str:
    """A DS string of at most 16 characters without needless zeros."""
    s = f"{v:.{decimals}f}".rstrip("0").rstrip(".")
    return "0" if s in ("-0", "") else s


def _file_meta(sop_class: str, sop_instance: str) -> FileMetaDataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = sop_instance
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = IMPLEMENTATION_UID
    meta.ImplementationVersionName = f"SEGKIT_{__version__}"[:16]
    return meta


def _patient_and_study(ds: Dataset, who: FakeIdentity, uids: SeriesUIDs, study_id: str) -> None:
    """Patient, Patient Study and General Study modules (shared by every object of the study)."""
    ds.PatientName = who.patient_name
    ds.PatientID = who.patient_id
    ds.IssuerOfPatientID = who.institution
    other = Dataset()
    other.PatientID = who.other_patient_id
    other.IssuerOfPatientID = "NATIONAL HEALTH REGISTRY"
    other.TypeOfPatientID = "TEXT"
    ds.OtherPatientIDsSequence = DicomSequence([other])
    ds.PatientBirthDate = _da(who.birth_date)
    ds.PatientSex = who.sex
    ds.PatientAge = who.age
    ds.PatientSize = f"{who.size_m:.2f}"
    ds.PatientWeight = f"{who.weight_kg:.1f}"
    ds.PatientAddress = who.address
    ds.PatientTelephoneNumbers = who.phone
    ds.PatientComments = f"{who.given_name} {who.family_name} referred with headaches; prior MRI at {who.institution}."
    ds.StudyInstanceUID = uids.study
    ds.StudyDate = _da(who.study_datetime)
    ds.StudyTime = _tm(who.study_datetime)
    ds.ReferringPhysicianName = who.referring_physician
    ds.StudyID = study_id
    ds.AccessionNumber = who.accession
    ds.StudyDescription = "MR BRAIN W/WO CONTRAST"


def _equipment(ds: Dataset, who: FakeIdentity) -> None:
    ds.Manufacturer = MANUFACTURER
    ds.InstitutionName = who.institution
    ds.InstitutionAddress = who.institution_address
    ds.StationName = who.station_name
    ds.InstitutionalDepartmentName = "Neuroradiology"
    ds.ManufacturerModelName = "Phantom 1.5T"
    ds.DeviceSerialNumber = who.device_serial
    ds.SoftwareVersions = f"segkit {__version__}"


def _private_block(ds: Dataset, who: FakeIdentity) -> None:
    """A vendor-style private block holding the name and ID again (LO and UN)."""
    block = ds.private_block(0x0029, PRIVATE_CREATOR, create=True)
    block.add_new(0x10, "LO", who.patient_name)
    block.add_new(0x11, "LO", who.patient_id)
    raw = f"{who.patient_name}|{who.patient_id}|{_da(who.birth_date)}".encode("ascii")
    block.add_new(0x12, "UN", raw + b" " * (len(raw) % 2))


def mr_datasets(image: np.ndarray, geometry: SliceGeometry, who: FakeIdentity, uids: SeriesUIDs,
                weighting: str, study_id: str) -> list[Dataset]:
    """One MR Image Storage dataset per slice of ``image`` (``z, y, x`` uint16)."""
    nz, ny, nx = image.shape
    series_time = who.study_datetime + dt.timedelta(minutes=4)
    t1 = weighting == "T1"
    out = []
    for k in range(nz):
        ds = Dataset()
        ds.file_meta = _file_meta(MRImageStorage, uids.mr_instances[k])
        ds.SpecificCharacterSet = "ISO_IR 100"
        ds.ImageType = ["ORIGINAL", "PRIMARY", "OTHER"]
        ds.InstanceCreationDate = _da(who.study_datetime)
        ds.InstanceCreationTime = _tm(series_time + dt.timedelta(seconds=60 + k))
        ds.SOPClassUID = MRImageStorage
        ds.SOPInstanceUID = uids.mr_instances[k]
        _patient_and_study(ds, who, uids, study_id)
        acq = series_time + dt.timedelta(seconds=k)
        ds.SeriesDate = ds.AcquisitionDate = ds.ContentDate = _da(series_time)
        ds.SeriesTime = _tm(series_time)
        ds.AcquisitionTime = ds.ContentTime = _tm(acq)
        ds.Modality = "MR"
        _equipment(ds, who)
        ds.SeriesDescription = f"AX {weighting} SE"
        ds.ProtocolName = f"BRAIN_{weighting}_AX"
        ds.PerformingPhysicianName = who.performing_physician
        ds.OperatorsName = who.operator
        ds.BodyPartExamined = "HEAD"
        ds.PatientPosition = "HFS"
        ds.SeriesInstanceUID = uids.mr_series
        ds.SeriesNumber = 2 if t1 else 3
        request = Dataset()
        request.AccessionNumber = who.accession
        request.RequestedProcedureID = f"RP{who.patient_id[3:]}"
        request.ScheduledProcedureStepID = f"SPS{who.patient_id[3:]}"
        request.RequestedProcedureDescription = f"MRI brain for {who.given_name} {who.family_name}"
        ds.RequestAttributesSequence = DicomSequence([request])
        # MR Image module
        ds.ScanningSequence = "SE"
        ds.SequenceVariant = "SP"
        ds.ScanOptions = ""
        ds.MRAcquisitionType = "2D"
        ds.RepetitionTime = "550" if t1 else "4200"
        ds.EchoTime = "12" if t1 else "95"
        ds.EchoTrainLength = "1" if t1 else "16"
        ds.MagneticFieldStrength = "1.5"
        ds.ImagedNucleus = "1H"
        ds.SliceThickness = _ds(geometry.slice_thickness)
        ds.SpacingBetweenSlices = _ds(geometry.slice_thickness)
        ds.AcquisitionNumber = 1
        ds.InstanceNumber = k + 1
        ds.ImagePositionPatient = [_ds(v) for v in geometry.positions[k]]
        ds.ImageOrientationPatient = [_ds(v, 6) for v in geometry.orientation]
        ds.FrameOfReferenceUID = uids.frame_of_reference
        ds.PositionReferenceIndicator = ""
        ds.SliceLocation = _ds(geometry.slice_location(k))
        ds.ImageComments = f"Pt {who.family_name}, {who.given_name}: follow-up in 3 months"
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.Rows, ds.Columns = ny, nx
        ds.PixelSpacing = [_ds(v) for v in geometry.pixel_spacing]
        ds.BitsAllocated = 16
        ds.BitsStored = 12
        ds.HighBit = 11
        ds.PixelRepresentation = 0
        ds.WindowCenter = "800" if t1 else "900"
        ds.WindowWidth = "1600" if t1 else "2000"
        _private_block(ds, who)
        ds.PixelData = np.ascontiguousarray(image[k], dtype="<u2").tobytes()
        out.append(ds)
    return out


def rtstruct_dataset(mr: Sequence[Dataset], mask: np.ndarray, geometry: SliceGeometry, who: FakeIdentity,
                     uids: SeriesUIDs, roi_name: str = "GTV") -> Dataset:
    """An RT Structure Set with one ROI whose contours trace the pixel edges of ``mask``.

    Each slice's outer boundaries and hole boundaries become separate CLOSED_PLANAR
    contours; filled together with the even-odd rule they give back ``mask`` exactly.
    """
    created = who.study_datetime + dt.timedelta(hours=26)
    ds = Dataset()
    ds.file_meta = _file_meta(RTStructureSetStorage, uids.rt_instance)
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.InstanceCreationDate = _da(created)
    ds.InstanceCreationTime = _tm(created)
    ds.SOPClassUID = RTStructureSetStorage
    ds.SOPInstanceUID = uids.rt_instance
    _patient_and_study(ds, who, uids, mr[0].StudyID)
    ds.Modality = "RTSTRUCT"
    ds.SeriesInstanceUID = uids.rt_series
    ds.SeriesNumber = 901
    ds.SeriesDate = _da(created)
    ds.SeriesTime = _tm(created)
    ds.SeriesDescription = "Expert tumour contours"
    ds.OperatorsName = who.operator
    _equipment(ds, who)
    ds.FrameOfReferenceUID = uids.frame_of_reference
    ds.PositionReferenceIndicator = ""
    ds.StructureSetLabel = "GTV contours"
    ds.StructureSetName = f"Plan for {who.family_name}"
    ds.StructureSetDate = _da(created)
    ds.StructureSetTime = _tm(created)
    ds.InstanceNumber = 1

    def image_ref(k: int) -> Dataset:
        ref = Dataset()
        ref.ReferencedSOPClassUID = MRImageStorage
        ref.ReferencedSOPInstanceUID = mr[k].SOPInstanceUID
        return ref

    series_ref = Dataset()
    series_ref.SeriesInstanceUID = uids.mr_series
    series_ref.ContourImageSequence = DicomSequence([image_ref(k) for k in range(len(mr))])
    study_ref = Dataset()
    study_ref.ReferencedSOPClassUID = "1.2.840.10008.3.1.2.3.1"  # Detached Study Management (retired; customary here)
    study_ref.ReferencedSOPInstanceUID = uids.study
    study_ref.RTReferencedSeriesSequence = DicomSequence([series_ref])
    for_ref = Dataset()
    for_ref.FrameOfReferenceUID = uids.frame_of_reference
    for_ref.RTReferencedStudySequence = DicomSequence([study_ref])
    ds.ReferencedFrameOfReferenceSequence = DicomSequence([for_ref])

    roi = Dataset()
    roi.ROINumber = 1
    roi.ReferencedFrameOfReferenceUID = uids.frame_of_reference
    roi.ROIName = roi_name
    roi.ROIDescription = "Gross tumour volume"
    roi.ROIGenerationAlgorithm = "MANUAL"
    ds.StructureSetROISequence = DicomSequence([roi])

    contours = []
    for k in range(mask.shape[0]):
        for poly in mask_to_polygons(mask[k]):
            pts = geometry.to_patient(k, poly)
            c = Dataset()
            c.ContourImageSequence = DicomSequence([image_ref(k)])
            c.ContourGeometricType = "CLOSED_PLANAR"
            c.NumberOfContourPoints = len(pts)
            c.ContourNumber = len(contours) + 1
            c.ContourData = [_ds(v) for v in pts.ravel()]
            contours.append(c)
    roi_contour = Dataset()
    roi_contour.ROIDisplayColor = [230, 40, 40]
    roi_contour.ReferencedROINumber = 1
    roi_contour.ContourSequence = DicomSequence(contours)
    ds.ROIContourSequence = DicomSequence([roi_contour])

    obs = Dataset()
    obs.ObservationNumber = 1
    obs.ReferencedROINumber = 1
    obs.ROIObservationLabel = roi_name
    obs.RTROIInterpretedType = "GTV"
    obs.ROIInterpreter = who.referring_physician
    ds.RTROIObservationsSequence = DicomSequence([obs])
    return ds


def seg_dataset(mr: Sequence[Dataset], mask: np.ndarray, who: FakeIdentity, uids: SeriesUIDs,
                label: str = "GTV") -> Dataset:
    """A binary DICOM SEG of ``mask`` on the ``mr`` slices, written by highdicom."""
    import highdicom as hd
    from pydicom.sr.codedict import codes

    from segkit.dicom.segwriter import pin_reproducible

    description = hd.seg.SegmentDescription(
        segment_number=1,
        segment_label=label,
        segmented_property_category=codes.SCT.MorphologicallyAbnormalStructure,
        segmented_property_type=codes.SCT.Neoplasm,
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.MANUAL,
    )
    seg = hd.seg.Segmentation(
        source_images=list(mr),
        pixel_array=mask.astype(np.uint8),
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=[description],
        series_instance_uid=uids.seg_series,
        series_number=902,
        sop_instance_uid=uids.seg_instance,
        instance_number=1,
        manufacturer=MANUFACTURER,
        manufacturer_model_name="segkit synth",
        software_versions=__version__,
        device_serial_number=who.device_serial,
        content_label="GTV",
        content_description="Expert tumour segmentation",
        content_creator_name=who.referring_physician,
        series_description="Expert tumour segmentation",
    )
    # highdicom stamps the wall clock: pin every date/time to the study's so the bytes are reproducible.
    pin_reproducible(seg, who.study_datetime + dt.timedelta(hours=26))
    return seg
