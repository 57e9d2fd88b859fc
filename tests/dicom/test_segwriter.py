"""segkit.dicom.segwriter: prediction → DICOM SEG on the synthetic cohort (a known mask stands in for a model)."""

from __future__ import annotations

import datetime as dt
import random
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pydicom
import pytest

from segkit.errors import OutputExistsError, UsageError
from segkit.dicom.segwriter import Algorithm, prediction_seg, slice_order, write_dataset

ALGO = Algorithm(model="hybrid", run_id="run-0001")


def _series(cohort: Path, patient: int = 1) -> tuple[list[pydicom.Dataset], np.ndarray]:
    files = sorted((cohort / f"patient-{patient:02d}" / "MR").glob("*.dcm"))
    datasets = [pydicom.dcmread(f, stop_before_pixels=True) for f in files]
    random.Random(patient).shuffle(datasets)  # file order must not matter
    truth = np.load(cohort / "truth" / f"patient-{patient:02d}.npy")
    return datasets, truth


def _reread(path: Path, source: list[pydicom.Dataset]):
    import highdicom as hd

    seg = hd.seg.segread(path)
    ordered = [source[i] for i in slice_order(source)]
    pixels = seg.get_pixels_by_source_instance(
        source_sop_instance_uids=[ds.SOPInstanceUID for ds in ordered], segment_numbers=[1],
        combine_segments=False, skip_overlap_checks=True,
    )
    return seg, pixels[..., 0]


def test_binary_seg_aligns_exactly_with_the_source_slices(synth_cohort: Path, tmp_path: Path) -> None:
    source, truth = _series(synth_cohort, 2)
    write_dataset(prediction_seg(source, truth.astype(np.float32), ALGO), tmp_path / "p.dcm")
    seg, pixels = _reread(tmp_path / "p.dcm", source)
    np.testing.assert_array_equal(pixels.astype(bool), truth)
    assert seg.NumberOfFrames == int(truth.any(axis=(1, 2)).sum())  # empty slices are not stored
    refs = {item.ReferencedSOPInstanceUID
            for item in seg.ReferencedSeriesSequence[0].ReferencedInstanceSequence}
    assert refs == {ds.SOPInstanceUID for ds in source}
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == source[0].SeriesInstanceUID


def test_threshold_is_applied_to_probabilities(synth_cohort: Path, tmp_path: Path) -> None:
    source, truth = _series(synth_cohort)
    prob = np.where(truth, 0.7, 0.2).astype(np.float32)
    prob[truth.shape[0] // 2, 0, 0] = 0.55
    write_dataset(prediction_seg(source, prob, ALGO, threshold=0.6), tmp_path / "p.dcm")
    _, pixels = _reread(tmp_path / "p.dcm", source)
    np.testing.assert_array_equal(pixels.astype(bool), prob >= 0.6)


def test_fractional_seg_keeps_the_probabilities_to_eight_bits(synth_cohort: Path, tmp_path: Path) -> None:
    source, truth = _series(synth_cohort)
    prob = np.random.default_rng(0).random(truth.shape).astype(np.float32) * truth
    write_dataset(prediction_seg(source, prob, ALGO, fractional=True), tmp_path / "f.dcm")
    seg, pixels = _reread(tmp_path / "f.dcm", source)
    assert seg.SegmentationType == "FRACTIONAL" and seg.MaximumFractionalValue == 255
    np.testing.assert_allclose(pixels, prob, atol=0.5 / 255 + 1e-7)


def test_seg_inherits_the_patient_and_study_of_its_source(synth_cohort: Path) -> None:
    source, truth = _series(synth_cohort)
    seg = prediction_seg(source, truth.astype(np.float32), ALGO)
    for keyword in ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyInstanceUID",
                    "StudyID", "AccessionNumber", "FrameOfReferenceUID"):
        assert seg[keyword].value == source[0][keyword].value, keyword
    assert seg.SeriesInstanceUID != source[0].SeriesInstanceUID


def test_seg_identifies_the_algorithm_and_run(synth_cohort: Path) -> None:
    source, truth = _series(synth_cohort)
    seg = prediction_seg(source, truth.astype(np.float32), ALGO, label="GTV")
    segment = seg.SegmentSequence[0]
    assert segment.SegmentLabel == "GTV"
    assert segment.SegmentAlgorithmType == "AUTOMATIC"
    assert segment.SegmentAlgorithmName == "segkit hybrid"
    algo = segment.SegmentationAlgorithmIdentificationSequence[0]
    assert algo.AlgorithmName == "segkit hybrid"
    assert algo.AlgorithmVersion == ALGO.version
    assert "run-0001" in algo.AlgorithmParameters
    assert seg.Manufacturer == "segkit" and seg.DeviceSerialNumber == "run-0001"


def test_seg_bytes_do_not_depend_on_the_clock_or_file_order(synth_cohort: Path, tmp_path: Path) -> None:
    source, truth = _series(synth_cohort)
    write_dataset(prediction_seg(source, truth.astype(np.float32), ALGO), tmp_path / "a.dcm")
    write_dataset(prediction_seg(list(reversed(source)), truth.astype(np.float32), ALGO), tmp_path / "b.dcm")
    assert (tmp_path / "a.dcm").read_bytes() == (tmp_path / "b.dcm").read_bytes()
    seg = pydicom.dcmread(tmp_path / "a.dcm")
    assert seg.ContentDate == source[0].StudyDate


def test_a_different_prediction_gets_a_different_instance_uid(synth_cohort: Path) -> None:
    source, truth = _series(synth_cohort)
    a = prediction_seg(source, truth.astype(np.float32), ALGO)
    b = prediction_seg(source, np.roll(truth, 1, axis=2).astype(np.float32), ALGO)
    assert a.SOPInstanceUID != b.SOPInstanceUID and a.SeriesInstanceUID != b.SeriesInstanceUID


def test_created_time_can_be_given(synth_cohort: Path) -> None:
    source, truth = _series(synth_cohort)
    seg = prediction_seg(source, truth.astype(np.float32), ALGO, created=dt.datetime(2030, 5, 6, 7, 8, 9))
    assert (seg.ContentDate, seg.ContentTime) == ("20300506", "070809")


def test_an_empty_prediction_still_gives_a_readable_seg(synth_cohort: Path, tmp_path: Path) -> None:
    source, truth = _series(synth_cohort)
    write_dataset(prediction_seg(source, np.zeros(truth.shape, np.float32), ALGO), tmp_path / "e.dcm")
    _, pixels = _reread(tmp_path / "e.dcm", source)
    assert pixels.shape == truth.shape and not pixels.any()


@pytest.mark.dciodvfy
@pytest.mark.skipif(shutil.which("dciodvfy") is None, reason="dciodvfy (dicom3tools) is not installed")
@pytest.mark.parametrize("fractional", [False, True])
def test_seg_passes_dciodvfy(synth_cohort: Path, tmp_path: Path, fractional: bool) -> None:
    source, truth = _series(synth_cohort)
    path = write_dataset(prediction_seg(source, truth * np.float32(0.8), ALGO, fractional=fractional), tmp_path / "s.dcm")
    result = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, check=False)
    report = result.stdout + result.stderr
    assert "Segmentation" in report  # it recognised the IOD
    assert [line for line in report.splitlines() if line.startswith("Error")] == []


def test_prediction_of_the_wrong_shape_is_refused(synth_cohort: Path) -> None:
    source, truth = _series(synth_cohort)
    with pytest.raises(UsageError, match=r"prediction: has shape \(11, 64, 64\), the series is \(12, 64, 64\)"):
        prediction_seg(source, np.zeros((11, 64, 64), np.float32), ALGO)
    with pytest.raises(UsageError, match=r"must hold probabilities in \[0, 1\]"):
        prediction_seg(source, truth * np.float32(2), ALGO)


def test_existing_output_is_refused_and_kept(synth_cohort: Path, tmp_path: Path) -> None:
    source, truth = _series(synth_cohort)
    (tmp_path / "p.dcm").write_bytes(b"mine")
    with pytest.raises(OutputExistsError, match="already exists"):
        write_dataset(prediction_seg(source, truth.astype(np.float32), ALGO), tmp_path / "p.dcm")
    assert (tmp_path / "p.dcm").read_bytes() == b"mine"
    assert [p.name for p in tmp_path.iterdir()] == ["p.dcm"]


def test_a_pseudonymised_patient_name_is_copied_without_a_warning(synth_cohort: Path) -> None:
    import warnings

    source, truth = _series(synth_cohort)
    for ds in source:
        ds.PatientName = "SK-Q7JBD775QFGV"  # what segkit anonymize writes: one component
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        seg = prediction_seg(source, truth.astype(np.float32), ALGO)
    assert seg.PatientName == "SK-Q7JBD775QFGV"
