"""segkit.evaluate.metrics: exact values on hand-made shapes, and agreement with independent implementations."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.spatial.distance import cdist

from segkit.evaluate.metrics import (
    Counts,
    counts,
    hd95,
    mean_sd,
    mean_surface_distance,
    overlap,
    slice_counts,
    surface,
    surface_distances,
    surface_metrics,
)


def square(top: int, left: int, side: int = 4, shape: tuple[int, int] = (10, 10)) -> np.ndarray:
    m = np.zeros(shape, dtype=bool)
    m[top:top + side, left:left + side] = True
    return m


# --------------------------------------------------------------- hand-made overlap cases
def test_two_offset_squares_have_the_hand_computed_overlap() -> None:
    truth, pred = square(2, 2), square(3, 3)  # 16 px each, 3×3 = 9 px shared
    c = counts(truth, pred)
    assert c == Counts(tp=9, fp=7, fn=7, tn=100 - 23)
    assert c.dice == 18 / 32
    assert c.iou == 9 / 23
    assert c.precision == 9 / 16
    assert c.recall == 9 / 16


def test_unequal_squares_separate_precision_from_recall() -> None:
    truth, pred = square(2, 2, side=4), square(2, 2, side=2)  # prediction inside the truth
    assert overlap(truth, pred) == {"dice": 8 / 20, "iou": 4 / 16, "precision": 1.0, "recall": 4 / 16}


def test_disjoint_masks_score_zero() -> None:
    assert overlap(square(0, 0), square(6, 6)) == {"dice": 0.0, "iou": 0.0, "precision": 0.0, "recall": 0.0}


def test_empty_versus_empty_is_perfect_agreement() -> None:
    empty = np.zeros((10, 10), dtype=bool)
    assert overlap(empty, empty) == {"dice": 1.0, "iou": 1.0, "precision": 1.0, "recall": 1.0}
    assert hd95(empty, empty, (1.0, 1.0)) == 0.0
    assert mean_surface_distance(empty, empty, (1.0, 1.0)) == 0.0


def test_missed_tumour_scores_zero_and_has_no_surface_distance() -> None:
    empty = np.zeros((10, 10), dtype=bool)
    assert overlap(square(2, 2), empty) == {"dice": 0.0, "iou": 0.0, "precision": 0.0, "recall": 0.0}
    assert math.isnan(hd95(square(2, 2), empty, (1.0, 1.0)))
    assert math.isnan(mean_surface_distance(empty, square(2, 2), (1.0, 1.0)))


def test_false_positive_on_an_empty_slice_scores_zero() -> None:
    empty = np.zeros((10, 10), dtype=bool)
    assert overlap(empty, square(2, 2)) == {"dice": 0.0, "iou": 0.0, "precision": 0.0, "recall": 0.0}


def test_shape_mismatch_is_refused() -> None:
    with pytest.raises(ValueError, match=r"truth \(10, 10\) and prediction \(9, 10\) must have the same shape"):
        counts(np.zeros((10, 10)), np.zeros((9, 10)))


def test_slice_counts_add_up_to_the_volume_counts() -> None:
    rng = np.random.default_rng(3)
    truth, pred = rng.random((5, 12, 9)) < 0.3, rng.random((5, 12, 9)) < 0.4
    per_slice = slice_counts(truth, pred)
    assert per_slice == [counts(t, p) for t, p in zip(truth, pred)]
    assert sum(per_slice) == counts(truth, pred)


# --------------------------------------------------------------- hand-made surface cases
def test_parallel_planes_are_their_anisotropic_distance_apart() -> None:
    truth = np.zeros((6, 5, 5), dtype=bool)
    pred = np.zeros_like(truth)
    truth[2], pred[4] = True, True  # two full one-voxel slabs, 2 slices apart
    spacing = (3.0, 0.5, 0.5)  # (Δz, Δy, Δx): 2 slices = 6 mm
    assert hd95(truth, pred, spacing) == 6.0
    assert mean_surface_distance(truth, pred, spacing) == 6.0


def test_square_shifted_one_column_uses_the_column_spacing() -> None:
    truth, pred = square(2, 2), square(2, 3)
    # each 12-pixel ring: 6 pixels lie on the other ring (0 mm), 6 are one column (0.7 mm) away
    d = np.sort(surface_distances(truth, pred, (1.0, 0.7)))
    np.testing.assert_array_equal(d, [0.0] * 12 + [0.7] * 12)
    assert hd95(truth, pred, (1.0, 0.7)) == pytest.approx(0.7, abs=1e-12)
    assert mean_surface_distance(truth, pred, (1.0, 0.7)) == pytest.approx(0.35, abs=1e-12)


def test_identical_masks_are_zero_mm_apart() -> None:
    m = square(1, 3, side=5)
    assert hd95(m, m, (2.0, 0.8)) == 0.0


def test_surface_of_a_filled_square_is_its_ring_and_the_border_counts() -> None:
    assert surface(square(2, 2)).sum() == 12
    full = np.ones((4, 4), dtype=bool)
    assert surface(full).sum() == 12  # outside the array is background


def test_wrong_spacing_length_is_refused() -> None:
    with pytest.raises(ValueError, match=r"one positive size per axis of a 2-D mask"):
        surface_distances(square(2, 2), square(3, 3), (1.0, 1.0, 1.0))


# --------------------------------------------------------------- independent implementations
def _set_overlap(truth: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    """Direct set formulas over voxel coordinates (no shared code with segkit.evaluate.metrics)."""
    t = set(zip(*np.nonzero(truth)))
    p = set(zip(*np.nonzero(pred)))
    inter, union = len(t & p), len(t | p)
    if not t and not p:
        return {"dice": 1.0, "iou": 1.0, "precision": 1.0, "recall": 1.0}
    return {
        "dice": 2 * inter / (len(t) + len(p)),
        "iou": inter / union,
        "precision": inter / len(p) if p else 0.0,
        "recall": inter / len(t) if t else 0.0,
    }


def _brute_surface_distances(truth: np.ndarray, pred: np.ndarray, spacing: tuple[float, ...]) -> np.ndarray:
    """All-pairs distances between boundaries found by scikit-image on a zero-padded copy."""
    from skimage.segmentation import find_boundaries

    def boundary_points(mask: np.ndarray) -> np.ndarray:
        padded = np.pad(mask, 1)
        edge = find_boundaries(padded, connectivity=1, mode="inner") & padded
        return (np.argwhere(edge) - 1) * np.asarray(spacing)

    a, b = boundary_points(truth), boundary_points(pred)
    d = cdist(a, b)
    return np.concatenate([d.min(axis=1), d.min(axis=0)])


@pytest.mark.parametrize("seed", range(8))
def test_overlap_agrees_with_set_formulas_on_random_masks(seed: int) -> None:
    rng = np.random.default_rng(seed)
    shape = (4, 7, 6) if seed % 2 else (9, 11)
    truth = rng.random(shape) < rng.uniform(0, 0.5)
    pred = rng.random(shape) < rng.uniform(0, 0.5)
    if seed == 0:
        pred[:] = False  # one empty
    ours, reference = overlap(truth, pred), _set_overlap(truth, pred)
    for name in reference:
        assert ours[name] == pytest.approx(reference[name], abs=1e-12), name


@pytest.mark.parametrize("seed", range(6))
def test_surface_distances_agree_with_brute_force_on_random_masks(seed: int) -> None:
    from scipy import ndimage

    rng = np.random.default_rng(100 + seed)
    shape = (5, 8, 7)
    spacing = (2.5, 0.9, 0.6)
    # smooth-ish blobs so there are interiors as well as surfaces
    truth = ndimage.binary_dilation(rng.random(shape) < 0.05)
    pred = ndimage.binary_dilation(rng.random(shape) < 0.05)
    truth[2, 3, 3] = pred[2, 4, 3] = True  # neither empty
    ours = np.sort(surface_distances(truth, pred, spacing))
    brute = np.sort(_brute_surface_distances(truth, pred, spacing))
    np.testing.assert_allclose(ours, brute, atol=1e-9)
    assert hd95(truth, pred, spacing) == pytest.approx(np.percentile(brute, 95), abs=1e-9)
    assert mean_surface_distance(truth, pred, spacing) == pytest.approx(brute.mean(), abs=1e-9)


# --------------------------------------------------------------- summaries
def test_mean_sd_uses_the_sample_sd_and_ignores_undefined_values() -> None:
    assert mean_sd([1.0, 2.0, 3.0, float("nan")]) == {"mean": 2.0, "sd": 1.0, "n": 3}
    assert mean_sd([0.5]) == {"mean": 0.5, "sd": None, "n": 1}
    assert mean_sd([]) == {"mean": None, "sd": None, "n": 0}


def test_masks_touching_the_array_border_keep_their_border_surface() -> None:
    truth = np.ones((3, 6, 6), dtype=bool)  # fills the array: every face voxel is surface
    pred = truth.copy()
    pred[:, :, 4:] = False
    spacing = (2.0, 1.0, 0.5)
    np.testing.assert_allclose(np.sort(surface_distances(truth, pred, spacing)),
                               np.sort(_brute_surface_distances(truth, pred, spacing)), atol=1e-12)
    assert hd95(truth, pred, spacing) == pytest.approx(np.percentile(_brute_surface_distances(truth, pred, spacing), 95))


def test_surface_metrics_give_both_distances_in_one_pass() -> None:
    truth, pred = square(2, 2), square(2, 3)
    assert surface_metrics(truth, pred, (1.0, 0.7)) == {"hd95_mm": pytest.approx(0.7), "msd_mm": pytest.approx(0.35)}
    empty = np.zeros_like(truth)
    assert surface_metrics(empty, empty, (1.0, 1.0)) == {"hd95_mm": 0.0, "msd_mm": 0.0}


# ---------------------------------------------------------------- bootstrap intervals over patients
def test_bootstrap_of_identical_patients_has_zero_width_and_widens_with_spread():
    from segkit.evaluate.metrics import bootstrap_mean_ci

    same = bootstrap_mean_ci([0.8] * 6)
    assert same == [pytest.approx(0.8), pytest.approx(0.8)]
    narrow = bootstrap_mean_ci([0.78, 0.82, 0.79, 0.81, 0.8, 0.8])
    wide = bootstrap_mean_ci([0.5, 1.0, 0.6, 0.95, 0.7, 0.85])
    assert narrow[0] < 0.8 < narrow[1] and wide[0] < 0.775 < wide[1]
    assert 0 < narrow[1] - narrow[0] < wide[1] - wide[0]
    assert bootstrap_mean_ci([0.5, 1.0, 0.6, 0.95, 0.7, 0.85]) == wide  # seeded: the same interval every time
    assert bootstrap_mean_ci([0.9]) is None  # one patient: nothing to resample


def test_evaluation_intervals_resample_patients_not_slices():
    from segkit.evaluate.evaluation import Case, evaluate_cases

    def case(name: str, shift: int, slices: int = 4) -> Case:
        truth = np.zeros((slices, 16, 16), bool)
        truth[:, 4:10, 4:10] = True
        prob = np.zeros(truth.shape, np.float32)
        prob[:, 4 + shift:10 + shift, 4:10] = 1.0
        return Case(name, f"{name}-s1", (2.0, 1.0, 1.0), truth, prob, np.arange(slices), np.arange(slices) * 2.0)

    same = evaluate_cases([case(p, 1) for p in "abc"])
    for metric in ("dice", "iou", "precision", "recall"):
        low, high = same.pooled["ci95"][metric]
        assert low == pytest.approx(high) == pytest.approx(same.pooled[metric])
    assert same.over_patients["dice"]["ci95"][1] - same.over_patients["dice"]["ci95"][0] == pytest.approx(0)

    spread = evaluate_cases([case("a", 0), case("b", 1), case("c", 3)])
    low, high = spread.pooled["ci95"]["dice"]
    assert low < spread.pooled["dice"] < high and high - low > 0.1
    # a patient with many slices counts as one patient: 20 identical slices of "a" do not narrow the interval
    many = evaluate_cases([case("a", 0, 20), case("b", 1), case("c", 3)])
    tumour = many.over_slices["tumour"]["dice"]["ci95"]
    # the ends are resamples of one patient drawn three times (p = 1/27 > 2.5 %): the worst and the best patient
    assert tumour[0] == pytest.approx(min(r["dice"] for r in many.per_patient))
    assert tumour[1] == pytest.approx(max(r["dice"] for r in many.per_patient))
    assert evaluate_cases([case("a", 1)]).pooled["ci95"]["dice"] is None
