"""Train-step cost of the three variants, and input-pipeline throughput against training consumption.

Run by hand (it takes a few minutes on 2 CPU cores)::

    python -m benchmarks.train_step                      # ResNet-50, 128², batch 8
    python -m benchmarks.train_step --sizes 128 256 --steps 5

Prints, per size, the median seconds per training step (BCE + λ·Dice, Adam,
same as ``segkit train``) of ``unet`` (segmentation_models), ``unet_transformer``
and ``hybrid``, and their ratios to ``unet`` (goal: hybrid ≤ 1.6×).  Then the
tf.data pipeline's slices/s over a 512² store (parallel Zarr reads, resize,
normalisation, batching) against the slices/s the hybrid consumes at that size
(goal ≥ 20×).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def make_step(variant: str, size: int, batch: int, backbone: str):
    """A compiled training step (BCE + λ·Dice, Adam) of one variant on a fixed random batch, warmed up."""
    from segkit.train import losses
    from segkit.train.backend import load
    from segkit.train.config import load_config
    from segkit.train.model import build_model

    B = load()
    tf, keras = B.tf, B.keras
    config = load_config("paper", overrides={"model": {"variant": variant, "input_size": size, "backbone": backbone,
                                                       "encoder_weights": "none"}})
    model = build_model(config)
    optimizer = keras.optimizers.Adam(1e-4)
    rng = np.random.default_rng(0)
    x = tf.constant(rng.uniform(0, 255, (batch, size, size, 3)).astype("float32"))
    y = tf.constant((rng.uniform(size=(batch, size, size, 1)) > 0.9).astype("float32"))

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(losses.bce_dice_loss(y, model(x, training=True)))
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return loss

    for _ in range(2):  # graph building + first-step allocations
        step().numpy()
    return step


def step_times(size: int, batch: int, steps: int, backbone: str) -> dict[str, float]:
    """Median s/step per variant; steps are interleaved (unet, ut, hybrid, unet, …) so that load from
    other processes on a shared machine hits every variant alike."""
    variants = ("unet", "unet_transformer", "hybrid")
    fns = {v: make_step(v, size, batch, backbone) for v in variants}
    times: dict[str, list[float]] = {v: [] for v in variants}
    for _ in range(steps):
        for v in variants:
            t = time.perf_counter()
            fns[v]().numpy()
            times[v].append(time.perf_counter() - t)
    return {v: statistics.median(t) for v, t in times.items()}


def pipeline_rate(size: int, slices: int, batch: int, backbone: str) -> float:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repo root: tests.helpers
    from tests.helpers.phantom_store import write_phantom_store

    from segkit.pipelines.training_store import open_training_store
    from segkit.pipelines.tfdata import PipelineSpec, train_dataset

    with tempfile.TemporaryDirectory() as tmp:
        path = write_phantom_store(Path(tmp) / "bench.zarr", patients=4, slices=slices // 4, size=size)
        store = open_training_store(path)
        spec = PipelineSpec(input_size=size, backbone=backbone, batch_size=batch, seed=0)
        for _ in train_dataset(store, spec, epoch=0).take(1):  # warm-up: tracing, first reads
            pass
        t = time.perf_counter()
        n = 0
        for epoch in (1, 2):
            for x, _ in train_dataset(store, spec, epoch=epoch):
                n += int(x.shape[0])
        return n / (time.perf_counter() - t)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[128])
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--backbone", default="resnet50")
    p.add_argument("--pipeline-size", type=int, default=512)
    p.add_argument("--pipeline-slices", type=int, default=96)
    args = p.parse_args(argv)

    print(f"train step, {args.backbone}, batch {args.batch}, median of {args.steps} interleaved steps after 2 "
          "warm-up steps")
    hybrid_step = {}
    for size in args.sizes:
        times = step_times(size, args.batch, args.steps, args.backbone)
        hybrid_step[size] = times["hybrid"]
        for v, t in times.items():
            print(f"  {size:4d}²  {v:17s} {t:7.3f} s/step   {t / times['unet']:5.2f}× unet")

    rate = pipeline_rate(args.pipeline_size, args.pipeline_slices, args.batch, args.backbone)
    print(f"input pipeline at {args.pipeline_size}² (Zarr → resize → normalise → batch): {rate:8.1f} slices/s")
    if args.pipeline_size in hybrid_step:
        consume = args.batch / hybrid_step[args.pipeline_size]
        label = f"hybrid at {args.pipeline_size}²"
    else:
        size = max(hybrid_step)
        # a step's cost grows at least with the pixel count: scale the largest measured size up
        consume = args.batch / (hybrid_step[size] * (args.pipeline_size / size) ** 2)
        label = f"hybrid at {args.pipeline_size}², extrapolated from {size}² by pixel count"
    print(f"training consumes {consume:8.2f} slices/s ({label}); pipeline / consumption = {rate / consume:6.1f}×")


if __name__ == "__main__":
    main()
