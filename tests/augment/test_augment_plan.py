"""The augmentation plan: exact counts, even parents, determinism, seed sensitivity."""

from __future__ import annotations

from collections import Counter

import pytest

from segkit.augment.ops import Flip
from segkit.augment.plan import draw_plan, make_ops, parse_transform, plan_digest
from segkit.errors import UsageError

TRAIN_ROWS = [0, 1, 2, 5, 6, 9, 10]  # rows 3, 4, 7, 8 are val/test in this pretend store


def test_plan_fills_the_target_exactly_from_train_rows_only() -> None:
    plan = draw_plan(TRAIN_ROWS, target=40, ops=make_ops(), seed=3)
    assert len(plan) == 40 - len(TRAIN_ROWS)
    assert {s.parent for s in plan} <= set(TRAIN_ROWS)


def test_parents_are_used_evenly() -> None:
    plan = draw_plan(TRAIN_ROWS, target=7 + 23, ops=make_ops(), seed=3)
    counts = Counter(s.parent for s in plan)
    assert set(counts) == set(TRAIN_ROWS)
    assert max(counts.values()) - min(counts.values()) <= 1  # 23 = 3·7 + 2 → counts of 3 and 4


def test_same_seed_gives_the_same_plan() -> None:
    a = draw_plan(TRAIN_ROWS, 50, make_ops(), seed=11)
    b = draw_plan(TRAIN_ROWS, 50, make_ops(), seed=11)
    assert a == b and plan_digest(a) == plan_digest(b)


def test_different_seed_gives_a_different_plan() -> None:
    a = draw_plan(TRAIN_ROWS, 50, make_ops(), seed=11)
    b = draw_plan(TRAIN_ROWS, 50, make_ops(), seed=12)
    assert plan_digest(a) != plan_digest(b)
    assert [s.transform for s in a] != [s.transform for s in b]


def test_every_sample_has_at_least_one_op_in_canonical_order() -> None:
    order = ["flip", "rotate", "blur", "contrast"]
    plan = draw_plan(TRAIN_ROWS, 300, make_ops(), seed=0)
    for sample in plan:
        names = list(sample.op_names)
        assert names and names == sorted(names, key=order.index)
    used = Counter(name for s in plan for name in s.op_names)
    assert set(used) == set(order)  # each op is actually drawn


def test_draws_respect_the_configured_ranges() -> None:
    ops = make_ops(["rotate", "blur"], {"rotate": {"angle": (-5, 5), "p": 1.0}, "blur": {"sigma": (2, 3), "p": 1.0}})
    for sample in draw_plan(TRAIN_ROWS, 100, ops, seed=1):
        rotate, blur = sample.steps
        assert -5 <= rotate["angle"] <= 5 and 2 <= blur["sigma"] <= 3


def test_a_parent_never_gets_the_same_transform_twice_when_avoidable() -> None:
    # Flip only, two axes, two children per parent: one must be horizontal, the other vertical.
    plan = draw_plan([0, 1, 2], target=9, ops=(Flip(p=1.0),), seed=5)
    for parent in (0, 1, 2):
        axes = sorted(s.steps[0]["axis"] for s in plan if s.parent == parent)
        assert axes == ["horizontal", "vertical"]


def test_transform_text_round_trips() -> None:
    sample = draw_plan(TRAIN_ROWS, 8, make_ops(), seed=2)[0]
    assert parse_transform(sample.transform) == [dict(step) for step in sample.steps]
    assert parse_transform("") == []


def test_target_equal_to_the_originals_plans_nothing() -> None:
    assert draw_plan(TRAIN_ROWS, len(TRAIN_ROWS), make_ops(), seed=0) == []


def test_target_below_the_originals_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="5 is below the 7 training originals"):
        draw_plan(TRAIN_ROWS, 5, make_ops(), seed=0)


def test_store_without_training_slices_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="no training slice to augment"):
        draw_plan([], 10, make_ops(), seed=0)
