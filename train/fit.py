"""``train_run``: fit a model on a segkit store into a run directory, resumable and (optionally) bit-exact.

Run directory::

    RUN/config.yaml         the resolved configuration (every switch explicit)
    RUN/provenance.json     the store's provenance steps + this run's step
    RUN/checkpoints/        tf.train.CheckpointManager: model, optimizer, epoch, step in epoch,
                            epoch running totals, best val Dice (RNG state = the dropout call
                            counters, which are model variables)
    RUN/best.weights.h5     weights of the epoch with the best val Dice
    RUN/history.csv         one row per epoch: train and val loss, Dice, IoU, precision, recall
    RUN/curves.png          those curves (the paper's Figure 5)
    RUN/logs/{train,val}/   TensorBoard event files

Exact resume: the batch order of an epoch is a pure function of (seed, epoch)
(:mod:`segkit.pipelines.tfdata`), dropout masks are a pure function of (layer
seed, call count) (:class:`segkit.train.blocks.SeededDropout`), and every counter
is in the checkpoint; with ``deterministic`` (TensorFlow op determinism) a run
killed at any point and resumed ends with the same bits as an uninterrupted one.

The run directory's own files (the check before a run, ``history.csv``, ``curves.png``,
``provenance.json``, reading a run's model back) are handled by :mod:`segkit.train.rundir`; this
module is the loop: strategy, model and optimizer, checkpoints, validation, TensorBoard, ``--max-time``.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from segkit.atomic import write_atomic
from segkit.errors import InputError, UsageError
from segkit.train.ema import WeightAverage
from segkit.train.rundir import _read_history, _write_history, _write_provenance, prepare_run_dir, write_curves

__all__ = ["TrainResult", "train_run", "KILL_ENV"]

log = logging.getLogger("segkit.train")

#: Fault injection for the crash-resume test: SIGKILL this process right after global step N.
KILL_ENV = "SEGKIT_TEST_KILL_AFTER_STEP"


@dataclass
class TrainResult:
    """What a call to :func:`train_run` did."""

    run_dir: Path
    epochs_done: int
    global_step: int
    best_val_dice: float
    stopped_early: bool = False
    resumed: bool = False
    history: list[dict[str, float]] = field(default_factory=list)

    def summary(self) -> str:
        """One line for people."""
        if self.stopped_early:
            return (f"stopped at the time limit after epoch {self.epochs_done}, step {self.global_step}; checkpoint "
                    f"saved. Continue with: segkit train STORE {self.run_dir} --resume")
        return (f"trained {self.epochs_done} epochs ({self.global_step} steps); best val Dice "
                f"{self.best_val_dice:.4f}; run in {self.run_dir}")


# ----------------------------------------------------------------------------------------- helpers
def _utc_now() -> str:
    from segkit.store.provenance import utc_now

    return utc_now()

def _scalar(tf: Any, tag: str, value: float) -> None:
    """A TensorBoard scalar, written the way ``tensorboard.summary.scalar`` does (no TensorBoard install needed)."""
    from tensorflow.core.framework import summary_pb2

    meta = summary_pb2.SummaryMetadata(plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name="scalars"))
    tf.summary.write(tag, tf.constant(value, tf.float32), metadata=meta)


def _make_strategy(tf: Any, name: str) -> Any:
    # Multi-worker first: it configures collective ops, which must happen before
    # anything (such as listing logical devices) initialises the TensorFlow context.
    if name == "multiworker" or (name == "auto" and os.environ.get("TF_CONFIG")):
        return tf.distribute.MultiWorkerMirroredStrategy()
    gpus = tf.config.list_logical_devices("GPU")
    if name == "mirrored" or (name == "auto" and len(gpus) > 1):
        if gpus:
            return tf.distribute.MirroredStrategy()
        cpus = [d.name for d in tf.config.list_logical_devices("CPU")]
        return tf.distribute.MirroredStrategy(devices=cpus)
    return tf.distribute.get_strategy()


def _is_chief(strategy: Any) -> bool:
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not getattr(resolver, "task_type", None):
        return True
    return resolver.task_type in ("chief", None) or (resolver.task_type == "worker" and resolver.task_id == 0)


def learning_rate_schedule(keras: Any, tcfg: dict[str, Any], steps_per_epoch: int) -> Any:
    """Adam's learning rate: constant, or linear warm-up then cosine decay to 0, over the global step.

    The schedule is a function of the optimizer's step counter, which every
    checkpoint holds, so a resumed run continues on the same curve.
    """
    peak = float(tcfg["learning_rate"])
    warmup = int(round(float(tcfg.get("warmup_epochs") or 0) * steps_per_epoch))
    total = int(tcfg["epochs"]) * steps_per_epoch
    if tcfg.get("schedule", "constant") == "cosine":
        return keras.optimizers.schedules.CosineDecay(peak / 100 if warmup else peak, max(1, total - warmup),
                                                      alpha=0.0, warmup_target=peak if warmup else None,
                                                      warmup_steps=warmup)
    if warmup:
        return keras.optimizers.schedules.CosineDecay(peak / 100, 1, alpha=1.0, warmup_target=peak,
                                                      warmup_steps=warmup)
    return peak


# ----------------------------------------------------------------------------------------- training
def train_run(store: str | Path, run_dir: str | Path, config: dict[str, Any] | None = None, *,
              preset: str = "cpu-small", config_file: str | Path | None = None,
              overrides: dict[str, Any] | None = None, resume: bool = False, progress: bool = True,
              after_step: Callable[[int], None] | None = None) -> TrainResult:
    """Train (or continue training) the configured model on ``store`` into ``run_dir``.

    Parameters
    ----------
    store:
        A segkit slice store; batches come only from its train split, validation from its val split.
    run_dir:
        Output directory (see the module docstring).
    config:
        A resolved config (:func:`segkit.train.config.load_config`); if absent it is
        made from ``preset``, ``config_file`` and ``overrides``.  Ignored with ``resume``.
    preset, config_file, overrides:
        See :func:`segkit.train.config.load_config`; with ``resume`` only
        ``train.epochs`` and ``train.max_time`` may be overridden.
    resume:
        Continue the run in ``run_dir`` from its latest checkpoint.
    progress:
        Show a progress bar per epoch on stderr.
    after_step:
        Called with the global step after each step (and its checkpoint).

    Raises
    ------
    InputError, UsageError, OutputExistsError
        Bad store, config, encoder weights or run directory — all checked before anything is written.
    """
    from tqdm import tqdm

    from segkit.pipelines.training_store import open_training_store, with_split
    from segkit.pipelines.tfdata import RowCache, eval_dataset, spec_from_config, steps_per_epoch, train_dataset
    from segkit.train import losses
    from segkit.train.backend import load
    from segkit.train.config import dump, load_config
    from segkit.train.model import build_model

    started, t0 = _utc_now(), time.monotonic()
    run_dir = Path(run_dir)
    if config is None and not resume:
        config = load_config(preset, Path(config_file) if config_file else None, overrides)
    config = prepare_run_dir(run_dir, config, resume, overrides)
    tcfg, dcfg = config["train"], config["data"]
    slices = open_training_store(store)
    if dcfg.get("split"):
        slices = with_split(slices, dcfg["split"])
    n_steps = steps_per_epoch(slices, tcfg["batch_size"], tcfg["steps_per_epoch"])
    if slices.indices("val").size == 0:
        raise InputError(str(store), "the val split is empty; training needs validation patients "
                                     "(convert with --val-patients 1 or more).")
    if resume and not (run_dir / "checkpoints" / "checkpoint").is_file():
        log.info("%s has no checkpoint yet: starting the run from the beginning with its config.yaml", run_dir)

    B = load()
    tf, keras = B.tf, B.keras
    seed = int(tcfg["seed"])
    if tcfg["deterministic"]:
        tf.config.experimental.enable_op_determinism()
    keras.utils.set_random_seed(seed)
    strategy = _make_strategy(tf, tcfg["strategy"])
    replicas = strategy.num_replicas_in_sync
    global_batch = int(tcfg["batch_size"])
    if global_batch % replicas:
        raise UsageError("--batch-size", f"{global_batch} does not split over {replicas} replicas; use a multiple "
                                         f"of {replicas}.")
    chief = _is_chief(strategy)

    with strategy.scope():
        model = build_model(config)  # checks encoder weights before the run dir is touched
        optimizer = keras.optimizers.Adam(learning_rate=learning_rate_schedule(keras, tcfg, n_steps))
        optimizer.build(model.trainable_variables)
        epoch_var = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
        step_var = tf.Variable(0, dtype=tf.int64, trainable=False, name="step_in_epoch")
        best_var = tf.Variable(-1.0, dtype=tf.float64, trainable=False, name="best_val_dice")
        totals = tf.Variable(tf.zeros(5, tf.float64), trainable=False, name="epoch_totals")  # loss, n, tp, fp, fn
        ema = WeightAverage(tf, model, float(tcfg["ema"])) if tcfg.get("ema") else None

    # Everything is validated: from here on the run directory is written.
    run_dir.mkdir(parents=True, exist_ok=True)
    ckpt_dir = run_dir / "checkpoints"
    if not chief:  # MultiWorkerMirroredStrategy: every worker saves, only the chief's copy is kept
        ckpt_dir = run_dir / "workers" / f"{strategy.cluster_resolver.task_type}-{strategy.cluster_resolver.task_id}"
    extra = {"ema": ema.trackable()} if ema is not None else {}
    checkpoint = tf.train.Checkpoint(model=model, optimizer=optimizer, epoch=epoch_var, step_in_epoch=step_var,
                                     best_val_dice=best_var, epoch_totals=totals, **extra)
    manager = tf.train.CheckpointManager(checkpoint, str(ckpt_dir), max_to_keep=int(tcfg["max_to_keep"]))
    if manager.latest_checkpoint and resume:
        checkpoint.restore(manager.latest_checkpoint).assert_existing_objects_matched()
        log.info("resumed from %s (epoch %d, step %d of %d)", Path(manager.latest_checkpoint).name,
                 int(epoch_var.numpy()) + 1, int(step_var.numpy()), n_steps)
    elif chief:
        write_atomic(run_dir / "config.yaml", dump(config))

    spec = spec_from_config(config, global_batch)
    lam, eps, dice_mode = float(tcfg["lambda_dice"]), float(tcfg["dice_epsilon"]), str(tcfg.get("dice", "slice"))

    def per_replica_train(x: Any, y: Any) -> tuple[Any, Any]:
        with tf.GradientTape() as tape:
            p = model(x, training=True)
            per_example = losses.bce_dice_loss(y, p, lam, eps, dice_mode)
            loss = tf.reduce_sum(per_example) / global_batch
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        stats = tf.concat([[tf.reduce_sum(tf.cast(per_example, tf.float64)),
                            tf.cast(tf.shape(per_example)[0], tf.float64)], losses.confusion_counts(y, p)], 0)
        return stats

    def per_replica_eval(x: Any, y: Any) -> Any:
        p = model(x, training=False)
        per_example = losses.bce_dice_loss(y, p, lam, eps, dice_mode)
        return tf.concat([[tf.reduce_sum(tf.cast(per_example, tf.float64)),
                           tf.cast(tf.shape(per_example)[0], tf.float64)], losses.confusion_counts(y, p)], 0)

    @tf.function
    def train_step(batch: Any) -> Any:
        stats = strategy.reduce(tf.distribute.ReduceOp.SUM, strategy.run(per_replica_train, args=batch), axis=None)
        totals.assign_add(stats)
        if ema is not None:
            ema.update()
        return stats

    @tf.function
    def eval_step(batch: Any) -> Any:
        return strategy.reduce(tf.distribute.ReduceOp.SUM, strategy.run(per_replica_eval, args=batch), axis=None)

    def epoch_scores(t: Any) -> dict[str, float]:
        loss_sum, n, tp, fp, fn = (float(v) for v in t)
        return {"loss": loss_sum / max(n, 1.0), **losses.scores(tp, fp, fn)}

    logs = run_dir / "logs"
    writers = {k: tf.summary.create_file_writer(str(logs / k)) for k in ("train", "val")} if chief else {}
    history_path = run_dir / "history.csv"
    history = [r for r in _read_history(history_path) if r["epoch"] <= int(epoch_var.numpy())]
    epochs = int(tcfg["epochs"])
    max_time = tcfg.get("max_time")
    kill_after = int(os.environ[KILL_ENV]) if os.environ.get(KILL_ENV) else None
    cache = RowCache()  # one store, one run: epochs after the first read no chunk
    val_ds = strategy.experimental_distribute_dataset(eval_dataset(slices, spec, "val", cache=cache))
    stopped = False
    epoch_t0 = curves_t = time.monotonic()

    while int(epoch_var.numpy()) < epochs and not stopped:
        epoch = int(epoch_var.numpy())
        start = int(step_var.numpy())
        ds = strategy.experimental_distribute_dataset(
            train_dataset(slices, spec, epoch=epoch, start_step=start, steps=n_steps, cache=cache))
        bar = tqdm(total=n_steps, initial=start, desc=f"epoch {epoch + 1}/{epochs}", unit="step",
                   file=sys.stderr, disable=not progress, dynamic_ncols=True, leave=True)
        for batch in ds:
            stats = train_step(batch)
            step_var.assign_add(1)
            gstep = int(optimizer.iterations.numpy())
            if chief:
                with writers["train"].as_default(step=gstep):
                    _scalar(tf, "step_loss", float(stats[0] / stats[1]))
            bar.update(1)
            bar.set_postfix(loss=f"{float(totals[0] / totals[1]):.4f}")
            if tcfg["checkpoint_every"] and gstep % int(tcfg["checkpoint_every"]) == 0:
                manager.save(checkpoint_number=gstep)
            if after_step is not None:
                after_step(gstep)
            if kill_after is not None and gstep == kill_after:
                os.kill(os.getpid(), signal.SIGKILL)
            if max_time is not None and time.monotonic() - t0 >= max_time and int(step_var.numpy()) < n_steps:
                manager.save(checkpoint_number=gstep)
                stopped = True
                break
        bar.close()
        if stopped:
            break
        # ---- end of epoch: validate, log, keep the best weights, checkpoint
        # Validation (and the best weights) use the weight average when there is one.
        if ema is not None:
            ema.swap()
        val_totals = tf.zeros(5, tf.float64)
        for batch in val_ds:
            val_totals += eval_step(batch)
        train_s, val_s = epoch_scores(totals.numpy()), epoch_scores(val_totals.numpy())
        row = {"epoch": epoch + 1, "step": int(optimizer.iterations.numpy()), **train_s,
               **{f"val_{k}": v for k, v in val_s.items()}, "seconds": time.monotonic() - epoch_t0}
        history = [r for r in history if r["epoch"] < epoch + 1] + [row]
        if chief:
            for split, s in (("train", train_s), ("val", val_s)):
                with writers[split].as_default(step=epoch + 1):
                    for k, v in s.items():
                        _scalar(tf, k, v)
                writers[split].flush()
            _write_history(history_path, history)
            # Drawing the curves costs ~1 s (matplotlib): at most every 30 s while training, and when the run stops.
            if time.monotonic() - curves_t >= 30.0:
                write_curves(history, run_dir / "curves.png")
                curves_t = time.monotonic()
        if val_s["dice"] > float(best_var.numpy()):
            # Every worker saves: under MultiWorkerMirroredStrategy reading the weights is a
            # collective, so a chief saving alone would hang or abort; only the chief's file is kept.
            ckpt_dir.mkdir(parents=True, exist_ok=True)
            tmp = (run_dir if chief else ckpt_dir) / ".best.tmp.weights.h5"
            model.save_weights(str(tmp))
            if chief:
                os.replace(tmp, run_dir / "best.weights.h5")
            else:
                tmp.unlink()
            best_var.assign(val_s["dice"])
        if ema is not None:
            ema.swap()
        log.info("epoch %d/%d: loss %.4f dice %.4f | val loss %.4f dice %.4f iou %.4f", epoch + 1, epochs,
                 train_s["loss"], train_s["dice"], val_s["loss"], val_s["dice"], val_s["iou"])
        epoch_var.assign_add(1)
        step_var.assign(0)
        totals.assign(tf.zeros(5, tf.float64))
        manager.save(checkpoint_number=int(optimizer.iterations.numpy()))
        epoch_t0 = time.monotonic()

    if chief and history:
        write_curves(history, run_dir / "curves.png")
    result = TrainResult(run_dir=run_dir, epochs_done=int(epoch_var.numpy()), global_step=int(optimizer.iterations.numpy()),
                         best_val_dice=float(best_var.numpy()), stopped_early=stopped, resumed=resume, history=history)
    if chief:
        _write_provenance(run_dir, slices, config, started, seed, result)
    return result
