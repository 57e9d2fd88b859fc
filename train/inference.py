"""A trained run as a :class:`~segkit.train.evaluate.Predictor`: normalised slices in, probabilities out.

Preprocessing is the training pipeline's own (:mod:`segkit.pipelines.tfdata`):
resize to the model's input size (bilinear), grey → 3 channels (``2.5d`` runs:
each slice between its neighbours in the volume given, edge slices repeated), the
encoder's input scaling.  The model's sigmoid output is resized back to the slices' size
(bilinear, pixel centres aligned) and clipped to [0, 1].  Slices are predicted in
fixed batches in the order given, so the same slices give the same numbers
whether they come from a store (``evaluate``) or a DICOM series (``predict``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from segkit.errors import InputError, UsageError
from segkit.train.runinfo import RunInfo

__all__ = ["TTA_CHOICES", "TTA_VIEWS", "RunPredictor", "load_predictor", "resolve_tta"]

#: Test-time augmentation → the views averaged, as (quarter turns, left-right flip after the turns).
#: ``flips``: identity, left-right, up-down (= 2 turns + left-right), both (= 2 turns).
TTA_VIEWS: dict[str, tuple[tuple[int, bool], ...]] = {
    "none": ((0, False),),
    "flips": ((0, False), (0, True), (2, True), (2, False)),
    "dihedral": tuple((t, f) for t in range(4) for f in (False, True)),
}
#: What ``--tta`` accepts: ``auto`` resolves per run (:func:`resolve_tta`).
TTA_CHOICES = ("auto", *TTA_VIEWS)


def resolve_tta(config: dict[str, Any], tta: str = "auto") -> str:
    """The test-time augmentation to use for a run with training ``config``.

    ``auto`` is ``dihedral`` when the run trained on all 8 flips and quarter turns
    (``data.dihedral``: every view is one the model has learnt) and ``none`` otherwise
    (the paper preset); any other value is returned as given, after a check.

    Raises
    ------
    UsageError
        ``tta`` is not one of :data:`TTA_CHOICES`.
    """
    if tta not in TTA_CHOICES:
        raise UsageError("--tta", f"must be one of {', '.join(TTA_CHOICES)}, not {tta!r}")
    if tta == "auto":
        return "dihedral" if (config.get("data") or {}).get("dihedral") else "none"
    return tta


class RunPredictor:
    """A run's model with the training preprocessing.

    Parameters
    ----------
    run:
        From :func:`segkit.train.runinfo.read_run`.
    checkpoint:
        ``best`` (``best.weights.h5``) or ``latest`` (last checkpoint).
    batch_size:
        Slices per forward pass.
    tta:
        Test-time augmentation: ``auto`` (:func:`resolve_tta`); ``none``; ``flips`` (the mean over the slice, its
        left-right, up-down and both flips, like nnU-Net's mirroring); ``dihedral``
        (the mean over all 8 flips and quarter turns).  Each view is transformed
        back before averaging, so the output is aligned with the input.
    """

    def __init__(self, run: RunInfo, checkpoint: str = "best", batch_size: int = 8, tta: str = "auto") -> None:
        from segkit.pipelines.tfdata import PipelineSpec, _preprocess_fn
        from segkit.train.backend import load
        from segkit.train.rundir import load_run_model

        self.tta = resolve_tta(run.config, tta)  # a bad value fails before the model loads
        self._tf = load("segkit evaluate/predict").tf
        if checkpoint == "best":
            run.best_weights()
            self.checkpoint = "best.weights.h5"
        else:
            latest = self._tf.train.latest_checkpoint(str(run.path / "checkpoints"))
            if latest is None:
                raise InputError(str(run.path), "has no checkpoint in checkpoints/")
            self.checkpoint = f"checkpoints/{latest.rsplit('/', 1)[-1]}"
        self.model = load_run_model(run.path, weights=checkpoint)
        self.params = int(self.model.count_params())
        model_cfg = run.config["model"]
        self.input_mode = str(model_cfg.get("input_mode", "2d"))
        spec = PipelineSpec(input_size=int(model_cfg["input_size"]), backbone=str(model_cfg["backbone"]),
                            batch_size=batch_size, input_mode=self.input_mode)
        self._prepare = _preprocess_fn(spec)
        self.batch_size = int(batch_size)
        views = TTA_VIEWS[self.tta]
        tf = self._tf

        table = tf.constant([[turns, int(flip)] for turns, flip in views], tf.int32)

        def prepared(images: Any) -> Any:
            return tf.map_fn(lambda im: self._prepare(im, tf.zeros(tf.shape(im)[:2], tf.uint8))[0], images,
                             fn_output_signature=tf.float32)

        def mean_over_views(x: Any) -> Any:
            # One model call in a loop over the views (traced once, memory of one batch), each view turned back.
            total = tf.zeros_like(x[..., :1])
            for k in tf.range(len(views)):
                turns, flip = table[k, 0], table[k, 1] > 0
                v = tf.image.rot90(x, turns)
                v = tf.cond(flip, lambda: tf.reverse(v, [2]), lambda: v)
                prob = self.model(tf.ensure_shape(v, x.shape), training=False)
                prob = tf.cond(flip, lambda: tf.reverse(prob, [2]), lambda: prob)
                total += tf.ensure_shape(tf.image.rot90(prob, (4 - turns) % 4), total.shape)
            return total / float(len(views))

        @tf.function(reduce_retracing=True)
        def forward(images: Any) -> Any:
            x = prepared(images)
            prob = self.model(x, training=False) if len(views) == 1 else mean_over_views(x)
            prob = tf.image.resize(prob, tf.shape(images)[1:3], method="bilinear")
            return tf.clip_by_value(prob[..., 0], 0.0, 1.0)

        self._forward = forward

    def predict(self, images: np.ndarray) -> np.ndarray:
        """``(n, H, W)`` normalised float32 slices of one volume, in order → ``(n, H, W)`` float32 probabilities."""
        images = np.asarray(images, dtype=np.float32)
        out = np.empty(images.shape, dtype=np.float32)
        inputs = images
        if self.input_mode == "2.5d":
            from segkit.pipelines.neighbours import stack_volume

            inputs = stack_volume(images)
        for start in range(0, images.shape[0], self.batch_size):
            batch = inputs[start:start + self.batch_size]
            out[start:start + len(batch)] = self._forward(self._tf.constant(batch)).numpy()
        return out


def load_predictor(run: RunInfo, checkpoint: str = "best", tta: str = "auto") -> RunPredictor:
    """Build the run's model with its weights (imports TensorFlow)."""
    return RunPredictor(run, checkpoint, tta=tta)
