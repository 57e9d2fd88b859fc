"""The weight average (segkit.train.ema): its decay warm-up, the swap, and what it covers."""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.train
pytest.importorskip("tensorflow")
pytest.importorskip("tf_keras")


def _model():
    from segkit.train.backend import load

    B = load()
    keras = B.keras
    inputs = keras.Input((4, 4, 1))
    x = keras.layers.Conv2D(2, 3, padding="same", name="conv")(inputs)
    x = keras.layers.BatchNormalization(name="bn")(x)
    x = keras.layers.Dropout(0.1)(x)
    return B.tf, keras.Model(inputs, x)


def test_the_average_covers_weights_and_batchnorm_statistics_only():
    from segkit.train.ema import averaged_variables

    _, model = _model()
    names = sorted(v.name.split("/")[-1].split(":")[0] for v in averaged_variables(model))
    assert names == ["beta", "bias", "gamma", "kernel", "moving_mean", "moving_variance"]


def test_decay_warms_up_then_holds_and_two_swaps_restore_the_model():
    from segkit.train.ema import WeightAverage

    tf, model = _model()
    kernel = model.get_layer("conv").kernel
    start = kernel.numpy().copy()
    ema = WeightAverage(tf, model, 0.9)
    np.testing.assert_array_equal(ema.shadows[0].numpy(), start)
    expected = start.astype(np.float64)
    for n in range(30):
        kernel.assign(kernel + 1.0)
        ema.update()
        d = min(0.9, (1 + n) / (10 + n))  # warm-up: the first updates follow the weights closely
        expected = d * expected + (1 - d) * kernel.numpy()
    np.testing.assert_allclose(ema.shadows[0].numpy(), expected, rtol=1e-5)
    live = kernel.numpy().copy()
    ema.swap()
    np.testing.assert_allclose(kernel.numpy(), expected, rtol=1e-5)
    ema.swap()
    np.testing.assert_array_equal(kernel.numpy(), live)
    assert int(ema.updates.numpy()) == 30
