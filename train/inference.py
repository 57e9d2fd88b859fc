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

from segkit.errors import InputError
from segkit.train.runinfo import RunInfo

__all__ = ["RunPredictor", "load_predictor"]


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
    """

    def __init__(self, run: RunInfo, checkpoint: str = "best", batch_size: int = 8) -> None:
        from segkit.pipelines.tfdata import PipelineSpec, _preprocess_fn
        from segkit.train.backend import load
        from segkit.train.rundir import load_run_model

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
        tf = self._tf

        @tf.function(reduce_retracing=True)
        def forward(images: Any) -> Any:
            x = tf.map_fn(lambda im: self._prepare(im, tf.zeros(tf.shape(im)[:2], tf.uint8))[0], images,
                          fn_output_signature=tf.float32)
            prob = self.model(x, training=False)
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


def load_predictor(run: RunInfo, checkpoint: str = "best") -> RunPredictor:
    """Build the run's model with its weights (imports TensorFlow)."""
    return RunPredictor(run, checkpoint)
