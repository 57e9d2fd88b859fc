"""On-the-fly intensity augmentation for training, seeded and deterministic (TensorFlow ops).

The stored slices are scaled to [0, 1] per volume.  A T1- and a T2-weighted
head do not differ by a scale: their tissues come in a different order of
brightness (tumour darker than white matter on T1, brighter on T2).  So that a
model trained on a few patients of one weighting segments the other, each
training sample (probability ``remap``) goes through a random smooth intensity
curve: a piecewise-linear map through ``knots`` equally spaced points whose
values are drawn uniformly in [0, 1], with 0 kept at 0 so the background stays
dark (random contrast, as in SynthSeg-style training).  Then a random gamma
``x^γ`` (γ log-uniform in ``gamma``) and a random scale (uniform in
``scale``), each with probability ``p``.  With probability ``invert`` the head is
inverted first (``x → 1 + t − x`` above ``t`` = ``invert_threshold``; background and
skull, darker than ``t``, are kept): the order of tissue brightness flips, which
is roughly how a T2-weighted head relates to a T1-weighted one (fluid, oedema
and necrosis dark on T1, bright on T2) without a random curve's loss of edges.
With probability ``hole`` the holes of the target (a necrotic core: enclosed by
tumour, not target; :func:`hole_label` marks them in the mask as read) get a
random brightness with their texture kept, so a core dark on T1 also appears
bright, as on T2.  With probability ``fill`` (drawn from the same number, so
``hole`` + ``fill`` ≤ 1 and the two never meet) the holes get the brightness of
the tumour around them instead, texture kept, and count as target for that
sample (:func:`make_core_fill`): a cored tumour becomes a solid one, so a model
whose only tumours of one weighting have a core still sees solid ones.  A
redrawn core keeps at least ``hole_margin`` away from its tumour's brightness,
so that a core which looks like tumour is never labelled "not target".  Apart
from that fill, the mask never changes.

The draws of a sample are ``tf.random.stateless_uniform`` seeded by
``(seed, epoch, position in the epoch)``: a pure function of the run's seed and
the data position, so a resumed run draws exactly what an uninterrupted run
draws.  Validation, evaluation and prediction never augment.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["CONTRAST_DEFAULTS", "HOLE", "contrast_settings", "hole_label", "make_contrast", "make_core_fill",
           "make_dihedral"]

#: The settings ``data.contrast`` takes (any key left out takes this value).
CONTRAST_DEFAULTS: dict[str, Any] = {"remap": 0.5, "knots": 5, "p": 0.5, "gamma": [0.7, 1.5], "scale": [0.9, 1.1],
                                     "invert": 0.0, "invert_threshold": 0.1, "hole": 0.0, "fill": 0.0, "hole_margin": 0.0}

#: Value of a mask pixel that lies in a hole of the target (read with ``hole`` augmentation on; never a target).
HOLE = 2


def hole_label(mask: "np.ndarray") -> "np.ndarray":
    """``mask`` (0/1) with the pixels of its holes set to :data:`HOLE` (an enclosed region that is not target)."""
    import numpy as np
    from scipy import ndimage

    mask = np.asarray(mask, np.uint8)
    target = mask > 0
    if not target.any():
        return mask
    holes = ndimage.binary_fill_holes(target) & ~target
    return np.where(holes, np.uint8(HOLE), (target).astype(np.uint8))


def contrast_settings(config: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """``data.contrast`` with every key explicit, or ``None`` when it is off (checked by
    :func:`segkit.train.config.resolve`, which also refuses ``hole`` + ``fill`` above 1)."""
    if config is None:
        return None
    return {**CONTRAST_DEFAULTS, **dict(config)}


def _core_draw(tf: Any, seed: int, epoch: Any, position: Any) -> Any:
    """The two numbers of a sample's core: [0] chooses redraw / fill / nothing, [1] the redrawn brightness."""
    key = tf.stack([tf.constant(int(seed), tf.int64), tf.cast(epoch, tf.int64) * 1_000_003 + tf.cast(position, tf.int64)])
    return tf.random.stateless_uniform([2], seed=key + tf.constant([7127, 0], tf.int64), dtype=tf.float32)


def make_core_fill(settings: Mapping[str, Any], seed: int) -> Any:
    """``filled(epoch, position) -> bool``: whether the sample's holes are filled (and so count as target)."""
    from segkit.train.backend import load

    tf = load().tf
    p_hole, p_fill = float(settings.get("hole", 0.0)), float(settings.get("fill", 0.0))

    def filled(epoch: Any, position: Any) -> Any:
        h = _core_draw(tf, seed, epoch, position)[0]
        return (h >= p_hole) & (h < p_hole + p_fill)

    return filled


def make_contrast(settings: Mapping[str, Any], seed: int) -> Any:
    """``augment(image H×W×C, epoch, position[, hole, target]) -> image``: one sample's intensity augmentation.

    ``hole`` and ``target`` (H×W×1 bool) locate the target's holes and the target itself; without them
    the core is left alone.
    """
    from segkit.train.backend import load

    tf = load().tf
    knots = int(settings["knots"])
    p_remap, p = float(settings["remap"]), float(settings["p"])
    g_lo, g_hi = (float(v) for v in settings["gamma"])
    s_lo, s_hi = (float(v) for v in settings["scale"])
    import math

    log_g = (math.log(g_lo), math.log(g_hi))
    p_invert, t_invert = float(settings.get("invert", 0.0)), float(settings.get("invert_threshold", 0.1))

    p_hole, p_fill = float(settings.get("hole", 0.0)), float(settings.get("fill", 0.0))
    margin = float(settings.get("hole_margin", 0.0))

    def augment(image: Any, epoch: Any, position: Any, hole: Any = None, target: Any = None) -> Any:
        key = tf.stack([tf.constant(int(seed), tf.int64), tf.cast(epoch, tf.int64) * 1_000_003 + tf.cast(position, tf.int64)])
        u = tf.random.stateless_uniform([5 + knots], seed=key, dtype=tf.float32)
        x = tf.clip_by_value(image, 0.0, 1.0)
        if p_invert > 0.0:  # its own stream: runs without inversion draw what they always drew
            v = tf.random.stateless_uniform([], seed=key + tf.constant([104729, 0], tf.int64), dtype=tf.float32)
            x = tf.where((v < p_invert) & (x > t_invert), 1.0 + t_invert - x, x)
        if (p_hole > 0.0 or (p_fill > 0.0 and target is not None)) and hole is not None:
            # the core's brightness drawn anew, or the tumour's (fill); its texture kept (own stream)
            h = _core_draw(tf, seed, epoch, position)
            inside = tf.cast(hole, tf.float32)
            mean = tf.reduce_sum(x * inside, axis=[0, 1], keepdims=True) / tf.maximum(tf.reduce_sum(inside), 1.0)
            level = t_invert + (1.0 - t_invert) * h[1]
            if (p_fill > 0.0 or margin > 0.0) and target is not None:
                tumour = tf.cast(target, tf.float32)
                tumour_level = (tf.reduce_sum(x * tumour, axis=[0, 1], keepdims=True)
                                / tf.maximum(tf.reduce_sum(tumour), 1.0))
                if margin > 0.0:  # uniform on [t, tumour - margin] ∪ [tumour + margin, 1]
                    below = tf.maximum(tumour_level - margin - t_invert, 0.0)
                    above = tf.maximum(1.0 - tumour_level - margin, 0.0)
                    v = h[1] * (below + above)
                    level = tf.where(v < below, t_invert + v, tumour_level + margin + (v - below))
                level = tf.where(h[0] < p_hole, level, tumour_level)
            x = tf.where((h[0] < p_hole + p_fill) & (inside > 0), tf.clip_by_value(x - mean + level, 0.0, 1.0), x)
        # the random curve through (0, 0) and `knots` points at 1/knots, 2/knots … 1
        values = tf.concat([[0.0], u[5:]], 0)
        t = x * knots
        k = tf.clip_by_value(tf.floor(t), 0.0, knots - 1.0)
        lo = tf.gather(values, tf.cast(k, tf.int32))
        hi = tf.gather(values, tf.cast(k, tf.int32) + 1)
        curved = lo + (hi - lo) * (t - k)
        x = tf.where(u[0] < p_remap, curved, x)
        gamma = tf.exp(log_g[0] + (log_g[1] - log_g[0]) * u[2])
        x = tf.where(u[1] < p, tf.pow(tf.maximum(x, 0.0), gamma), x)
        scale = s_lo + (s_hi - s_lo) * u[4]
        return tf.where(u[3] < p, x * scale, x)

    return augment


def make_dihedral(seed: int) -> Any:
    """``augment(image H×W×C, mask H×W×1, epoch, position) -> (image, mask)``: one of the 8 flips / quarter turns.

    Exact (no interpolation), drawn like the contrast from ``(seed, epoch, position)`` (its own stream).
    """
    from segkit.train.backend import load

    tf = load().tf

    def augment(image: Any, mask: Any, epoch: Any, position: Any) -> tuple[Any, Any]:
        key = tf.stack([tf.constant(int(seed) + 7919, tf.int64),
                        tf.cast(epoch, tf.int64) * 1_000_003 + tf.cast(position, tf.int64)])
        u = tf.random.stateless_uniform([2], seed=key, dtype=tf.float32)
        k = tf.cast(tf.floor(u[0] * 4.0), tf.int32)
        image, mask = tf.image.rot90(image, k), tf.image.rot90(mask, k)
        flip = u[1] < 0.5
        return (tf.where(flip, tf.image.flip_left_right(image), image),
                tf.where(flip, tf.image.flip_left_right(mask), mask))

    return augment
