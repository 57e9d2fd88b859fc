"""Writing a store: :class:`StoreWriter` streams slices in (volume by volume, any count, or compressed beforehand by
:func:`~segkit.store.shards.encode_slices`), writes into a temporary directory beside the destination, and renames it
into place only when everything — data, table, attributes, provenance — is complete; on any error the temporary
directory is removed.  Slices are buffered to whole shards so every shard is written exactly once: the same slices in
the same order give byte-identical files whatever the append pattern.  Other processes may write whole shards
themselves (:meth:`StoreWriter.reserve`, :func:`~segkit.store.shards.write_rows`, :meth:`StoreWriter.commit`), and a
write may be made resumable (``resume_key``, journalled by :mod:`segkit.store.journal`)."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np

from segkit.errors import OutputExistsError, UsageError
from segkit.store.format import SHARD_SLICES, TABLE_COLUMNS, store_attrs, store_digest
from segkit.store.journal import read_journal, remove_journal, write_journal
from segkit.store.provenance import finish_step
from segkit.store.reader import Store
from segkit.store.shards import EncodedSlices, _write_shard, create_arrays, encode_slices
from segkit.store.table import (add_columns, add_has_tumour, join_columns, restore_columns, split_per_patient,
                                write_table)

__all__ = ["StoreWriter"]


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
        create_arrays(self._group, self.size, self.shard_slices)

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
        add_columns(self._columns, n, rows)
        add_has_tumour(self._columns, n, np.asarray(slices.has_tumour, dtype=bool))
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
        add_columns(self._columns, n, rows)
        add_has_tumour(self._columns, n, np.asarray(has_tumour, dtype=bool))
        self._shard_digests.update(shard_digests or {})
        start, stop = self._written, self._written + n
        self._written = stop
        if self.resume_key is not None and stop % self.shard_slices == 0:
            self._journal(start, stop)

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
            table = join_columns(self._columns)
            split = split_per_patient(table)
            write_table(self._group, table)
            remove_journal(self._tmp)
            missing = sorted(set(table["series"]) - set(self.attrs.get("spacing", {})))
            if missing:
                raise UsageError("store writer", f"no spacing recorded for {len(missing)} series (e.g. {missing[0]})")
            self._group = None
            steps = self.provenance[:-1] + [finish_step(self.provenance[-1],
                                                        store_digest(self._tmp, self._shard_digests))]
            attrs = store_attrs(self.attrs, size=self.size, slices=len(table["patient"]), split=split, provenance=steps)
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
            key = f"{name}/c/{shard}/0/0"
            self._shard_digests.pop(key, None)
            digest = _write_shard(self._tmp / key, data, self.shard_slices)
            if digest is not None:
                self._shard_digests[key] = digest
        self._written = stop
        self._pending = _Pending()
        if self.resume_key is not None and stop % self.shard_slices == 0:
            self._journal(start, stop)

    def _journal(self, start: int, stop: int) -> None:
        """Record rows ``[start, stop)`` (just written as whole shards) and the attributes so far."""
        write_journal(self._tmp, self._columns, start, stop, key=self.resume_key, size=self.size,
                      shard_slices=self.shard_slices, attrs=self.attrs)

    def _resume(self) -> bool:
        """Reopen a journalled temporary store written with the same key; ``False`` if there is none."""
        import zarr

        try:
            journal = read_journal(self._tmp, key=self.resume_key, size=self.size, shard_slices=self.shard_slices)
            if journal is None:
                return False
            written, columns, state = journal
            group = zarr.open_group(self._tmp, mode="r+", zarr_format=3)
            h, w = self.size
            for name in ("image", "mask"):
                group[name].resize((written, h, w))  # drops anything written after the last journal entry
        except (OSError, ValueError, KeyError, TypeError):
            return False
        shutil.rmtree(self._tmp / "slices", ignore_errors=True)  # a table from an interrupted close
        # zarr writes each metadata file through a temporary '<name>.<uuid>.partial' beside it: a kill during
        # such a write (a resize, say) leaves that file behind, and it must not end up in the store
        for leftover in self._tmp.rglob("*.partial"):
            leftover.unlink(missing_ok=True)
        self._group = group
        self._written = self.resumed = written
        self.attrs.update(state["attrs"])
        self._columns.update(restore_columns(columns))
        return True

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
