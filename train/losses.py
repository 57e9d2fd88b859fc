"""The paper's loss (BCE + λ·soft Dice, eqs. 2–3) and the overlap metrics (Dice, IoU, precision, recall).

Losses are per example (shape ``(batch,)``) so a distributed step can sum them
and divide by the *global* batch.  Metrics are accumulated as pixel counts (true
positives, false positives, false negatives at threshold ½) over a whole epoch
or split and turned into scores once: micro-averaged, so empty slices do not
count as perfect or failed cases on their own.
"""

from __future__ import annotations

from typing import Any

from segkit.train.backend import load

_B = load()
tf, keras = _B.tf, _B.keras

__all__ = ["soft_dice_loss", "bce_dice_loss", "confusion_counts", "scores"]


def soft_dice_loss(y_true: Any, y_pred: Any, epsilon: float = 1.0) -> Any:
    """``1 − (2Σŷy + ε) / (Σŷ + Σy + ε)`` per example (paper eq. 2)."""
    axes = list(range(1, len(y_pred.shape)))
    y_true = tf.cast(y_true, y_pred.dtype)
    inter = tf.reduce_sum(y_true * y_pred, axis=axes)
    total = tf.reduce_sum(y_true, axis=axes) + tf.reduce_sum(y_pred, axis=axes)
    return 1.0 - (2.0 * inter + epsilon) / (total + epsilon)


def bce_dice_loss(y_true: Any, y_pred: Any, lambda_dice: float = 1.0, epsilon: float = 1.0,
                  dice: str = "slice") -> Any:
    """``BCE + λ·Dice`` per example (paper eq. 3); BCE is the mean over the example's pixels.

    ``dice="slice"``: each example's own soft Dice.  ``dice="batch"``: one soft Dice over
    all pixels of the batch (as nnU-Net's batch Dice), given to every example, so a slice
    without tumour is not scored on its own (its false positives still count).
    """
    y_true = tf.cast(y_true, y_pred.dtype)
    axes = list(range(1, len(y_pred.shape)))
    bce = tf.reduce_mean(keras.backend.binary_crossentropy(y_true, y_pred), axis=axes)
    if dice == "batch":
        whole = soft_dice_loss(tf.reshape(y_true, [1, -1]), tf.reshape(y_pred, [1, -1]), epsilon)
        return bce + lambda_dice * tf.broadcast_to(whole, tf.shape(bce))
    return bce + lambda_dice * soft_dice_loss(y_true, y_pred, epsilon)


def confusion_counts(y_true: Any, y_pred: Any, threshold: float = 0.5) -> Any:
    """``[TP, FP, FN]`` pixel counts (float64) of the thresholded prediction."""
    truth = tf.cast(y_true, tf.float64) > 0.5
    pred = tf.cast(y_pred, tf.float64) >= threshold

    def count(mask: Any) -> Any:
        return tf.reduce_sum(tf.cast(mask, tf.float64))

    return tf.stack([count(truth & pred), count(~truth & pred), count(truth & ~pred)])


def scores(tp: float, fp: float, fn: float) -> dict[str, float]:
    """Dice, IoU, precision and recall from pixel counts; a ratio with nothing to count is 1.0 (nothing missed)."""

    def ratio(num: float, den: float) -> float:
        return float(num / den) if den > 0 else 1.0

    return {"dice": ratio(2 * tp, 2 * tp + fp + fn), "iou": ratio(tp, tp + fp + fn),
            "precision": ratio(tp, tp + fp), "recall": ratio(tp, tp + fn)}
