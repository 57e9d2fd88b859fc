"""The augmentation plan: for each new image, its parent slice, its ops and their parameters.

The whole plan is drawn from one seeded :class:`numpy.random.Generator` before
any pixel is touched, so the output depends only on (the train slices, the
target, the op settings, the seed) — not on the number of workers, the order in
which samples are computed, or a restart after a crash.  The ops it draws from
are built here too, from ``--ops`` and their settings (:func:`make_ops`;
:func:`parse_settings` reads ``--set``).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from segkit.augment.ops import DEFAULT_OPS, OP_CLASSES, Op
from segkit.errors import UsageError

__all__ = ["PlannedSample", "draw_plan", "plan_digest", "parse_transform", "make_ops", "parse_settings"]

#: A parent never gets two identical transforms (possible only for discrete
#: draws such as a lone flip); after this many redraws the duplicate is kept.
_MAX_REDRAWS = 64


@dataclass(frozen=True)
class PlannedSample:
    """One image to create.

    Attributes
    ----------
    parent:
        Row of the parent slice in the source store.
    steps:
        The ops in application order, each ``{"op": name, **params}``.
    """

    parent: int
    steps: tuple[Mapping[str, Any], ...]

    @property
    def transform(self) -> str:
        """The steps as compact, key-sorted JSON (what the store's ``transform`` column holds)."""
        return json.dumps(list(self.steps), sort_keys=True, separators=(",", ":"), ensure_ascii=True)

    @property
    def op_names(self) -> tuple[str, ...]:
        return tuple(step["op"] for step in self.steps)


def parse_transform(text: str) -> list[dict[str, Any]]:
    """Read back a ``transform`` column value (empty text ⇒ no steps)."""
    return json.loads(text) if text else []


def make_ops(names: Sequence[str] = DEFAULT_OPS,
             settings: Mapping[str, Mapping[str, Any]] | None = None) -> tuple[Op, ...]:
    """Build the ops named in ``names`` (with optional per-op settings), in the canonical order.

    Parameters
    ----------
    names:
        Op names, any order, e.g. ``["rotate", "flip"]``.
    settings:
        Optional keyword arguments per op name, e.g. ``{"rotate": {"angle": (-10, 10)}}``.

    Returns
    -------
    tuple of Op
        One instance per name, ordered flip → rotate → blur → contrast.

    Raises
    ------
    UsageError
        If a name is unknown or repeated, the list is empty, or a setting is invalid.
    """
    settings = dict(settings or {})
    names = [n.strip().lower() for n in names if n.strip()]
    if not names:
        raise UsageError("--ops", f"give at least one op out of {', '.join(OP_CLASSES)}.")
    unknown = sorted(set(names) - set(OP_CLASSES))
    if unknown:
        raise UsageError("--ops", f"unknown op {unknown[0]!r}; choose from {', '.join(OP_CLASSES)}.")
    if len(set(names)) != len(names):
        raise UsageError("--ops", "each op may be given only once.")
    extra = sorted(set(settings) - set(names))
    if extra:
        raise UsageError("--ops", f"settings given for {extra[0]!r}, which is not among the chosen ops.")
    ops = []
    for name in OP_CLASSES:
        if name in names:
            try:
                ops.append(OP_CLASSES[name](**settings.get(name, {})))
            except TypeError as exc:
                raise UsageError(f"--ops {name}", f"invalid setting ({exc}).") from None
    return tuple(ops)


def parse_settings(items: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Parse ``OP.KEY=VALUE`` strings (the CLI's ``--set``) into per-op settings for :func:`make_ops`.

    A value of two comma-separated numbers is a range, one number a scalar
    (e.g. ``p``); ``flip.axes`` takes names.  Examples: ``rotate.angle=-10,10``,
    ``blur.p=0.3``, ``flip.axes=horizontal``.

    Raises
    ------
    UsageError
        If an item is malformed or names an unknown op or setting.
    """
    settings: dict[str, dict[str, Any]] = {}
    for item in items:
        key, sep, value = item.partition("=")
        op, dot, field_name = key.strip().lower().partition(".")
        if not (sep and dot and op and field_name and value.strip()):
            raise UsageError("--set", f"expected OP.KEY=VALUE such as rotate.angle=-10,10, got {item!r}.")
        cls = OP_CLASSES.get(op)
        if cls is None:
            raise UsageError("--set", f"unknown op {op!r} in {item!r}; choose from {', '.join(OP_CLASSES)}.")
        known = [f.name for f in fields(cls)]  # type: ignore[arg-type]
        if field_name not in known:
            raise UsageError("--set", f"{op} has no setting {field_name!r}; it has {', '.join(known)}.")
        parts = [v.strip() for v in value.split(",")]
        if field_name == "axes":
            parsed: Any = tuple(parts)
        else:
            try:
                numbers = [float(v) for v in parts]
            except ValueError:
                raise UsageError("--set", f"{key} takes numbers, got {value!r}.") from None
            if field_name == "p":
                if len(numbers) != 1:
                    raise UsageError("--set", f"{key} takes one number, got {value!r}.")
                parsed = numbers[0]
            else:
                if len(numbers) != 2:
                    raise UsageError("--set", f"{key} takes a range LOW,HIGH, got {value!r}.")
                parsed = tuple(numbers)
        settings.setdefault(op, {})[field_name] = parsed
    return settings


def _draw_steps(rng: np.random.Generator, ops: Sequence[Op]) -> tuple[dict[str, Any], ...]:
    # One Bernoulli draw per op (fixed count), then parameters of the chosen ones.
    chosen = [op for op, u in zip(ops, rng.random(len(ops))) if u < op.p]
    if not chosen:
        # Every planned image must differ from its parent: fall back to one op, chosen uniformly.
        chosen = [ops[int(rng.integers(len(ops)))]]
    return tuple({"op": op.name, **op.draw(rng)} for op in chosen)


def draw_plan(train_rows: Sequence[int], target: int, ops: Sequence[Op], seed: int) -> list[PlannedSample]:
    """Draw the plan that grows ``train_rows`` to exactly ``target`` images.

    Parents are used evenly: each round visits every training slice once in a
    fresh random order, so every slice gets ``n // k`` or ``n // k + 1`` children
    (``n`` new images, ``k`` originals).  Each child gets each op with the op's
    probability (at least one op), applied in the order flip → rotate → blur →
    contrast, and no parent gets the same transform twice.

    Parameters
    ----------
    train_rows:
        Rows of the training-split originals in the source store.
    target:
        Total number of training images wanted, originals included.
    ops:
        The ops to draw from (see :func:`make_ops`).
    seed:
        Seed of the one generator every draw comes from.

    Returns
    -------
    list of PlannedSample
        ``target - len(train_rows)`` samples, in output order.

    Raises
    ------
    UsageError
        If there is no training slice, no op, or ``target`` is below the number of originals.
    """
    rows = np.asarray(list(train_rows), dtype=np.int64)
    if rows.size == 0:
        raise UsageError("input store", "it has no training slice to augment.")
    if target < rows.size:
        raise UsageError("--target", f"{target} is below the {rows.size} training originals already in the store.")
    if not ops:
        raise UsageError("--ops", "give at least one op.")
    order = [op.name for op in ops]
    if order != [name for name in OP_CLASSES if name in order]:
        raise UsageError("--ops", "ops must be given once each, in the order flip, rotate, blur, contrast.")

    rng = np.random.default_rng(seed)
    n_new = target - rows.size
    rounds = -(-n_new // rows.size)
    parents = np.concatenate([rng.permutation(rows) for _ in range(rounds)])[:n_new] if n_new else rows[:0]

    seen: set[tuple[int, str]] = set()
    plan: list[PlannedSample] = []
    for parent in parents.tolist():
        for _ in range(_MAX_REDRAWS):
            sample = PlannedSample(int(parent), _draw_steps(rng, ops))
            if (sample.parent, sample.transform) not in seen:
                break
        seen.add((sample.parent, sample.transform))
        plan.append(sample)
    return plan


def plan_digest(plan: Sequence[PlannedSample]) -> str:
    """SHA-256 over the plan's parents and transforms (identifies a plan in a half-written store)."""
    h = hashlib.sha256()
    for sample in plan:
        h.update(f"{sample.parent}\t{sample.transform}\n".encode())
    return h.hexdigest()
