"""tf.data input pipeline over a segkit slice store.

Training batches come only from the store's ``train`` split (original and
augmented slices); validation reads the ``val`` split in order; ``test`` is never
read here.  Per epoch the slice order is a permutation drawn from
``numpy.random.default_rng([seed, epoch])`` — a pure function of the seed and
the epoch — so the data position a run must remember is just ``(epoch, step)``:
a resumed run rebuilds exactly the same order and starts at the saved step (no
reshuffling, no replay of the consumed part).

Per slice: parallel reads from Zarr (``num_parallel_calls``, order kept), resize
to the model size (image bilinear, mask nearest), the encoder's three channels
(``input_mode`` ``2d``: the grey slice repeated; ``2.5d``: the slice between its
two neighbours in the same series, :mod:`segkit.pipelines.neighbours`), training
samples only: the seeded intensity augmentation of :mod:`segkit.pipelines.contrast`
(``contrast``), scaling to the encoder's ImageNet input convention (0–255, then
segmentation_models' ``get_preprocessing(backbone)``), batching, prefetch.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from segkit.errors import InputError
from segkit.pipelines.contrast import HOLE, hole_label
from segkit.pipelines.training_store import open_training_store
from segkit.store.reader import Store

__all__ = ["PipelineSpec", "RowCache", "epoch_order", "steps_per_epoch", "train_dataset", "eval_dataset",
           "spec_from_config"]


class RowCache:
    """The rows a training run has read (decoded, 2.5D-stacked), kept in memory up to ``max_bytes``.

    A row's input is a pure function of the store and the row, so a cached row is
    the same bytes as a fresh read: with the cache, every epoch after the first
    reads no chunk and replays no neighbour transform.  Rows beyond the budget
    are read each time (a cohort at 512² does not fit; the demo's does, many times).
    """

    def __init__(self, max_bytes: int = 1 << 30) -> None:
        self.max_bytes = int(max_bytes)
        self.bytes = 0
        self.rows: dict[tuple[Any, ...], tuple[np.ndarray, np.ndarray]] = {}

    def get(self, key: tuple[Any, ...], read: Any) -> tuple[np.ndarray, np.ndarray]:
        """The cached value of ``key``, or ``read()`` (kept while the budget lasts)."""
        hit = self.rows.get(key)
        if hit is not None:
            return hit
        value = read()
        size = sum(a.nbytes for a in value)
        if self.bytes + size <= self.max_bytes:
            self.rows[key] = value
            self.bytes += size
        return value


@dataclass(frozen=True)
class PipelineSpec:
    """What the model needs from the pipeline."""

    input_size: int
    backbone: str
    batch_size: int
    seed: int = 0
    shuffle: bool = True
    read_parallelism: int = 0
    prefetch: int = 0
    input_mode: str = "2d"
    contrast: dict[str, Any] | None = None
    dihedral: bool = False


def spec_from_config(config: dict[str, Any], batch_size: int | None = None) -> PipelineSpec:
    """The pipeline a resolved training config asks for."""
    from segkit.pipelines.contrast import contrast_settings

    m, t, d = config["model"], config["train"], config["data"]
    return PipelineSpec(input_size=int(m["input_size"]), backbone=str(m["backbone"]),
                        batch_size=int(batch_size or t["batch_size"]), seed=int(t["seed"]),
                        shuffle=bool(d["shuffle"]), read_parallelism=int(d["read_parallelism"]),
                        prefetch=int(d["prefetch"]), input_mode=str(m.get("input_mode", "2d")),
                        contrast=contrast_settings(d.get("contrast")), dihedral=bool(d.get("dihedral", False)))


def epoch_order(store: Store, seed: int, epoch: int, shuffle: bool = True) -> np.ndarray:
    """Train-split slice indices in the order epoch ``epoch`` visits them."""
    idx = store.indices("train")
    if not shuffle:
        return idx
    return np.random.default_rng([int(seed), int(epoch)]).permutation(idx)


def steps_per_epoch(store: Store, batch_size: int, cap: int | None = None) -> int:
    """Full batches of the train split per epoch (the last partial batch is dropped), optionally capped.

    Raises
    ------
    InputError
        If the train split holds fewer slices than one batch.
    """
    n = store.indices("train").size
    if n < batch_size:
        raise InputError(str(store.path), f"the train split has {n} slices, fewer than one batch of {batch_size}; "
                                          "lower --batch-size or add training data.")
    steps = n // batch_size
    return min(steps, cap) if cap else steps


def _preprocess_fn(spec: PipelineSpec, augment: Any = None, geometry: Any = None, filled: Any = None) -> Any:
    """``prepare(image H×W or H×W×3, mask H×W[, epoch, position])`` → model input and target.

    ``filled(epoch, position)`` (:func:`segkit.pipelines.contrast.make_core_fill`) says when a sample's
    holes were filled with tumour and so are target."""
    from segkit.train.backend import load

    B = load()
    tf, sm = B.tf, B.sm
    encoder_preprocess = sm.get_preprocessing(spec.backbone)
    size = int(spec.input_size)

    def prepare(image: Any, mask: Any, epoch: Any = None, position: Any = None) -> tuple[Any, Any]:
        # mask: 1 target, 0 not; HOLE (only read with hole augmentation) marks a hole of the target
        image = tf.cast(image, tf.float32)
        if image.shape.rank == 2:
            image = image[..., None]
        mask = tf.ensure_shape(mask, [None, None])[..., None]
        if image.shape[0] != size or image.shape[1] != size:
            image = tf.image.resize(image, [size, size], method="bilinear")
            mask = tf.image.resize(mask, [size, size], method="nearest")
        if geometry is not None and epoch is not None:
            image, mask = geometry(image, mask, epoch, position)
        if augment is not None and epoch is not None:
            image = augment(image, epoch, position, tf.equal(mask, HOLE), tf.equal(mask, 1))
        if image.shape[-1] == 1:
            image = tf.image.grayscale_to_rgb(image)
        image = tf.cast(encoder_preprocess(image * 255.0), tf.float32)
        target = tf.not_equal(mask, HOLE)
        if filled is not None and epoch is not None:
            target = target | filled(epoch, position)
        return image, tf.cast((mask > 0) & target, tf.float32)

    return prepare


def _reader_dataset(store: Store, order: np.ndarray, spec: PipelineSpec, with_index: bool,
                    epoch: int | None = None, first_position: int = 0, cache: RowCache | None = None) -> Any:
    from segkit.pipelines.contrast import make_contrast, make_core_fill, make_dihedral
    from segkit.train.backend import load

    tf = load().tf
    h, w = (int(d) for d in store.image.shape[1:])
    parallel = spec.read_parallelism or tf.data.AUTOTUNE
    stacked = spec.input_mode == "2.5d"
    if stacked:
        from segkit.pipelines.neighbours import neighbour_rows, read_stack

        neighbours = neighbour_rows(store.table)

    holes = bool(spec.contrast and (spec.contrast.get("hole", 0.0) > 0 or spec.contrast.get("fill", 0.0) > 0)
                 and epoch is not None)

    def fresh(i: int) -> tuple[np.ndarray, np.ndarray]:
        if stacked:
            image, mask = read_stack(store, i, neighbours)
        else:
            image, mask = store.read(i)
        image, mask = np.asarray(image, np.float32), np.asarray(mask, np.uint8)
        return image, (hole_label(mask) if holes else mask)

    def read(i: Any) -> tuple[np.ndarray, np.ndarray]:
        if cache is None:
            return fresh(int(i))
        return cache.get((spec.input_mode, holes, int(i)), lambda: fresh(int(i)))

    def load_slice(i: Any, position: Any) -> Any:
        image, mask = tf.numpy_function(read, [i], [tf.float32, tf.uint8], stateful=False)
        image.set_shape([h, w, 3] if stacked else [h, w])
        mask.set_shape([h, w])
        return (i, position, image, mask)

    augment = make_contrast(spec.contrast, spec.seed) if (spec.contrast and epoch is not None) else None
    geometry = make_dihedral(spec.seed) if (spec.dihedral and epoch is not None) else None
    filled = (make_core_fill(spec.contrast, spec.seed)
              if (holes and spec.contrast and spec.contrast.get("fill", 0.0) > 0) else None)
    prepare = _preprocess_fn(spec, augment, geometry, filled)

    def finish(i: Any, position: Any, image: Any, mask: Any) -> Any:
        if augment is not None or geometry is not None:
            image, mask = prepare(image, mask, epoch, position)
        else:
            image, mask = prepare(image, mask)
        return (image, mask, i) if with_index else (image, mask)

    positions = np.arange(first_position, first_position + len(order), dtype=np.int64)
    ds = tf.data.Dataset.from_tensor_slices((np.asarray(order, dtype=np.int64), positions))
    ds = ds.map(load_slice, num_parallel_calls=parallel, deterministic=True)
    return ds.map(finish, num_parallel_calls=parallel, deterministic=True)


def train_dataset(store: Store | str | Path, spec: PipelineSpec, epoch: int, start_step: int = 0,
                  steps: int | None = None, with_index: bool = False, cache: RowCache | None = None) -> Any:
    """Batches of epoch ``epoch`` from ``start_step`` on: ``(image B×S×S×3, mask B×S×S×1)``.

    Only train-split slices are read.  ``steps`` caps the batches of the epoch
    (default: every full batch).  ``with_index`` adds each slice's store index
    as a third element (tests, audits).  ``cache`` keeps the rows read for the
    next epochs (one :class:`RowCache` per store and run).
    """
    from segkit.train.backend import load

    tf = load().tf
    store = store if isinstance(store, Store) else open_training_store(store)
    total = steps_per_epoch(store, spec.batch_size, steps)
    order = epoch_order(store, spec.seed, epoch, spec.shuffle)[: total * spec.batch_size]
    first = int(start_step) * spec.batch_size
    ds = _reader_dataset(store, order[first:], spec, with_index, epoch=epoch, first_position=first, cache=cache)
    ds = ds.batch(spec.batch_size, drop_remainder=True)
    return ds.prefetch(spec.prefetch or tf.data.AUTOTUNE)


def eval_dataset(store: Store | str | Path, spec: PipelineSpec, split: str = "val",
                 with_index: bool = False, cache: RowCache | None = None) -> Any:
    """The ``split`` slices in store order, batched (last batch may be smaller).

    Raises
    ------
    InputError
        If the split is empty.
    """
    from segkit.train.backend import load

    tf = load().tf
    store = store if isinstance(store, Store) else open_training_store(store)
    order = store.indices(split)
    if order.size == 0:
        raise InputError(str(store.path), f"the {split} split is empty; convert with at least one {split} patient.")
    ds = _reader_dataset(store, order, spec, with_index, cache=cache).batch(spec.batch_size)
    return ds.prefetch(spec.prefetch or tf.data.AUTOTUNE)
