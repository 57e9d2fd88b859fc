"""An exponential moving average (EMA) of a model's weights, for validation, the best weights and inference.

With a few hundred steps on a CPU the weights at any one step are noisy: the
validation Dice of consecutive epochs can differ by 0.3.  The average of the
recent weights is steadier and usually generalises better (Polyak averaging;
timm's ``ModelEmaV2``, TensorFlow's ``ExponentialMovingAverage``).  Averaged are
the trainable weights and BatchNorm's moving statistics (so the statistics match
the averaged weights); not the dropout call counters.

The decay warms up as in ``tf.train.ExponentialMovingAverage(num_updates=…)``:
``min(decay, (1 + n) / (10 + n))`` at update ``n``, so the first epochs are not
dominated by the random initial weights.  The shadow variables belong to the
training checkpoint, so a resumed run continues the same average bit for bit.
"""

from __future__ import annotations

from typing import Any

__all__ = ["WeightAverage", "averaged_variables"]


def averaged_variables(model: Any) -> list[Any]:
    """The model variables an average covers: the trainable ones and BatchNorm's moving mean and variance."""
    out = list(model.trainable_variables)
    seen = {id(v) for v in out}
    for v in model.non_trainable_variables:
        name = v.name.split("/")[-1]
        if id(v) not in seen and v.dtype.is_floating and ("moving_mean" in name or "moving_variance" in name):
            out.append(v)
            seen.add(id(v))
    return out


class WeightAverage:
    """Shadow copies of :func:`averaged_variables` and the ops that update and swap them.

    Create it inside the strategy's scope.  ``update`` runs after each optimizer
    step (in a ``tf.function``), ``swap`` exchanges the model's weights and the
    average (call it twice to restore the model exactly).
    """

    def __init__(self, tf: Any, model: Any, decay: float) -> None:
        self.tf = tf
        self.decay = float(decay)
        self.variables = averaged_variables(model)
        self.shadows = [tf.Variable(v.read_value(), trainable=False, name=f"ema_{i}")
                        for i, v in enumerate(self.variables)]
        self.updates = tf.Variable(0, dtype=tf.int64, trainable=False, name="ema_updates")

    def trackable(self) -> Any:
        """What the training checkpoint saves: the shadows and the update count."""
        tf = self.tf
        module = tf.Module()
        module.shadows = self.shadows
        module.updates = self.updates
        return module

    def update(self) -> None:
        """One step of the average (graph-friendly)."""
        tf = self.tf
        n = tf.cast(self.updates, tf.float32)
        d = tf.minimum(tf.constant(self.decay, tf.float32), (1.0 + n) / (10.0 + n))
        for shadow, var in zip(self.shadows, self.variables):
            w = tf.cast(d, shadow.dtype)
            shadow.assign(w * shadow + (1.0 - w) * tf.cast(var, shadow.dtype))
        self.updates.assign_add(1)

    def swap(self) -> None:
        """Exchange the model's weights and the average."""
        for shadow, var in zip(self.shadows, self.variables):
            live = var.read_value()
            var.assign(shadow.read_value())
            shadow.assign(live)
