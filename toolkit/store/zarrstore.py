"""The segkit slice store: one Zarr v3 group that every step after ``convert`` reads.

Layout
------
::

    STORE.zarr/
      zarr.json            root group; attributes {"segkit": {...}} (schemas/store.schema.json)
      image/               float32, N×H×W, one slice per chunk, 64-slice shards
      mask/                uint8 0/1, N×H×W, same chunking
      slices/              1-D arrays of length N (the per-slice table):
        patient   str      patient pseudonym
        series    str      series pseudonym
        index     int32    slice index in its volume (0 = lowest along the normal)
        position  float64  mm along the slice normal
        split     str      train | val | test
        source    str      original | augmented
        parent    int64    row this slice was derived from (-1 for originals)
        transform str      JSON of the transform parameters ("" for originals)
        has_tumour bool    any mask pixel set

Chunks are compressed with Blosc zstd (level 1) + bitshuffle and grouped in
shards of 64 slices: on MR-like float32 slices it was 40 % smaller than
lz4 + bitshuffle at a similar random-read rate; level 1 is 2.5 % larger than
level 3 but writes 2.5× faster (compression dominated augment's time), and shards
cut the file count ~36× (``python -m benchmarks.store_codecs``).

Writing
-------
:class:`StoreWriter` streams slices in (volume by volume, any count), writes into
a temporary directory beside the destination, and renames it into place only
when everything — data, table, attributes, provenance — is complete; on any
error the temporary directory is removed.  Slices are buffered to whole shards
so every shard is written exactly once: the same slices in the same order give
byte-identical files whatever the append pattern.

Zarr creates the arrays (their metadata); the shards themselves are assembled
here, byte for byte as zarr's sharding codec lays them out (inner chunks in
order, all-zero chunks left out, a little-endian offset/length index with its
CRC-32C at the end), from slices compressed once by :func:`encode_slices` —
which may run anywhere (a worker thread, another process, a Dask worker), so
compression is off the writer's critical path and the writer's work is a file
write per shard.  ``tests/test_store_shards.py`` checks the bytes against
zarr's own writes.

Reading
-------
:func:`open_store` returns a read-only :class:`Store` view: the two arrays
(lazy, random access by slice), the table as numpy arrays, the ``segkit``
attributes, and :meth:`Store.indices` to select rows by split/source.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np

from segkit._version import __version__
from segkit.errors import InputError, OutputExistsError, SegkitError, UsageError
from segkit.store.provenance import digest_tree, finish_step

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "SPLITS",
    "SOURCES",
    "TABLE_COLUMNS",
    "SHARD_SLICES",
    "StoreWriter",
    "EncodedSlices",
    "encode_slices",
    "write_rows",
    "Store",
    "open_store",
    "store_digest",
    "validate_attrs",
]

FORMAT = "segkit-slices"
FORMAT_VERSION = 1
SPLITS = ("train", "val", "test")
SOURCES = ("original", "augmented")
SHARD_SLICES = 64

#: Column name → numpy dtype (``str`` = variable-length UTF-8 in Zarr).
TABLE_COLUMNS: dict[str, Any] = {
    "patient": str,
    "series": str,
    "index": np.int32,
    "position": np.float64,
    "split": str,
    "source": str,
    "parent": np.int64,
    "transform": str,
    "has_tumour": np.bool_,
}


_STATE = "segkit-resume.json"
_ROWS = "segkit-resume-rows.jsonl"


def _plain(value: Any) -> Any:
    """A numpy scalar as the Python value JSON can hold."""
    return value.item() if isinstance(value, np.generic) else value


def _compressor():
    from zarr.codecs import BloscCodec

    return BloscCodec(cname="zstd", clevel=1, shuffle="bitshuffle")


_CODECS: dict[int, Any] = {}


def _chunk_codec(itemsize: int) -> Any:
    """The numcodecs Blosc object zarr's BloscCodec uses for one chunk of this item size."""
    codec = _CODECS.get(itemsize)
    if codec is None:
        from dataclasses import replace as evolve

        codec = _CODECS[itemsize] = evolve(_compressor(), typesize=itemsize)._blosc_codec
    return codec


@dataclass
class EncodedSlices:
    """Slices compressed as the store's chunks (one per slice; ``None`` = all zero, not stored).

    Made by :func:`encode_slices`, appended with :meth:`StoreWriter.append_encoded`.
    """

    image: list[bytes | None]
    mask: list[bytes | None]
    has_tumour: np.ndarray

    def __len__(self) -> int:
        return len(self.image)

    def __getitem__(self, rows: slice) -> EncodedSlices:
        return EncodedSlices(self.image[rows], self.mask[rows], self.has_tumour[rows])


def _encode(plane: np.ndarray) -> bytes | None:
    raw = np.ascontiguousarray(plane).view(np.uint8).reshape(-1)
    if not raw.any():  # zarr leaves out chunks equal to the fill value (compared bit for bit)
        return None
    return bytes(_chunk_codec(plane.dtype.itemsize).encode(raw))


def encode_slices(image: np.ndarray, mask: np.ndarray) -> EncodedSlices:
    """Compress ``(n, H, W)`` slices (float32 image, 0/1 mask) into the store's chunk bytes.

    Pure and thread-safe (Blosc releases the GIL): call it where the slices are made.

    Raises
    ------
    UsageError
        On shapes that differ or a mask that is not binary.
    """
    image = np.asarray(image)
    mask = np.asarray(mask)
    if image.ndim == 2:
        image, mask = image[None], mask[None]
    if mask.shape != image.shape:
        raise UsageError("store writer", f"mask {mask.shape} and image {image.shape} differ in shape")
    if mask.dtype != np.bool_ and np.any((mask != 0) & (mask != 1)):
        raise UsageError("store writer", "masks must be binary (0/1)")
    image = image.astype("<f4", copy=False)
    # plane by plane: no volume-sized copy of the mask
    return EncodedSlices([_encode(plane) for plane in image], [_encode(plane.astype(np.uint8)) for plane in mask],
                         mask.reshape(len(mask), -1).any(axis=1))


def _shard_parts(chunks: Sequence[bytes | None], per_shard: int) -> list[bytes] | None:
    """One shard's byte pieces as zarr's ShardingCodec lays them out (index at the end, CRC-32C), or ``None`` if empty."""
    import google_crc32c

    index = np.full((per_shard, 2), np.iinfo(np.uint64).max, dtype="<u8")
    parts, start = [], 0
    for k, chunk in enumerate(chunks):
        if chunk:
            index[k] = (start, len(chunk))
            parts.append(chunk)
            start += len(chunk)
    if not parts:
        return None
    index_bytes = index.tobytes()
    crc = np.array([google_crc32c.value(index_bytes)], dtype="<u4").tobytes()
    return [*parts, index_bytes, crc]


def store_digest(path: str | os.PathLike[str], known: Mapping[str, str] | None = None) -> str:
    """Return the store's output digest: every file except the root ``zarr.json``.

    The root ``zarr.json`` holds the attributes, provenance (and its times)
    included, so it is left out; everything else — the data, the table and the
    arrays' metadata — is covered.
    """
    return digest_tree(path, exclude=("zarr.json",), known=known)


def validate_attrs(attrs: Mapping[str, Any]) -> None:
    """Validate a store's ``segkit`` attributes against ``store`` and ``provenance`` schemas.

    Raises
    ------
    jsonschema.ValidationError
        If they do not validate.
    """
    from segkit.schemas import validate

    validate(attrs, "store")
    validate(attrs["provenance"], "provenance")


# --------------------------------------------------------------------------- writer
@dataclass
class _Pending:
    """Encoded slices waiting for a whole shard."""

    images: list[bytes | None] = field(default_factory=list)
    masks: list[bytes | None] = field(default_factory=list)
    count: int = 0


class StoreWriter:
    """Write a segkit store atomically, slice block by slice block.

    Parameters
    ----------
    path:
        The destination ``*.zarr`` directory; must not exist unless ``overwrite``.
    size:
        ``(H, W)`` of every slice.
    provenance:
        The steps so far; the **last** one is this run's step (from
        :func:`segkit.store.provenance.provenance_step`) and is completed with its
        end time and the store's output digest on close.
    attrs:
        Further ``segkit`` attributes (``spacing`` per series is required for
        every series written; ``normalisation`` and others are free-form).
        May also be filled later through :attr:`attrs`.
    overwrite:
        Replace an existing destination (only once the new store is complete).
    resume_key:
        Make the write resumable: the temporary store gets a fixed name and a
        journal, updated at every whole shard; a writer opened later with the
        same key (same inputs and parameters) continues after the last whole
        shard (:attr:`resumed` slices, with their table rows and :attr:`attrs`)
        instead of starting again.  It is kept after a kill or Ctrl-C and
        removed after any other failure.

    Examples
    --------
    >>> with StoreWriter("s.zarr", (64, 64), provenance=[step]) as w:   # doctest: +SKIP
    ...     w.append(image, mask, patient="P01", series="S01", split="train",
    ...              index=np.arange(len(image)), position=z)
    ...     w.attrs["spacing"] = {"S01": [2.0, 0.84, 0.84]}
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        size: tuple[int, int],
        *,
        provenance: Sequence[Mapping[str, Any]],
        attrs: Mapping[str, Any] | None = None,
        overwrite: bool = False,
        shard_slices: int = SHARD_SLICES,
        resume_key: str | None = None,
    ) -> None:
        self.path = Path(path)
        if self.path.exists() and not overwrite:
            raise OutputExistsError(str(self.path), "already exists; choose another path or pass --force")
        if len(size) != 2 or min(size) < 1:
            raise UsageError("size", f"must be two positive integers (H, W), got {tuple(size)}")
        if not provenance:
            raise UsageError("provenance", "needs at least this run's step")
        self.size = (int(size[0]), int(size[1]))
        self.provenance = [dict(s) for s in provenance]
        self.attrs: dict[str, Any] = dict(attrs or {})
        self.shard_slices = int(shard_slices)
        self.resume_key = resume_key
        self.resumed = 0
        self._tmp: Path | None = None
        self._created_parents: list[Path] = []
        self._group = None
        self._written = 0
        self._pending = _Pending()
        self._shard_digests: dict[str, str] = {}  # shards this writer wrote: hashed from memory, not re-read
        self._columns: dict[str, list[np.ndarray]] = {name: [] for name in TABLE_COLUMNS}
        self._closed = False

    # -- context manager
    def __enter__(self) -> StoreWriter:
        self.open()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is None:
            self.close()
        elif self.resume_key is not None and issubclass(exc_type, KeyboardInterrupt):
            self._group = None  # keep the journal and the whole shards for the next run
        else:
            self.abort()

    # -- public API
    def open(self) -> None:
        """Create the temporary store beside the destination."""
        import zarr

        missing = [p for p in [self.path.parent, *self.path.parent.parents] if not p.exists()]
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._created_parents = missing  # removed again (if still empty) when the write fails
        if self.resume_key is not None:
            self._tmp = self.path.with_name(f".{self.path.name}.partial")
            if self._resume():
                return
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp.mkdir()
        else:
            self._tmp = Path(tempfile.mkdtemp(prefix=f".{self.path.name}.", suffix=".partial", dir=self.path.parent))
        self._group = zarr.open_group(self._tmp, mode="w", zarr_format=3)
        h, w = self.size
        for name, dtype in (("image", np.float32), ("mask", np.uint8)):
            self._group.create_array(
                name,
                shape=(0, h, w),
                dtype=dtype,
                chunks=(1, h, w),
                shards=(self.shard_slices, h, w),
                compressors=_compressor(),
                fill_value=0,
            )

    @property
    def count(self) -> int:
        """Slices appended so far."""
        return self._written + self._pending.count

    def append(
        self,
        image: np.ndarray,
        mask: np.ndarray,
        *,
        patient: str | Sequence[str],
        series: str | Sequence[str],
        split: str | Sequence[str],
        index: int | Sequence[int] | np.ndarray,
        position: float | Sequence[float] | np.ndarray,
        source: str | Sequence[str] = "original",
        parent: int | Sequence[int] | np.ndarray = -1,
        transform: str | Sequence[str] = "",
    ) -> None:
        """Append ``n`` slices with their table rows (scalars broadcast to all ``n``).

        Parameters
        ----------
        image:
            ``(n, H, W)`` or ``(H, W)``, converted to float32.
        mask:
            Same shape, boolean or 0/1; stored as uint8.

        Raises
        ------
        UsageError
            On a shape mismatch, a non-binary mask, or an unknown split/source.
        """
        if self._group is None or self._closed:
            raise UsageError("store writer", "is not open; use it as a context manager")
        image = np.asarray(image)
        mask = np.asarray(mask)
        if image.ndim == 2:
            image, mask = image[None], mask[None]
        n = image.shape[0]
        if image.shape[1:] != self.size or mask.shape != image.shape:
            raise UsageError(
                "store writer",
                f"slices must be {self.size} with a mask of the same shape, got image {image.shape[1:]} "
                f"and mask {mask.shape[1:]}",
            )
        self.append_encoded(encode_slices(image, mask), patient=patient, series=series, split=split, index=index,
                            position=position, source=source, parent=parent, transform=transform)

    def append_encoded(self, slices: EncodedSlices, **rows: Any) -> None:
        """Append slices compressed by :func:`encode_slices` (of this writer's size) with their table rows.

        ``rows`` are the keyword columns of :meth:`append` (scalars broadcast).
        """
        if self._group is None or self._closed:
            raise UsageError("store writer", "is not open; use it as a context manager")
        n = len(slices)
        rows = {"source": "original", "parent": -1, "transform": "", **rows}
        names = set(TABLE_COLUMNS) - {"has_tumour"}
        if set(rows) != names:
            raise UsageError("store writer", f"append needs the columns {', '.join(sorted(names))}; "
                             f"got {', '.join(sorted(rows))}")
        self._add_columns(n, rows)
        self._add_has_tumour(n, np.asarray(slices.has_tumour, dtype=bool))
        pending = self._pending
        for i in range(n):
            pending.images.append(slices.image[i])
            pending.masks.append(slices.mask[i])
            pending.count += 1
            if pending.count == self.shard_slices:
                self._flush()
                pending = self._pending

    def reserve(self, n: int) -> tuple[Path, int]:
        """Make room for ``n`` slices that other processes write themselves (parallel writes).

        Each process writes whole shards with :func:`write_rows` into the
        returned temporary store; this writer then records them, in row order,
        with :meth:`commit`.  Only possible on a shard boundary (``count`` a
        multiple of ``shard_slices``), so no two processes touch one shard.

        Returns
        -------
        (Path, int)
            The temporary store and the first reserved row.
        """
        if self._group is None or self._closed:
            raise UsageError("store writer", "is not open; use it as a context manager")
        if self._pending.count:
            raise UsageError("store writer", f"parallel writes must start on a shard boundary "
                             f"(a multiple of {self.shard_slices} slices); {self.count} appended so far")
        h, w = self.size
        for name in ("image", "mask"):
            array = self._group[name]
            array.resize((max(array.shape[0], self._written + n), h, w))
        return self._tmp, self._written

    def commit(self, n: int, *, has_tumour: Sequence[bool] | np.ndarray,
               shard_digests: Mapping[str, str] | None = None, **rows: Any) -> None:
        """Record the table rows of the next ``n`` slices, already written with :func:`write_rows`.

        ``rows`` are the keyword columns of :meth:`append`; ``has_tumour`` is one
        flag per slice (as :func:`write_rows` returns).  Commit whole shards (the
        last may be partial) in row order; a resumable write journals each.
        ``shard_digests`` (store-relative path → SHA-256 hex) are digests the
        process that wrote those shard files made from the bytes it wrote, so
        the output digest need not read them back.
        """
        if self._group is None or self._closed:
            raise UsageError("store writer", "is not open; use it as a context manager")
        if self._pending.count:
            raise UsageError("store writer", "commit follows reserve, on a shard boundary")
        names = set(TABLE_COLUMNS) - {"has_tumour"}
        rows = {"source": "original", "parent": -1, "transform": "", **rows}
        if set(rows) != names:
            raise UsageError("store writer", f"commit needs the columns {', '.join(sorted(names))}; "
                             f"got {', '.join(sorted(rows))}")
        self._add_columns(n, rows)
        self._add_has_tumour(n, np.asarray(has_tumour, dtype=bool))
        self._shard_digests.update(shard_digests or {})
        start, stop = self._written, self._written + n
        self._written = stop
        if self.resume_key is not None and stop % self.shard_slices == 0:
            self._journal(start, stop)

    def _add_columns(self, n: int, rows: Mapping[str, Any]) -> None:
        for name, value in rows.items():
            column = np.asarray(value, dtype=TABLE_COLUMNS[name] if TABLE_COLUMNS[name] is not str else object)
            if column.ndim == 0:
                column = np.full(n, column.item(), dtype=column.dtype)
            if column.shape != (n,):
                raise UsageError("store writer", f"column {name!r} has {column.size} values for {n} slices")
            self._columns[name].append(column)
        for name, allowed in (("split", SPLITS), ("source", SOURCES)):
            bad = set(self._columns[name][-1]) - set(allowed)
            if bad:
                raise UsageError("store writer", f"{name} must be one of {', '.join(allowed)}, got {sorted(bad)}")

    def _add_has_tumour(self, n: int, flags: np.ndarray) -> None:
        if flags.shape != (n,):
            raise UsageError("store writer", f"has_tumour has {flags.size} values for {n} slices")
        self._columns["has_tumour"].append(flags)

    def copy_from(self, store: Store, rows: Iterable[int] | np.ndarray, *, block: int = SHARD_SLICES) -> None:
        """Append rows of another store unchanged (pixels and table)."""
        rows = np.asarray(list(rows) if not isinstance(rows, np.ndarray) else rows, dtype=np.int64)
        table = store.table
        for start in range(0, len(rows), block):
            sel = rows[start:start + block]
            self.append(
                np.stack([store.image[int(i)] for i in sel]),
                np.stack([store.mask[int(i)] for i in sel]),
                **{name: table[name][sel] for name in TABLE_COLUMNS if name != "has_tumour"},
            )

    def close(self) -> Path:
        """Flush, write the table and attributes, validate, and rename into place.

        Returns
        -------
        Path
            The destination.

        Raises
        ------
        SegkitError
            If a patient sits in two splits or a series has no spacing; nothing is left behind.
        """
        if self._closed:
            return self.path
        try:
            self._flush()
            h, w = self.size
            for name in ("image", "mask"):  # drop rows reserved but never committed
                if self._group[name].shape[0] != self._written:
                    self._group[name].resize((self._written, h, w))
            table = {name: (np.concatenate(parts) if parts else np.empty(0, dtype=object))
                     for name, parts in self._columns.items()}
            split = self._split_per_patient(table)
            self._write_table(table)
            for journal in (_STATE, _ROWS):
                (self._tmp / journal).unlink(missing_ok=True)
            missing = sorted(set(table["series"]) - set(self.attrs.get("spacing", {})))
            if missing:
                raise UsageError("store writer", f"no spacing recorded for {len(missing)} series (e.g. {missing[0]})")
            self._group = None
            steps = self.provenance[:-1] + [finish_step(self.provenance[-1],
                                                        store_digest(self._tmp, self._shard_digests))]
            attrs = {
                **self.attrs,
                "format": FORMAT,
                "version": FORMAT_VERSION,
                "segkit_version": __version__,
                "size": list(self.size),
                "slices": int(len(table["patient"])),
                "split": split,
                "provenance": steps,
            }
            attrs = json.loads(json.dumps(attrs, sort_keys=True))
            validate_attrs(attrs)
            import zarr

            zarr.open_group(self._tmp, mode="r+").attrs.put({"segkit": attrs})
            self._replace_destination()
        except BaseException:
            self.abort()
            raise
        self._closed = True
        return self.path

    def abort(self) -> None:
        """Remove the temporary store; the destination is untouched."""
        self._closed = True
        self._group = None
        if self._tmp is not None and self._tmp.exists():
            shutil.rmtree(self._tmp, ignore_errors=True)
        self._tmp = None
        for parent in self._created_parents:
            try:
                parent.rmdir()
            except OSError:
                break
        self._created_parents = []

    # -- internals
    def _flush(self) -> None:
        pending = self._pending
        if not pending.count:
            return
        start, stop = self._written, self._written + pending.count
        if start % self.shard_slices:
            raise UsageError("store writer", "appends after a parallel write must start on a shard boundary")
        h, w = self.size
        shard = start // self.shard_slices
        for name, data in (("image", pending.images), ("mask", pending.masks)):
            array = self._group[name]
            if array.shape[0] < stop:
                array.resize((stop, h, w))  # never below rows reserved for other writers
            parts = _shard_parts(data, self.shard_slices)
            key = f"{name}/c/{shard}/0/0"
            target = self._tmp / key
            self._shard_digests.pop(key, None)
            if parts is None:
                target.unlink(missing_ok=True)
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                with open(target, "wb") as fh:
                    fh.writelines(parts)  # no shard-sized join
                digest = hashlib.sha256()
                for part in parts:
                    digest.update(part)
                self._shard_digests[key] = digest.hexdigest()
        self._written = stop
        self._pending = _Pending()
        if self.resume_key is not None and stop % self.shard_slices == 0:
            self._journal(start, stop)

    def _journal(self, start: int, stop: int) -> None:
        """Record rows ``[start, stop)`` (just written as whole shards) and the attributes so far."""
        rows = {name: [_plain(v) for v in np.concatenate(parts)[start:stop]] for name, parts in self._columns.items()}
        with open(self._tmp / _ROWS, "a", encoding="utf-8") as fh:
            fh.write(json.dumps({"start": start, "rows": rows}) + "\n")
        state = {"key": self.resume_key, "written": stop, "size": list(self.size), "shard": self.shard_slices,
                 "attrs": self.attrs}
        part = self._tmp / (_STATE + ".tmp")
        part.write_text(json.dumps(state), encoding="utf-8")
        os.replace(part, self._tmp / _STATE)

    def _resume(self) -> bool:
        """Reopen a journalled temporary store written with the same key; ``False`` if there is none."""
        import zarr

        try:
            state = json.loads((self._tmp / _STATE).read_text(encoding="utf-8"))
            if (state["key"], state["size"], state["shard"]) != (self.resume_key, list(self.size), self.shard_slices):
                return False
            written = int(state["written"])
            columns: dict[str, list] = {name: [] for name in TABLE_COLUMNS}
            for line in (self._tmp / _ROWS).read_text(encoding="utf-8").splitlines():
                entry = json.loads(line)
                if entry["start"] < written:
                    for name in TABLE_COLUMNS:
                        columns[name].extend(entry["rows"][name])
            if any(len(v) != written for v in columns.values()):
                return False
            group = zarr.open_group(self._tmp, mode="r+", zarr_format=3)
            h, w = self.size
            for name in ("image", "mask"):
                group[name].resize((written, h, w))  # drops anything written after the last journal entry
        except (OSError, ValueError, KeyError, TypeError):
            return False
        shutil.rmtree(self._tmp / "slices", ignore_errors=True)  # a table from an interrupted close
        self._group = group
        self._written = self.resumed = written
        self.attrs.update(state["attrs"])
        for name, dtype in TABLE_COLUMNS.items():
            self._columns[name] = [np.asarray(columns[name], dtype=object if dtype is str else dtype)]
        return True

    @staticmethod
    def _split_per_patient(table: Mapping[str, np.ndarray]) -> dict[str, str]:
        split: dict[str, str] = {}
        for patient, part in zip(table["patient"], table["split"]):
            if split.setdefault(patient, part) != part:
                raise SegkitError(
                    f"patient {patient}",
                    f"has slices in both {split[patient]!r} and {part!r}; the split must be per patient",
                )
        return dict(sorted(split.items()))

    def _write_table(self, table: Mapping[str, np.ndarray]) -> None:
        group = self._group.create_group("slices")
        n = len(table["patient"])
        for name, dtype in TABLE_COLUMNS.items():
            data = table[name]
            if dtype is str:
                data = np.asarray([str(v) for v in data], dtype=object) if n else np.empty(0, dtype=object)
            else:
                data = np.asarray(data, dtype=dtype)
            array = group.create_array(name, shape=(n,), dtype=dtype, chunks=(max(n, 1),))
            if n:
                array[:] = data

    def _replace_destination(self) -> None:
        assert self._tmp is not None
        old = None
        if self.path.exists():
            old = self.path.with_name(f".{self.path.name}.old-{os.getpid()}")
            os.replace(self.path, old)
        os.replace(self._tmp, self.path)
        self._tmp = None
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)


def write_rows(tmp: str | os.PathLike[str], start: int, image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Write slices into rows ``start…`` of a store being written (see :meth:`StoreWriter.reserve`).

    Call it from any process, with whole shards (the array's last may be
    partial); then :meth:`StoreWriter.commit` the rows in order.

    Returns
    -------
    numpy.ndarray
        One ``has_tumour`` flag per slice, for :meth:`StoreWriter.commit`.

    Raises
    ------
    UsageError
        If a mask is not binary.
    """
    import zarr

    mask_u8 = np.asarray(mask).astype(np.uint8, copy=False)
    if mask_u8.size and mask_u8.max() > 1:
        raise UsageError("store writer", "masks must be binary (0/1)")
    group = zarr.open_group(tmp, mode="r+", zarr_format=3)
    stop = start + len(image)
    group["image"][start:stop] = np.asarray(image, dtype=np.float32)
    group["mask"][start:stop] = mask_u8
    return mask_u8.reshape(len(mask_u8), -1).any(axis=1)


# --------------------------------------------------------------------------- reader
class Store:
    """A read-only view of a segkit store (see :func:`open_store`).

    Attributes
    ----------
    path:
        The store directory.
    image, mask:
        Lazy ``zarr.Array`` s of shape ``(N, H, W)``; ``store.image[i]`` reads one slice.
    attrs:
        The ``segkit`` attributes (format, version, size, spacing, split, provenance …).
    """

    def __init__(self, path: Path, group: Any) -> None:
        self.path = path
        self._group = group
        self.image = group["image"]
        self.mask = group["mask"]
        self.attrs: dict[str, Any] = dict(group.attrs["segkit"])

    def __len__(self) -> int:
        return int(self.image.shape[0])

    def __repr__(self) -> str:
        return f"Store({str(self.path)!r}, slices={len(self)}, size={tuple(self.attrs['size'])})"

    @cached_property
    def table(self) -> dict[str, np.ndarray]:
        """The per-slice table, one numpy array per column (strings as ``object``)."""
        table = {}
        for name, dtype in TABLE_COLUMNS.items():
            column = self._group["slices"][name][:]
            table[name] = np.array(column.tolist(), dtype=object) if dtype is str else column
        return table

    @property
    def split(self) -> dict[str, str]:
        """Patient pseudonym → split."""
        return dict(self.attrs["split"])

    @property
    def provenance(self) -> list[dict[str, Any]]:
        """The provenance steps, oldest first."""
        return [dict(step) for step in self.attrs["provenance"]]

    def indices(
        self,
        split: str | Iterable[str] | None = None,
        *,
        source: str | None = None,
        has_tumour: bool | None = None,
    ) -> np.ndarray:
        """Row indices (int64, ascending) matching every given filter."""
        table = self.table
        keep = np.ones(len(self), dtype=bool)
        if split is not None:
            wanted = [split] if isinstance(split, str) else list(split)
            unknown = set(wanted) - set(SPLITS)
            if unknown:
                raise UsageError("split", f"must be one of {', '.join(SPLITS)}, got {sorted(unknown)}")
            keep &= np.isin(table["split"], wanted)
        if source is not None:
            keep &= table["source"] == source
        if has_tumour is not None:
            keep &= table["has_tumour"] == has_tumour
        return np.flatnonzero(keep).astype(np.int64)

    def read(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Return ``(image float32 H×W, mask uint8 H×W)`` of one row."""
        return self.image[int(index)], self.mask[int(index)]

    def row(self, index: int) -> dict[str, Any]:
        """One row of the table as a dict of Python scalars."""
        return {name: column[int(index)].item() if hasattr(column[int(index)], "item") else column[int(index)]
                for name, column in self.table.items()}

    def digest(self) -> str:
        """The store's output digest (see :func:`store_digest`)."""
        return store_digest(self.path)


def open_store(path: str | os.PathLike[str]) -> Store:
    """Open a segkit store read-only.

    Raises
    ------
    InputError
        If ``path`` is missing, is not a Zarr v3 group, or has no ``segkit`` attributes
        of a supported format version.
    """
    import zarr

    path = Path(path)
    if not path.is_dir():
        raise InputError(str(path), "no such store (expected a directory written by segkit convert)")
    try:
        group = zarr.open_group(path, mode="r", zarr_format=3)
    except Exception as exc:  # noqa: BLE001 - zarr raises several types for "not a group"
        raise InputError(str(path), f"is not a segkit store (not a Zarr v3 group: {type(exc).__name__})") from None
    attrs = group.attrs.get("segkit")
    if not isinstance(attrs, Mapping) or attrs.get("format") != FORMAT:
        raise InputError(str(path), "is not a segkit store (no 'segkit' attributes of format segkit-slices)")
    if attrs.get("version") != FORMAT_VERSION:
        raise InputError(str(path), f"has store format version {attrs.get('version')}, this segkit reads {FORMAT_VERSION}")
    for name in ("image", "mask", "slices"):
        if name not in group:
            raise InputError(str(path), f"is incomplete: no {name!r} in the store")
    return Store(path, group)
