"""Augmentation speed and memory (run by hand: ``python -m benchmarks.augment``).

Builds a synthetic 512×512 store (segkit.synth phantoms, normalised like
``segkit convert``: 0.5–99.5 percentile clip, scaled to [0, 1]), then grows its
training split to 6,080 images:

* **segkit** — :func:`segkit.augment.run.augment_store` with ``--workers 1`` and ``2``;
* **albumentations** — the same pipeline (same parents, same store writer, same
  read pattern) with the pixel work done by an albumentations ``Compose`` of
  the same ops and ranges (flip, ``Rotate``, ``GaussianBlur``, ``RandomGamma``
  + ``RandomBrightnessContrast``), one process;
* **pixel work only** — both op stacks on in-memory slices, no I/O.

Each end-to-end run is a fresh process, so its peak RSS (workers included) is
its own.  Prints images/s and the ratios against albumentations measured in the
same run.  albumentations is not a segkit dependency: ``pip install albumentations``.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import resource
import shutil
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np


# --------------------------------------------------------------------------- input
def make_source(path: Path, patients: int, slices: int, size: int, seed: int = 0) -> Path:
    """A convert-like store of synth phantoms: patients-2 train, 1 val, 1 test."""
    from segkit.store.provenance import provenance_step
    from segkit.store.writer import StoreWriter
    from segkit.synth.phantom import make_phantom

    step = provenance_step("convert", {"benchmark": True}, input_digest="sha256:" + "0" * 64, input_files=0, seed=seed)
    with StoreWriter(path, (size, size), provenance=[step]) as writer:
        for p in range(patients):
            rng = np.random.default_rng([seed, p])
            phantom = make_phantom(rng, (slices, size, size), "T1" if p % 3 != 2 else "T2", with_core=p % 2 == 0)
            volume = phantom.image.astype(np.float32)
            low, high = np.percentile(volume, [0.5, 99.5])
            volume = np.clip((volume - low) / max(high - low, 1e-6), 0, 1).astype(np.float32)
            split = "train" if p < patients - 2 else ("val" if p == patients - 2 else "test")
            series = f"S{p:02d}"
            writer.append(volume, phantom.tumour, patient=f"P{p:02d}", series=series, split=split,
                          index=np.arange(slices), position=np.arange(slices) * 2.0)
            writer.attrs.setdefault("spacing", {})[series] = [2.0, 0.5, 0.5]
    return path


# --------------------------------------------------------------------------- albumentations
def albumentations_compose(seed: int):
    """The segkit default ops and ranges, expressed in albumentations."""
    import albumentations as A
    import cv2

    return A.Compose([
        A.OneOf([A.HorizontalFlip(p=1.0), A.VerticalFlip(p=1.0)], p=0.5),
        A.Rotate(limit=25, interpolation=cv2.INTER_LINEAR, mask_interpolation=cv2.INTER_NEAREST,
                 border_mode=cv2.BORDER_CONSTANT, fill=0, fill_mask=0, p=0.5),
        A.GaussianBlur(sigma_limit=(0.5, 1.5), blur_limit=0, p=0.5),
        A.Sequential([A.RandomGamma(gamma_limit=(70, 150), p=1.0),
                      A.RandomBrightnessContrast(brightness_limit=0.1, contrast_limit=0.1, p=1.0)], p=0.5),
    ], seed=seed)


def augment_with_albumentations(src: Path, dst: Path, target: int, seed: int) -> int:
    """segkit's pipeline with albumentations doing the pixel work (same parents, reads and writer)."""
    import cv2

    from segkit.augment.run import BLOCK
    from segkit.augment.plan import draw_plan, make_ops
    from segkit.store.provenance import provenance_step
    from segkit.store.reader import open_store
    from segkit.store.writer import StoreWriter

    cv2.setNumThreads(1)
    store = open_store(src)
    table = store.table
    plan = draw_plan(store.indices("train"), target, make_ops(), seed)
    compose = albumentations_compose(seed)
    step = provenance_step("augment-albumentations", {"target": target}, seed=seed)
    attrs = {"spacing": store.attrs["spacing"]}
    with StoreWriter(dst, tuple(store.attrs["size"]), provenance=[*store.provenance, step], attrs=attrs) as writer:
        for start in range(0, len(store), BLOCK):
            writer.copy_from(store, np.arange(start, min(start + BLOCK, len(store))))
        for start in range(0, len(plan), BLOCK):
            samples = plan[start:start + BLOCK]
            cache: dict[int, Any] = {}
            images, masks = [], []
            for s in samples:
                if s.parent not in cache:
                    cache[s.parent] = store.read(s.parent)
                out = compose(image=cache[s.parent][0], mask=cache[s.parent][1])
                images.append(out["image"])
                masks.append(out["mask"])
            parents = np.array([s.parent for s in samples])
            writer.append(np.stack(images), np.stack(masks), patient=table["patient"][parents],
                          series=table["series"][parents], index=table["index"][parents],
                          position=table["position"][parents], split="train", source="augmented",
                          parent=parents, transform="albumentations")
    return len(plan)


# --------------------------------------------------------------------------- one measured run
def _status_kb(pid: int | str, key: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def _descendants(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        for task in Path(f"/proc/{p}/task").glob("*"):
            try:
                kids = [int(k) for k in (task / "children").read_text().split()]
            except OSError:
                kids = []
            out += kids
            todo += kids
    return out


class TreePeak:
    """Peak RSS of this process (exact, VmHWM) and of it + its children together (sampled every 50 ms).

    ``ru_maxrss`` is no use here: Linux carries the parent's high-water mark
    across fork + exec into a spawned process.
    """

    def __init__(self) -> None:
        import threading

        self.tree_kb = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        me = os.getpid()
        while not self._stop.wait(0.05):
            total = _status_kb(me, "VmRSS") + sum(_status_kb(c, "VmRSS") for c in _descendants(me))
            self.tree_kb = max(self.tree_kb, total)

    def stop(self) -> tuple[float, float]:
        """Return (own peak MB, tree peak MB)."""
        self._stop.set()
        self._thread.join()
        own = _status_kb("self", "VmHWM") / 1024
        return own, max(self.tree_kb / 1024, own)


def _cpu_seconds() -> float:
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def _run(tool: str, src: str, dst: str, target: int, seed: int, workers: int) -> dict[str, Any]:
    peak = TreePeak()
    cpu0 = _cpu_seconds()
    if tool == "segkit":
        from segkit.augment.run import augment_store

        t0 = time.perf_counter()
        result = augment_store(src, dst, target=target, seed=seed, workers=workers)
        seconds = time.perf_counter() - t0
        from segkit.store.reader import open_store

        augmented, digest = result.augmented, open_store(dst).digest()
    else:
        import albumentations  # noqa: F401 - imported before the clock starts, as segkit is

        t0 = time.perf_counter()
        augmented = augment_with_albumentations(Path(src), Path(dst), target, seed)
        seconds = time.perf_counter() - t0
        digest = None
    cpu = _cpu_seconds() - cpu0  # workers included once they are joined
    own, tree = peak.stop()
    size = sum(f.stat().st_size for f in Path(dst).rglob("*") if f.is_file())
    return {"tool": tool, "workers": workers, "seconds": seconds, "augmented": augmented,
            "cpu_seconds": cpu, "peak_mb": own, "tree_peak_mb": tree, "disk_mb": size / 2**20, "digest": digest}


def measure(tool: str, src: Path, dst: Path, target: int, seed: int, workers: int = 1) -> dict[str, Any]:
    """Run one configuration in a fresh process (its own peak RSS) and delete its output."""
    context = multiprocessing.get_context("spawn")
    try:
        with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
            return pool.submit(_run, tool, str(src), str(dst), target, seed, workers).result()
    finally:
        shutil.rmtree(dst, ignore_errors=True)


def pixel_only(src: Path, seed: int, n: int = 1000) -> dict[str, float]:
    """Images/s of the two op stacks alone, on 32 in-memory parents (no I/O), single thread."""
    import cv2

    from segkit.augment.ops import apply_ops
    from segkit.augment.plan import draw_plan, make_ops
    from segkit.store.reader import open_store

    cv2.setNumThreads(1)
    store = open_store(src)
    rows = store.indices("train")[:32]
    slices = {int(r): store.read(int(r)) for r in rows}
    plan = draw_plan(rows, len(rows) + n, make_ops(), seed)
    steps = [[dict(s) for s in p.steps] for p in plan]
    compose = albumentations_compose(seed)
    timings = {}
    for name, fn in (
        ("segkit", lambda p, st: apply_ops(*slices[p.parent], st)),
        ("albumentations", lambda p, st: compose(image=slices[p.parent][0], mask=slices[p.parent][1])),
    ):
        t0 = time.perf_counter()
        for p, st in zip(plan, steps):
            fn(p, st)
        timings[name] = n / (time.perf_counter() - t0)
    return timings


def phase_table(src: Path, seed: int, n: int = 1024) -> list[tuple[str, float]]:
    """CPU ms per augmented image of each phase of a worker's path, one thread, ``n`` planned images.

    The same calls as :func:`segkit.augment.worker.render_and_write` (parents through the
    per-process cache, fresh at the start, so first-round decodes are counted;
    render into reused block arrays; Blosc per chunk; shard file write; SHA-256
    of the shard bytes), each timed with ``time.process_time``.
    """
    import hashlib

    import cv2

    import segkit.augment.worker as worker
    from segkit.augment.io import _codec_of, _layout, _nonzero_rows
    from segkit.augment.run import BLOCK
    from segkit.augment.plan import draw_plan, make_ops, parse_transform
    from segkit.augment.render import render
    from segkit.store.reader import open_store

    cv2.setNumThreads(1)
    store = open_store(src)
    plan = draw_plan(store.indices("train"), len(store.indices("train")) + n, make_ops(), seed)
    worker._PARENTS = worker._ParentCache(worker.PARENT_CACHE_BYTES)
    codecs = {name: _codec_of(_layout(str(src), name)) for name in ("image", "mask")}
    clock, spent = time.process_time, dict.fromkeys(
        ["read + decode parents", "render (flip, rotate, blur, contrast)", "zero tests + has_tumour",
         "Blosc zstd-1 bitshuffle: image", "Blosc zstd-1 bitshuffle: mask", "shard file write", "SHA-256 of shard bytes"],
        0.0)
    keys = list(spent)
    with tempfile.TemporaryDirectory(prefix="segkit-phases-") as tmp:
        for start in range(0, n, BLOCK):
            samples = plan[start:start + BLOCK]
            t = clock()
            parents = worker._read_parents(str(src), sorted({s.parent for s in samples}))
            spent[keys[0]] += clock() - t
            h, w = next(iter(parents.values()))[0].shape
            images = worker._ARENA.get("images0", (len(samples), h, w), np.float32)
            masks = worker._ARENA.get("masks0", (len(samples), h, w), np.uint8)
            scratch, mask_scratch = np.empty((h, w), np.float32), np.empty((2, h, w), np.float32)
            t = clock()
            for i, s in enumerate(samples):
                render(*parents[s.parent], parse_transform(s.transform), images[i], masks[i], scratch, mask_scratch)
            spent[keys[1]] += clock() - t
            t = clock()
            stored = {"image": _nonzero_rows(images), "mask": _nonzero_rows(masks)}
            spent[keys[2]] += clock() - t
            for key, name, block in ((keys[3], "image", images), (keys[4], "mask", masks)):
                t = clock()
                parts = [codecs[name].encode(chunk) for chunk, keep in zip(block, stored[name]) if keep]
                spent[key] += clock() - t
                t = clock()
                with open(Path(tmp) / f"{name}-{start}", "wb") as fh:
                    fh.writelines(parts)
                spent[keys[5]] += clock() - t
                t = clock()
                digest = hashlib.sha256()
                for part in parts:
                    digest.update(part)
                spent[keys[6]] += clock() - t
    return [(k, 1e3 * v / n) for k, v in spent.items()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=6)
    parser.add_argument("--slices", type=int, default=40, help="per patient")
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--target", type=int, default=6080)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--workdir", type=Path, default=None, help="default: a temporary directory")
    parser.add_argument("--source", type=Path, default=None,
                        help="an existing source store to use (e.g. one a previous run kept) instead of building one")
    parser.add_argument("--keep-source", type=Path, default=None, help="copy the built source store here")
    parser.add_argument("--runs", default="w1,albu,w2",
                        help="end-to-end runs, comma-separated: w1, albu, w2 (default all; each is a fresh process)")
    parser.add_argument("--phases", action="store_true", help="print the CPU per image of each phase of a worker")
    parser.add_argument("--no-pixel", action="store_true", help="skip the in-memory pixel-work comparison")
    args = parser.parse_args()

    import albumentations
    import cv2

    root = Path(tempfile.mkdtemp(prefix="segkit-bench-augment-", dir=args.workdir))
    try:
        t0 = time.perf_counter()
        if args.source is not None:
            src = args.source
            from segkit.store.reader import open_store

            train = len(open_store(src).indices("train"))
            print(f"source: {src} ({train} train originals); target {args.target} → {args.target - train} augmented")
        else:
            src = make_source(root / "source.zarr", args.patients, args.slices, args.size)
            train = (args.patients - 2) * args.slices
            print(f"source: {args.patients} patients × {args.slices} slices of {args.size}² ({train} train originals), "
                  f"built in {time.perf_counter() - t0:.0f} s; target {args.target} → {args.target - train} augmented")
            if args.keep_source is not None:
                shutil.copytree(src, args.keep_source)
        print(f"opencv {cv2.__version__}, albumentations {albumentations.__version__}, "
              f"{len(os.sched_getaffinity(0))} cores; load average {_load()}")

        if args.phases:
            print("\nCPU per augmented image by phase (one thread, process_time):")
            table = phase_table(src, args.seed)
            for name, ms in table:
                print(f"  {name:<40}{ms:7.2f} ms")
            print(f"  {'total':<40}{sum(ms for _, ms in table):7.2f} ms")

        if not args.no_pixel:
            px = pixel_only(src, args.seed)
            print(f"\npixel work only (in memory, 1 thread): segkit {px['segkit']:.0f} img/s, "
                  f"albumentations {px['albumentations']:.0f} img/s, ratio {px['segkit'] / px['albumentations']:.2f}")

        # segkit first, so a load that grows during the run does not favour segkit.
        wanted = [r.strip() for r in args.runs.split(",") if r.strip()]
        configs = {"w1": ("segkit", 1), "albu": ("albumentations", 1), "w2": ("segkit", 2)}
        runs = [measure(configs[r][0], src, root / f"{r}.zarr", args.target, args.seed, workers=configs[r][1])
                for r in wanted]
        if not runs:
            return
        rates = {r: run["augmented"] / run["seconds"] for r, run in zip(wanted, runs)}
        print(f"\nend to end (read parents, augment, compress, write a store with {args.target} training images):")
        print(f"{'tool':<16}{'workers':>8}{'seconds':>9}{'aug img/s':>11}{'vs albu':>9}{'vs w1':>7}"
              f"{'CPU ms/img':>11}{'main MB':>9}{'all MB':>9}{'disk MB':>9}")
        for name, r in zip(wanted, runs):
            rate = rates[name]
            vs_albu = f"{rate / rates['albu']:>9.2f}" if "albu" in rates else f"{'-':>9}"
            vs_w1 = f"{rate / rates['w1']:>7.2f}" if "w1" in rates else f"{'-':>7}"
            print(f"{r['tool']:<16}{r['workers']:>8}{r['seconds']:>9.1f}{rate:>11.1f}{vs_albu}{vs_w1}"
                  f"{1e3 * r['cpu_seconds'] / r['augmented']:>11.1f}{r['peak_mb']:>9.0f}{r['tree_peak_mb']:>9.0f}{r['disk_mb']:>9.0f}")
        print("(CPU ms/img: user+sys of the run and its workers per augmented image, copies included — the\n"
              " figure to trust when other jobs share the cores; main MB: peak RSS of the run's process;\n"
              " all MB: sampled peak of it and its workers together)")
        digests = {name: r["digest"] for name, r in zip(wanted, runs) if r["digest"]}
        for name, digest in digests.items():
            print(f"store digest ({name}): {digest}")
        if {"w1", "w2"} <= set(digests):
            print(f"workers 1 and 2 byte-identical: {digests['w1'] == digests['w2']}")
        print(f"load average at the end: {_load()}")
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


if __name__ == "__main__":
    main()
