"""segkit.evaluate.evaluation / .report / .compare: aggregation per slice / patient / split, the report files, --compare."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from segkit.errors import InputError, OutputExistsError
from segkit.evaluate.compare import read_metrics, write_compare
from segkit.evaluate.evaluation import Case, evaluate_cases
from segkit.evaluate.metrics import counts, hd95
from segkit.evaluate.report import write_report


def _case(patient: str, truth: np.ndarray, pred: np.ndarray, image: np.ndarray | None = None,
          spacing=(2.0, 0.84, 0.84)) -> Case:
    n = truth.shape[0]
    return Case(patient=patient, series=f"S{patient[1:]}", spacing=spacing, truth=truth,
                prob=pred.astype(np.float32) * 0.9, index=np.arange(n), position=np.arange(n) * spacing[0],
                rows=np.arange(n), image=image)


def _squares() -> tuple[Case, Case]:
    t1 = np.zeros((3, 10, 10), bool)
    p1 = np.zeros_like(t1)
    t1[1, 2:6, 2:6] = True      # 16 px
    p1[1, 3:7, 3:7] = True      # 16 px, 9 shared
    t2 = np.zeros((2, 10, 10), bool)
    p2 = np.zeros_like(t2)
    t2[0, 0:2, 0:2] = True      # 4 px, missed
    p2[1, 5:7, 5:7] = True      # 4 px false positive on an empty slice
    return _case("P1", t1, p1), _case("P2", t2, p2)


@pytest.fixture()
def cohort_cases(synth_cohort: Path) -> list[Case]:
    """Truth of the synthetic cohort, with a prediction that is the truth shifted by one column."""
    cases = []
    for k, path in enumerate(sorted((synth_cohort / "truth").glob("*.npy"))[:3]):
        truth = np.load(path)
        pred = np.roll(truth, k, axis=2)
        image = truth.astype(np.float32) * 0.6 + np.linspace(0, 0.3, truth.shape[2], dtype=np.float32)
        cases.append(_case(f"P{k + 1}", truth, pred, image=image))
    return cases


def test_pooled_metrics_sum_the_counts_of_every_slice() -> None:
    ev = evaluate_cases(_squares())
    # tp = 9, fp = 7 + 4, fn = 7 + 4
    assert ev.pooled["tp"] == 9 and ev.pooled["fp"] == 11 and ev.pooled["fn"] == 11
    assert ev.pooled["dice"] == 18 / 40
    assert ev.pooled["iou"] == 9 / 31
    assert [r["dice"] for r in ev.per_patient] == [18 / 32, 0.0]
    # per-slice: P1 has two empty-vs-empty slices (Dice 1) and the squares; P2 a miss and a false positive
    assert [r["dice"] for r in ev.per_slice] == [1.0, 18 / 32, 1.0, 0.0, 0.0]
    assert ev.over_slices["tumour"]["dice"] == {"mean": (18 / 32 + 0.0) / 2, "sd": pytest.approx(np.std([18 / 32, 0], ddof=1)), "n": 2,
                                                "ci95": [0.0, 18 / 32]}  # two patients: each alone is an end
    assert ev.over_patients["dice"]["mean"] == (18 / 32) / 2


def test_threshold_decides_which_voxels_are_predicted() -> None:
    t = np.zeros((1, 4, 4), bool)
    t[0, :2] = True
    prob = np.zeros((1, 4, 4), np.float32)
    prob[0, :2] = 0.6
    prob[0, 2] = 0.4
    case = Case("P1", "S1", (1, 1, 1), t, prob, [0], [0.0])
    assert evaluate_cases([case], threshold=0.5).pooled["dice"] == 1.0
    assert evaluate_cases([case], threshold=0.4).pooled["precision"] == 8 / 12
    assert evaluate_cases([case], threshold=0.7).pooled["recall"] == 0.0


def test_undefined_hd95_is_null_and_left_out_of_the_patient_mean() -> None:
    ev = evaluate_cases(_squares())
    for row, case in zip(ev.per_patient, _squares()):  # both defined: each volume has truth and prediction
        assert row["hd95_mm"] == hd95(case.truth, case.prob >= 0.5, (2.0, 0.84, 0.84)) > 0
    only_truth = _case("P3", _squares()[1].truth, np.zeros_like(_squares()[1].truth))
    ev = evaluate_cases([_squares()[0], only_truth])
    assert ev.per_patient[1]["hd95_mm"] is None
    assert ev.over_patients["hd95_mm"]["n"] == 1


def test_report_files_agree_with_each_other(cohort_cases: list[Case], tmp_path: Path) -> None:
    from segkit.schemas import validate

    ev = evaluate_cases(cohort_cases)
    doc = write_report(ev, tmp_path / "eval", split="test", run={"id": "r1", "model": "unet", "params": 10, "epochs": 2},
                       store={"path": "s.zarr", "digest": None})
    out = tmp_path / "eval"
    on_disk = json.loads((out / "metrics.json").read_text())
    validate(on_disk, "metrics")
    assert on_disk == doc
    per_patient = list(csv.DictReader((out / "per_patient.csv").open()))
    assert [float(r["dice"]) for r in per_patient] == [r["dice"] for r in doc["per_patient"]]
    for row, case in zip(per_patient, cohort_cases):
        assert float(row["dice"]) == counts(case.truth, case.prob >= 0.5).dice
    per_slice = list(csv.DictReader((out / "per_slice.csv").open()))
    assert len(per_slice) == sum(c.truth.shape[0] for c in cohort_cases) == doc["slices"]
    assert int(per_slice[5]["tp"]) + int(per_slice[5]["fn"]) == int(cohort_cases[0].truth[5].sum())
    table = (out / "table.md").read_text()
    low, high = doc["pooled"]["ci95"]["dice"]
    assert f"| pooled over the split | {doc['pooled']['dice']:.4f} [{low:.4f}, {high:.4f}] |" in table
    assert table.count("\n| P") == 3
    # the first case is predicted perfectly: Dice 1 and HD95 0 mm
    assert doc["per_patient"][0]["dice"] == 1.0 and doc["per_patient"][0]["hd95_mm"] == 0.0


def test_overlays_show_the_best_and_worst_slice_of_each_patient(cohort_cases: list[Case], tmp_path: Path) -> None:
    import matplotlib.image

    ev = evaluate_cases(cohort_cases)
    doc = write_report(ev, tmp_path / "eval", split="test", run={}, store={})
    assert len(doc["overlays"]) == 2 * len(cohort_cases)
    rows = [r for r in ev.per_slice if r["patient"] == "P3" and (r["truth_pixels"] or r["predicted_pixels"])]
    worst = min(rows, key=lambda r: (r["dice"], r["index"]))
    assert f"overlays/P3_S3_worst_slice{worst['index']:03d}.png" in doc["overlays"]
    picture = matplotlib.image.imread(tmp_path / "eval" / doc["overlays"][0])
    assert picture.ndim == 3 and picture.shape[0] > 100


def test_report_is_byte_identical_when_written_twice(cohort_cases: list[Case], tmp_path: Path) -> None:
    ev = evaluate_cases(cohort_cases)
    for name in ("a", "b"):
        write_report(ev, tmp_path / name, split="test", run={"id": "r"}, store={})
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file())
    assert len(files) == 4 + 6
    for rel in files:
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes(), rel


def test_existing_report_folder_is_refused_and_kept(cohort_cases: list[Case], tmp_path: Path) -> None:
    (tmp_path / "eval").mkdir()
    (tmp_path / "eval" / "mine.txt").write_text("keep")
    with pytest.raises(OutputExistsError, match="already exists; choose another folder or pass --force"):
        write_report(evaluate_cases(cohort_cases), tmp_path / "eval", split="test", run={}, store={})
    assert [p.name for p in (tmp_path / "eval").iterdir()] == ["mine.txt"]


def test_a_failed_report_leaves_nothing_behind(cohort_cases: list[Case], tmp_path: Path) -> None:
    import jsonschema

    ev = evaluate_cases(cohort_cases, threshold=1.5)  # not a probability: the schema refuses it
    with pytest.raises(jsonschema.ValidationError):
        write_report(ev, tmp_path / "eval", split="test", run={}, store={}, overlays=False)
    assert list(tmp_path.iterdir()) == []


def test_compare_sets_runs_side_by_side(cohort_cases: list[Case], tmp_path: Path) -> None:
    docs = []
    for k, (model, params) in enumerate((("unet", 100), ("hybrid", 250))):
        cases = cohort_cases if k == 0 else [_case(c.patient, c.truth, c.truth) for c in cohort_cases]
        write_report(evaluate_cases(cases), tmp_path / model, split="test", overlays=False,
                     run={"id": f"run-{model}", "model": model, "params": params, "epochs": 3}, store={})
        docs.append(read_metrics(tmp_path / model))
    rows = write_compare(docs, tmp_path / "cmp")
    assert [r["model"] for r in rows] == ["unet", "hybrid"]
    assert rows[1]["dice"] == 1.0 and rows[1]["hd95_mm"] == 0.0
    assert rows[0]["dice"] == docs[0]["pooled"]["dice"] < 1.0
    md = (tmp_path / "cmp" / "compare.md").read_text()
    one = "1.0000 [1.0000, 1.0000]"  # every patient perfect: a zero-width interval
    assert f"| run-hybrid | hybrid | 250 | 3 | {one} | {one} | {one} | {one} | 0.00 [0.00, 0.00] |" in md
    low, high = docs[0]["pooled"]["ci95"]["dice"]
    assert low < rows[0]["dice"] < high and rows[0]["dice_ci_low"] == low
    assert list(csv.DictReader((tmp_path / "cmp" / "compare.csv").open()))[0]["run"] == "run-unet"


def test_reading_something_that_is_not_metrics_names_the_file(tmp_path: Path) -> None:
    (tmp_path / "metrics.json").write_text('{"format": "other"}')
    with pytest.raises(InputError, match=r"metrics.json: is not a valid segkit metrics.json \(ValidationError\)"):
        read_metrics(tmp_path)
    with pytest.raises(InputError, match="has no metrics.json"):
        read_metrics(tmp_path / "nowhere")
