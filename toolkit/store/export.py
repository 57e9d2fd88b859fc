"""``segkit export``: a store's arrays, table and attributes as one HDF5 file.

Layout of ``OUT.h5``: datasets ``image`` (float32 N×H×W) and ``mask`` (uint8
N×H×W), chunked one slice per chunk and gzip-compressed; group ``slices`` with
the per-slice table (strings as UTF-8); root attribute ``segkit`` holding the
store's ``segkit`` attributes as JSON text, with an ``export`` provenance step
appended.  Written to a temporary file beside ``OUT.h5`` and renamed when complete.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from segkit.atomic import atomic_path
from segkit.errors import OutputExistsError
from segkit.store.format import TABLE_COLUMNS
from segkit.store.provenance import file_digest, finish_step, provenance_step
from segkit.store.reader import open_store

__all__ = ["export_hdf5"]

_BLOCK = 64


def _create_untimed(h5py, path: Path):  # noqa: ANN001, ANN202 - h5py module / low-level FileID
    """Create an HDF5 file whose objects carry no modification times (HDF5 stamps them by default)."""
    fcpl = h5py.h5p.create(h5py.h5p.FILE_CREATE)
    fcpl.set_obj_track_times(False)
    return h5py.h5f.create(os.fsencode(path), h5py.h5f.ACC_TRUNC, fcpl=fcpl)


def export_hdf5(store_path: str | os.PathLike[str], out: str | os.PathLike[str], *, overwrite: bool = False,
                progress: bool = False) -> Path:
    """Write the store at ``store_path`` to the HDF5 file ``out``.

    Raises
    ------
    InputError
        If ``store_path`` is not a segkit store.
    OutputExistsError
        If ``out`` exists and not ``overwrite``.
    """
    import h5py

    out = Path(out)
    if out.exists() and not overwrite:
        raise OutputExistsError(str(out), "already exists; choose another path or pass --force")
    store = open_store(store_path)
    step = provenance_step("export", {"format": "hdf5"}, input_digest=store.digest(), input_files=None, seed=None)
    n, (h, w) = len(store), store.attrs["size"]
    with atomic_path(out) as tmp:
        with h5py.File(_create_untimed(h5py, tmp)) as f:
            for name, dtype in (("image", np.float32), ("mask", np.uint8)):
                f.create_dataset(name, shape=(n, h, w), dtype=dtype, chunks=(1, h, w) if n else None,
                                 compression="gzip", compression_opts=4, shuffle=True, track_times=False)
            blocks = range(0, n, _BLOCK)
            if progress:
                from tqdm import tqdm

                blocks = tqdm(blocks, desc="export", unit="block", leave=False)
            for start in blocks:
                stop = min(n, start + _BLOCK)
                f["image"][start:stop] = store.image[start:stop]
                f["mask"][start:stop] = store.mask[start:stop]
            gcpl = h5py.h5p.create(h5py.h5p.GROUP_CREATE)
            gcpl.set_obj_track_times(False)
            h5py.h5g.create(f.id, b"slices", gcpl=gcpl)
            group = f["slices"]
            for name, dtype in TABLE_COLUMNS.items():
                column = store.table[name]
                if dtype is str:
                    group.create_dataset(name, data=np.asarray(column.tolist(), dtype=object) if n else [],
                                         dtype=h5py.string_dtype("utf-8"), track_times=False)
                else:
                    group.create_dataset(name, data=np.asarray(column, dtype=dtype), track_times=False)
        # no object carries a timestamp, so the data part is reproducible; digest it before the attributes
        data_digest = "sha256:" + file_digest(tmp)
        attrs = dict(store.attrs)
        attrs["provenance"] = store.provenance + [finish_step(step, data_digest)]
        with h5py.File(tmp, "r+") as f:
            f.attrs["segkit"] = json.dumps(attrs, sort_keys=True)
    return out
