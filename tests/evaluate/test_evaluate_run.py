"""evaluate_run and predict_series on a converted synthetic cohort, with a stand-in model (no TensorFlow).

The stand-in "model" maps a normalised slice to probabilities by a fixed
function of its intensities, so it predicts something imperfect but
deterministic; the plumbing (held-out check, preprocessing, resampling, report,
SEG) is the real one.  The TensorFlow model is tested the same way in
``test_evaluate_trained.py``.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml
from click.testing import CliRunner

pytest.importorskip("segkit.convert.run", reason="segkit convert is not on this branch yet")

from segkit.cli import cli  # noqa: E402
from segkit.errors import InputError, OutputExistsError, UsageError  # noqa: E402
from segkit.store.reader import open_store  # noqa: E402
from segkit.train.evaluate import evaluate_run  # noqa: E402
from segkit.train.predict import predict_series  # noqa: E402
from segkit.train.runinfo import RunInfo, read_run  # noqa: E402


class StandInModel:
    """Deterministic probabilities from intensity: a bright-blob detector."""

    params = 3
    checkpoint = "best.weights.h5"

    def __init__(self, gain: float = 6.0, centre: float = 0.55) -> None:
        self.gain, self.centre = gain, centre

    def predict(self, images: np.ndarray) -> np.ndarray:
        return (1.0 / (1.0 + np.exp(-self.gain * (images - self.centre)))).astype(np.float32)


def stand_in(centre: float = 0.55):
    def load(run: RunInfo, checkpoint: str) -> StandInModel:
        return StandInModel(centre=centre)

    return load


def make_run(run_dir: Path, store: Path, *, variant: str = "unet", train_patients: list[str] | None = None) -> Path:
    """A run directory as segkit train writes it (config, provenance, history, weights file)."""
    run_dir.mkdir(parents=True)
    (run_dir / "config.yaml").write_text(yaml.safe_dump(
        {"model": {"variant": variant, "backbone": "resnet18", "input_size": 64}, "train": {"epochs": 2}, "data": {}}))
    steps = open_store(store).provenance
    train = {"name": "train", "segkit_version": "0", "started": "2026-01-01T00:00:00Z",
             "finished": "2026-01-01T00:01:00Z", "input_digest": None, "output_digest": "sha256:" + "0" * 64,
             "seed": 0, "parameters": {"store": store.name, "result": {"epochs_done": 2}}}
    if train_patients is not None:
        train["parameters"]["patients"] = {"train": train_patients}
    (run_dir / "provenance.json").write_text(json.dumps([*steps, train]))
    (run_dir / "best.weights.h5").write_bytes(b"stand-in")
    return run_dir


@pytest.fixture(scope="module")
def converted(tmp_path_factory: pytest.TempPathFactory, synth_cohort: Path) -> dict[str, Path]:
    """The session cohort converted natively and at --size 32 (4 train / 1 val / 1 test patients)."""
    from segkit.convert.plan import ConvertOptions
    from segkit.convert.run import convert

    root = tmp_path_factory.mktemp("converted")
    convert(synth_cohort, root / "native.zarr", ConvertOptions(seed=1))
    convert(synth_cohort, root / "small.zarr", ConvertOptions(seed=1, size=32))
    return {"native": root / "native.zarr", "small": root / "small.zarr"}


def _synth_folder_of(store_path: Path, patient: str, cohort: Path) -> Path:
    """The synthetic patient folder whose truth equals the store's mask volume of ``patient``."""
    store = open_store(store_path)
    rows = np.flatnonzero(store.table["patient"] == patient)
    rows = rows[np.argsort(store.table["index"][rows])]
    mask = np.stack([store.mask[int(i)] for i in rows]).astype(bool)
    matches = [p for p in sorted((cohort / "truth").glob("*.npy")) if np.array_equal(np.load(p), mask)]
    assert len(matches) == 1
    return cohort / matches[0].stem


def _seg_pixels(seg_path: Path, folder: Path) -> np.ndarray:
    """The SEG read back by highdicom, frames placed by SOP Instance UID on the slices ordered along the normal."""
    import highdicom as hd
    import pydicom

    source = [pydicom.dcmread(f, stop_before_pixels=True) for f in (folder / "MR").glob("*.dcm")]
    normal = np.cross(*np.asarray(source[0].ImageOrientationPatient, float).reshape(2, 3))
    source.sort(key=lambda ds: float(np.dot(np.asarray(ds.ImagePositionPatient, float), normal)))
    seg = hd.seg.segread(seg_path)
    return seg.get_pixels_by_source_instance([ds.SOPInstanceUID for ds in source], segment_numbers=[1],
                                             combine_segments=False, skip_overlap_checks=True)[..., 0]


def _seg_mask(seg_path: Path, folder: Path) -> np.ndarray:
    return _seg_pixels(seg_path, folder) > 0


def _dice(pred: np.ndarray, truth: np.ndarray) -> float:
    """Dice by the textbook formula (independent of segkit.evaluate.metrics)."""
    total = pred.sum() + truth.sum()
    return 1.0 if total == 0 else 2.0 * np.logical_and(pred, truth).sum() / total


def _dice_from_seg(seg_path: Path, folder: Path, truth: np.ndarray) -> float:
    return _dice(_seg_mask(seg_path, folder), truth)


def test_evaluate_dice_equals_dice_of_the_predicted_seg_against_the_truth(
        converted: dict[str, Path], synth_cohort: Path, tmp_path: Path) -> None:
    store = converted["native"]
    run = make_run(tmp_path / "run", store)
    doc = evaluate_run(run, store, load=stand_in(), overlays=False)
    assert doc["patients"] == 1
    row = doc["per_patient"][0]
    folder = _synth_folder_of(store, row["patient"], synth_cohort)
    predict_series(run, folder / "MR", tmp_path / "p.dcm", load=stand_in())
    dice = _dice_from_seg(tmp_path / "p.dcm", folder, np.load(synth_cohort / "truth" / f"{folder.name}.npy"))
    assert 0.05 < row["dice"] < 0.999  # an imperfect, non-trivial prediction
    assert row["dice"] == pytest.approx(dice, abs=1e-6)


def test_predict_for_a_resampled_store_writes_the_native_matrix(converted: dict[str, Path], synth_cohort: Path,
                                                                tmp_path: Path) -> None:
    """Trained at --size 32: the series is predicted at 32² and the probabilities brought back to 64²."""
    from skimage.transform import resize

    from segkit.dicom.dicomio import scan_folder
    from segkit.convert.intensity import normalise_volume
    from segkit.convert.resample import resample_image
    from segkit.dicom.volume import read_volume

    run = make_run(tmp_path / "run", converted["small"])
    folder = synth_cohort / "patient-02"
    predict_series(run, folder / "MR", tmp_path / "p.dcm", load=stand_in())
    image, _ = normalise_volume(read_volume(next(iter(scan_folder(folder / "MR").images.values())), "t").array)
    prob = StandInModel().predict(resample_image(image, 32))
    expected = resize(prob, image.shape, order=1, mode="edge", anti_aliasing=False, preserve_range=True) >= 0.5
    seg = _seg_mask(tmp_path / "p.dcm", folder)
    assert seg.shape == (12, 64, 64) and seg.any()
    np.testing.assert_array_equal(seg, expected)


def test_evaluate_writes_the_report_in_the_run_by_default(converted: dict[str, Path], tmp_path: Path) -> None:
    run = make_run(tmp_path / "run", converted["native"])
    doc = evaluate_run(run, converted["native"], split="val", load=stand_in())
    out = run / "eval-val"
    assert sorted(p.name for p in out.iterdir()) == ["metrics.json", "overlays", "per_patient.csv", "per_slice.csv",
                                                     "table.md"]
    assert doc["run"] == {"id": "run", "dir": str(run), "model": "unet", "params": 3, "epochs": 2,
                          "checkpoint": "best.weights.h5", "tta": "none"}
    assert [step["name"] for step in doc["provenance"]] == ["convert", "train", "evaluate"]
    from segkit.schemas import validate

    validate(doc["provenance"], "provenance")
    with pytest.raises(OutputExistsError, match="eval-val: already exists"):
        evaluate_run(run, converted["native"], split="val", load=stand_in())


def test_a_training_patient_in_the_evaluated_split_is_refused(converted: dict[str, Path], tmp_path: Path) -> None:
    store = open_store(converted["native"])
    test_patient = next(p for p, s in store.split.items() if s == "test")
    run = make_run(tmp_path / "run", converted["native"], train_patients=["someone", test_patient])
    with pytest.raises(InputError, match=rf"its test split holds 1 patient\(s\) that trained run run \(e.g. {test_patient}\)"):
        evaluate_run(run, converted["native"], load=stand_in())
    assert not (run / "eval-test").exists()


def test_a_store_of_another_conversion_is_refused(converted: dict[str, Path], tmp_path: Path) -> None:
    run = make_run(tmp_path / "run", converted["small"])
    with pytest.raises(InputError, match="does not descend from the store run run was trained on"):
        evaluate_run(run, converted["native"], load=stand_in())


def test_the_training_split_is_never_scored(converted: dict[str, Path], tmp_path: Path) -> None:
    run = make_run(tmp_path / "run", converted["native"])
    with pytest.raises(UsageError, match="must be one of val, test; a run is never scored on its training split"):
        evaluate_run(run, converted["native"], split="train", load=stand_in())


def test_compare_sets_two_runs_side_by_side(converted: dict[str, Path], tmp_path: Path) -> None:
    a = make_run(tmp_path / "a", converted["native"], variant="unet")
    b = make_run(tmp_path / "b", converted["native"], variant="hybrid")
    evaluate_run(b, converted["native"], load=stand_in(centre=0.7), overlays=False)
    doc = evaluate_run(a, converted["native"], load=stand_in(), compare=[b], overlays=False)
    table = (a / "eval-test" / "compare.md").read_text()
    assert table.splitlines()[2].startswith("| a | unet | 3 | 2 | ")
    assert table.splitlines()[3].startswith("| b | hybrid | 3 | 2 | ")
    b_doc = json.loads((b / "eval-test" / "metrics.json").read_text())
    assert f"{b_doc['pooled']['dice']:.4f}" in table.splitlines()[3]
    assert b_doc["pooled"]["dice"] != doc["pooled"]["dice"]  # b's own report (centre 0.7) was reused
    assert not (a / "eval-test" / "compare").exists()


def test_compare_evaluates_a_run_without_a_matching_report_beside_this_one(converted: dict[str, Path],
                                                                          tmp_path: Path) -> None:
    a = make_run(tmp_path / "a", converted["native"])
    b = make_run(tmp_path / "b", converted["native"])
    evaluate_run(b, converted["native"], threshold=0.3, load=stand_in(), overlays=False)
    before = (b / "eval-test" / "metrics.json").read_bytes()
    evaluate_run(a, converted["native"], load=stand_in(), compare=[b], overlays=False)
    assert (b / "eval-test" / "metrics.json").read_bytes() == before  # another run's report is never touched
    fresh = json.loads((a / "eval-test" / "compare" / "01-b" / "metrics.json").read_text())
    assert fresh["threshold"] == 0.5 and fresh["run"]["id"] == "b"


def test_predict_refuses_a_folder_with_several_series(converted: dict[str, Path], synth_cohort: Path,
                                                      tmp_path: Path) -> None:
    run = make_run(tmp_path / "run", converted["native"])
    with pytest.raises(UsageError, match="holds 6 image series; pass the folder of exactly one"):
        predict_series(run, synth_cohort, tmp_path / "p.dcm", load=stand_in())
    assert not (tmp_path / "p.dcm").exists()


def test_predict_reads_original_series_and_keeps_their_patient(converted: dict[str, Path], synth_cohort: Path,
                                                               tmp_path: Path) -> None:
    import pydicom

    run = make_run(tmp_path / "run", converted["native"])
    result = predict_series(run, synth_cohort / "patient-03" / "MR", tmp_path / "p.dcm", roi_label="GTV",
                            load=stand_in())
    seg = pydicom.dcmread(result.out)
    source = pydicom.dcmread(next((synth_cohort / "patient-03" / "MR").glob("*.dcm")), stop_before_pixels=True)
    assert seg.PatientID == source.PatientID and seg.StudyInstanceUID == source.StudyInstanceUID
    assert seg.SegmentSequence[0].SegmentLabel == "GTV"
    assert result.slices == 12 and 0 < result.tumour_slices <= 12


def test_evaluate_cli_reports_a_bad_run_in_one_line(converted: dict[str, Path], tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["evaluate", str(tmp_path), str(converted["native"])])
    assert result.exit_code == 1
    assert result.stderr.strip() == (f"error: {tmp_path}: is not a segkit run directory (no config.yaml); "
                                     "pass the folder segkit train wrote")
    assert list(tmp_path.iterdir()) == []


def test_predict_cli_reports_a_missing_series_in_one_line(converted: dict[str, Path], tmp_path: Path) -> None:
    run = make_run(tmp_path / "run", converted["native"])
    result = CliRunner().invoke(cli, ["predict", str(run), str(tmp_path / "nowhere"), str(tmp_path / "p.dcm")])
    assert result.exit_code == 1
    assert result.stderr.strip() == f"error: {tmp_path / 'nowhere'}: is not a folder"
    assert not (tmp_path / "p.dcm").exists()


def test_run_info_reads_what_segkit_train_writes(converted: dict[str, Path], tmp_path: Path) -> None:
    run = read_run(make_run(tmp_path / "run", converted["small"], train_patients=["p1"]))
    assert (run.run_id, run.variant, run.input_size, run.epochs, run.store_size) == ("run", "unet", 64, 2, 32)
    assert run.training_patients == {"p1"}
    shutil.rmtree(tmp_path / "run")


def test_evaluate_twice_gives_byte_identical_reports(converted: dict[str, Path], tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")  # provenance times from the reproducible-builds clock
    run = make_run(tmp_path / "run", converted["native"])
    for name in ("a", "b"):
        evaluate_run(run, converted["native"], out=tmp_path / name, load=stand_in())
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file())
    assert len(files) == 6
    for rel in files:
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes(), rel


def test_fractional_predict_stores_the_model_probabilities(converted: dict[str, Path], synth_cohort: Path,
                                                           tmp_path: Path) -> None:
    import highdicom as hd

    from segkit.dicom.dicomio import scan_folder
    from segkit.convert.intensity import normalise_volume
    from segkit.dicom.volume import read_volume

    run = make_run(tmp_path / "run", converted["native"])
    folder = synth_cohort / "patient-04"
    predict_series(run, folder / "MR", tmp_path / "f.dcm", fractional=True, load=stand_in())
    assert hd.seg.segread(tmp_path / "f.dcm").SegmentationType == "FRACTIONAL"
    image, _ = normalise_volume(read_volume(next(iter(scan_folder(folder / "MR").images.values())), "t").array)
    expected = StandInModel().predict(image)
    np.testing.assert_allclose(_seg_pixels(tmp_path / "f.dcm", folder), expected, atol=0.5 / 255 + 1e-6)


def test_tta_auto_means_all_eight_views_only_for_runs_trained_on_them() -> None:
    from segkit.train.config import load_config
    from segkit.train.inference import TTA_VIEWS, resolve_tta

    assert resolve_tta(load_config("cpu-small")) == "dihedral"  # trained with exact flips / quarter turns
    assert resolve_tta(load_config("paper")) == "none"  # the paper's model is evaluated as the paper did
    assert resolve_tta(load_config("paper"), "flips") == "flips"
    with pytest.raises(UsageError, match="--tta"):
        resolve_tta({}, "mirror")
    # the views are distinct elements of the dihedral group, and each set starts with the slice itself
    for name, views in TTA_VIEWS.items():
        assert views[0] == (0, False) and len(set(views)) == len(views)
    assert len(TTA_VIEWS["dihedral"]) == 8 and set(TTA_VIEWS["flips"]) < set(TTA_VIEWS["dihedral"])


def test_a_bad_tta_fails_before_any_report_is_written(converted: dict[str, Path], tmp_path: Path) -> None:
    run = make_run(tmp_path / "run", converted["native"])
    with pytest.raises(UsageError, match="--tta"):
        evaluate_run(run, converted["native"], out=tmp_path / "eval", tta="mirror", load=stand_in())
    assert not (tmp_path / "eval").exists()
    result = CliRunner().invoke(cli, ["evaluate", str(run), str(converted["native"]), "--out", str(tmp_path / "e2"),
                                      "--tta", "mirror"])
    assert result.exit_code == 2 and "mirror" in result.output and not (tmp_path / "e2").exists()
