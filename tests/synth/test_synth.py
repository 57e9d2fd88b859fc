"""The synthetic cohort: real, valid DICOM whose RTSTRUCT and SEG give back the truth exactly."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pydicom
import pytest
from scipy import ndimage

from tests.helpers.polyfill import even_odd_fill
from segkit.errors import OutputExistsError, UsageError
from segkit.synth import SynthConfig, write_cohort
from segkit.synth.contours import mask_to_polygons

PATIENTS = [f"patient-{i:02d}" for i in range(1, 7)]


def read_series(folder: Path) -> list[pydicom.Dataset]:
    return [pydicom.dcmread(p) for p in sorted((folder / "MR").glob("*.dcm"))]


def rtstruct_to_mask(rt: pydicom.Dataset, mr: list[pydicom.Dataset]) -> np.ndarray:
    """Fill the GTV contours on the MR grid, each contour matched to a slice by geometry."""
    x = np.array(mr[0].ImageOrientationPatient[:3], float)
    y = np.array(mr[0].ImageOrientationPatient[3:], float)
    normal = np.cross(x, y)
    row_sp, col_sp = (float(v) for v in mr[0].PixelSpacing)
    ipp = np.array([[float(v) for v in d.ImagePositionPatient] for d in mr])
    heights = ipp @ normal
    polys: dict[int, list[np.ndarray]] = {}
    for contour in rt.ROIContourSequence[0].ContourSequence:
        pts = np.array(contour.ContourData, float).reshape(-1, 3)
        h = pts @ normal
        assert np.ptp(h) < 1e-3, "contour is not planar"
        k = int(np.argmin(np.abs(heights - h.mean())))
        assert abs(heights[k] - h.mean()) < 1e-3, "contour lies on no slice"
        rel = pts - ipp[k]
        polys.setdefault(k, []).append(np.c_[rel @ x / col_sp, rel @ y / row_sp])
    shape = (len(mr), int(mr[0].Rows), int(mr[0].Columns))
    out = np.zeros(shape, bool)
    for k, loops in polys.items():
        out[k] = even_odd_fill(loops, shape[1:])
    return out


def test_every_file_is_read_by_pydicom(synth_cohort: Path) -> None:
    files = sorted(p for p in synth_cohort.rglob("*.dcm"))
    assert len(files) == 6 * (12 + 2)
    for path in files:
        ds = pydicom.dcmread(path)
        assert ds.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian
        if ds.Modality == "MR":
            assert ds.SOPClassUID == pydicom.uid.MRImageStorage
            assert ds.pixel_array.shape == (64, 64) and ds.pixel_array.dtype == np.uint16
            assert ds.PhotometricInterpretation == "MONOCHROME2"
            assert 0 < ds.pixel_array.max() < 4096


def test_cohort_has_four_t1_and_two_t2_patients(synth_cohort: Path) -> None:
    weighting = {}
    for p in PATIENTS:
        mr = read_series(synth_cohort / p)
        assert len({d.SeriesInstanceUID for d in mr}) == 1
        assert len({d.StudyInstanceUID for d in mr}) == 1
        weighting[p] = "T1" if float(mr[0].RepetitionTime) < 1000 else "T2"
        assert mr[0].SeriesDescription == f"AX {weighting[p]} SE"
    assert sorted(weighting.values()) == ["T1"] * 4 + ["T2"] * 2
    manifest = json.loads((synth_cohort / "cohort.json").read_text())
    assert {m["folder"]: m["weighting"] for m in manifest["patients"]} == weighting


def test_patients_have_distinct_studies_and_frames_of_reference(synth_cohort: Path) -> None:
    firsts = [read_series(synth_cohort / p)[0] for p in PATIENTS]
    assert len({d.StudyInstanceUID for d in firsts}) == 6
    assert len({d.FrameOfReferenceUID for d in firsts}) == 6
    assert len({str(d.PatientName) for d in firsts}) >= 2


def test_geometry_is_a_regular_stack_in_instance_order(synth_cohort: Path) -> None:
    mr = read_series(synth_cohort / "patient-02")
    x = np.array(mr[0].ImageOrientationPatient[:3], float)
    y = np.array(mr[0].ImageOrientationPatient[3:], float)
    normal = np.cross(x, y)
    heights = np.array([np.dot([float(v) for v in d.ImagePositionPatient], normal) for d in mr])
    assert [int(d.InstanceNumber) for d in mr] == list(range(1, 13))
    np.testing.assert_allclose(np.diff(heights), 2.0, atol=1e-3)
    assert [float(v) for v in mr[0].PixelSpacing] == [0.84, 0.84]
    assert float(mr[0].SliceThickness) == 2.0
    assert len({d.FrameOfReferenceUID for d in mr}) == 1
    np.testing.assert_allclose([float(d.SliceLocation) for d in mr], heights, atol=1e-3)


@pytest.mark.parametrize("patient", PATIENTS)
def test_seg_read_by_highdicom_equals_truth(synth_cohort: Path, patient: str) -> None:
    import highdicom as hd

    mr = read_series(synth_cohort / patient)
    truth = np.load(synth_cohort / "truth" / f"{patient}.npy")
    seg = hd.seg.segread(synth_cohort / patient / "SEG" / "seg.dcm")
    assert seg.get_segment_description(1).segment_label == "GTV"
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == mr[0].SeriesInstanceUID
    volume = seg.get_pixels_by_source_instance(
        [d.SOPInstanceUID for d in mr], segment_numbers=[1], combine_segments=True, skip_overlap_checks=True
    )
    assert volume.shape == truth.shape
    np.testing.assert_array_equal(volume.astype(bool), truth)
    assert truth.sum() > 0


@pytest.mark.parametrize("patient", PATIENTS)
def test_rtstruct_contours_fill_back_to_truth(synth_cohort: Path, patient: str) -> None:
    mr = read_series(synth_cohort / patient)
    rt = pydicom.dcmread(synth_cohort / patient / "RTSTRUCT" / "rtstruct.dcm")
    truth = np.load(synth_cohort / "truth" / f"{patient}.npy")
    assert rt.StructureSetROISequence[0].ROIName == "GTV"
    assert {c.ContourGeometricType for c in rt.ROIContourSequence[0].ContourSequence} == {"CLOSED_PLANAR"}
    np.testing.assert_array_equal(rtstruct_to_mask(rt, mr), truth)


def test_rtstruct_references_resolve_to_written_images(synth_cohort: Path) -> None:
    for patient in PATIENTS:
        mr = read_series(synth_cohort / patient)
        by_uid = {d.SOPInstanceUID: d for d in mr}
        rt = pydicom.dcmread(synth_cohort / patient / "RTSTRUCT" / "rtstruct.dcm")
        assert rt.StudyInstanceUID == mr[0].StudyInstanceUID
        for_ref = rt.ReferencedFrameOfReferenceSequence[0]
        assert for_ref.FrameOfReferenceUID == mr[0].FrameOfReferenceUID
        series_ref = for_ref.RTReferencedStudySequence[0].RTReferencedSeriesSequence[0]
        assert series_ref.SeriesInstanceUID == mr[0].SeriesInstanceUID
        assert {i.ReferencedSOPInstanceUID for i in series_ref.ContourImageSequence} == set(by_uid)
        assert rt.StructureSetROISequence[0].ReferencedFrameOfReferenceUID == mr[0].FrameOfReferenceUID
        normal = np.cross(*np.array(mr[0].ImageOrientationPatient, float).reshape(2, 3))
        for contour in rt.ROIContourSequence[0].ContourSequence:
            image = by_uid[contour.ContourImageSequence[0].ReferencedSOPInstanceUID]
            pts = np.array(contour.ContourData, float).reshape(-1, 3)
            assert contour.NumberOfContourPoints == len(pts)
            plane = np.dot([float(v) for v in image.ImagePositionPatient], normal)
            np.testing.assert_allclose(pts @ normal, plane, atol=1e-3)


def test_some_tumours_have_a_necrotic_hole_drawn_as_an_inner_contour(synth_cohort: Path) -> None:
    holes_seen = 0
    for patient in PATIENTS:
        truth = np.load(synth_cohort / "truth" / f"{patient}.npy")
        for k in range(truth.shape[0]):
            filled = ndimage.binary_fill_holes(truth[k])
            if (filled & ~truth[k]).any():
                holes_seen += 1
                assert len(mask_to_polygons(truth[k])) >= 2
    assert holes_seen >= 2
    # …and not every tumour has one.
    cores = [bool(m["core_slices"]) for m in json.loads((synth_cohort / "cohort.json").read_text())["patients"]]
    assert any(cores) and not all(cores)


def test_tumours_differ_between_patients(synth_cohort: Path) -> None:
    truths = [np.load(synth_cohort / "truth" / f"{p}.npy") for p in PATIENTS]
    centres = {tuple(np.round(ndimage.center_of_mass(t)).astype(int)) for t in truths}
    assert len(centres) == 6
    assert all(t.any(axis=(1, 2)).sum() < t.shape[0] for t in truths), "tumour must not fill every slice"


def test_phi_is_planted_where_scanners_put_it(synth_cohort: Path) -> None:
    ds = read_series(synth_cohort / "patient-01")[0]
    family = str(ds.PatientName).split("^")[0]
    for keyword in ["PatientID", "PatientBirthDate", "PatientSex", "PatientAge", "PatientAddress",
                    "PatientTelephoneNumbers", "StudyDate", "StudyTime", "SeriesDate", "AcquisitionDate",
                    "ContentDate", "AccessionNumber", "ReferringPhysicianName", "PerformingPhysicianName",
                    "OperatorsName", "InstitutionName", "InstitutionAddress", "StationName", "DeviceSerialNumber"]:
        assert str(ds.get(keyword, "")).strip(), f"{keyword} is empty"
    assert ds.OtherPatientIDsSequence[0].PatientID != ds.PatientID
    assert family in ds.RequestAttributesSequence[0].RequestedProcedureDescription
    assert family in ds.PatientComments and family in ds.ImageComments
    block = ds.private_block(0x0029, "SEGKIT SYNTH PHI")
    assert block[0x10].value == str(ds.PatientName)
    assert block[0x11].value == ds.PatientID
    assert block[0x12].VR == "UN" and ds.PatientID.encode() in block[0x12].value


def test_file_names_do_not_reveal_phi(synth_cohort: Path) -> None:
    identifiers = set()
    for p in PATIENTS:
        ds = read_series(synth_cohort / p)[0]
        identifiers |= {ds.PatientID, *str(ds.PatientName).split("^"), ds.AccessionNumber, ds.StudyInstanceUID}
    for path in synth_cohort.rglob("*"):
        rel = str(path.relative_to(synth_cohort))
        assert not any(i and i in rel for i in identifiers), rel


def test_same_seed_gives_byte_identical_files_and_another_seed_other_tumours(tmp_path: Path) -> None:
    config = SynthConfig(patients=2, slices=6, size=32, seed=11)
    a = write_cohort(tmp_path / "a", config).root
    b = write_cohort(tmp_path / "b", config).root
    c = write_cohort(tmp_path / "c", SynthConfig(patients=2, slices=6, size=32, seed=12)).root
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    for rel in files:
        assert (a / rel).read_bytes() == (b / rel).read_bytes(), rel
    ta, tc = np.load(a / "truth" / "patient-01.npy"), np.load(c / "truth" / "patient-01.npy")
    assert not np.array_equal(ta, tc)
    assert pydicom.dcmread(a / "patient-01/MR/0001.dcm").StudyInstanceUID != \
        pydicom.dcmread(c / "patient-01/MR/0001.dcm").StudyInstanceUID


def test_oblique_series_is_tilted_and_contours_still_fill_back_exactly(tmp_path: Path) -> None:
    root = write_cohort(tmp_path / "oblique", SynthConfig(patients=1, slices=8, size=40, oblique=True, seed=5)).root
    mr = read_series(root / "patient-01")
    iop = np.array(mr[0].ImageOrientationPatient, float)
    assert not np.allclose(iop, [1, 0, 0, 0, 1, 0])
    np.testing.assert_allclose(np.linalg.norm(iop.reshape(2, 3), axis=1), 1, atol=1e-5)
    rt = pydicom.dcmread(root / "patient-01" / "RTSTRUCT" / "rtstruct.dcm")
    np.testing.assert_array_equal(rtstruct_to_mask(rt, mr), np.load(root / "truth" / "patient-01.npy"))


def test_non_default_spacing_and_matrix_are_written(tmp_path: Path) -> None:
    cfg = SynthConfig(patients=1, slices=5, size=48, pixel_spacing=1.25, slice_thickness=3.0, seed=2)
    root = write_cohort(tmp_path / "c", cfg).root
    mr = read_series(root / "patient-01")
    assert (mr[0].Rows, mr[0].Columns) == (48, 48)
    assert [float(v) for v in mr[0].PixelSpacing] == [1.25, 1.25]
    assert float(mr[0].SliceThickness) == 3.0
    assert np.load(root / "truth" / "patient-01.npy").shape == (5, 48, 48)


def test_existing_output_is_refused_unless_forced(tmp_path: Path) -> None:
    out = tmp_path / "c"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(OutputExistsError, match="already exists"):
        write_cohort(out, SynthConfig(patients=1, slices=4, size=32))
    assert (out / "keep.txt").read_text() == "mine"
    write_cohort(out, SynthConfig(patients=1, slices=4, size=32), overwrite=True)
    assert not (out / "keep.txt").exists() and (out / "truth" / "patient-01.npy").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["c"], "no temporary folders left behind"


def test_a_file_in_the_way_is_never_replaced(tmp_path: Path) -> None:
    target = tmp_path / "cohort"
    target.write_text("not a folder")
    with pytest.raises(OutputExistsError, match="is a file, not a folder"):
        write_cohort(target, SynthConfig(patients=1, slices=4, size=32), overwrite=True)
    assert target.read_text() == "not a folder"
    assert [p.name for p in tmp_path.iterdir()] == ["cohort"]


def test_invalid_config_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="--slices: must be at least 4"):
        SynthConfig(slices=2)
    with pytest.raises(UsageError, match="--patients"):
        SynthConfig(patients=0)


def test_failed_generation_leaves_nothing_behind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import segkit.synth.cohort as cohort

    def boom(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(cohort, "seg_dataset", boom)
    with pytest.raises(RuntimeError, match="disk full"):
        write_cohort(tmp_path / "c", SynthConfig(patients=1, slices=4, size=32))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.dciodvfy
@pytest.mark.parametrize("relpath", ["MR/0006.dcm", "RTSTRUCT/rtstruct.dcm", "SEG/seg.dcm"])
def test_dciodvfy_reports_no_errors(synth_cohort: Path, relpath: str) -> None:
    if shutil.which("dciodvfy") is None:
        pytest.skip("dciodvfy not installed (apt-get install dicom3tools; .ci/run installs it)")
    result = subprocess.run(["dciodvfy", str(synth_cohort / "patient-01" / relpath)], capture_output=True, text=True)
    report = result.stdout + result.stderr
    errors = [line for line in report.splitlines() if line.startswith("Error")]
    assert errors == [], "\n".join(errors)
    assert report.strip(), "dciodvfy printed nothing"
