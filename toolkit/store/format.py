"""The store's format, shared by its writer and its reader: the format's name and version, the splits and sources a
slice may have, the per-slice table's columns, the codec and shard size of the pixel arrays, and the two checks of a
whole store, :func:`validate_attrs` (its ``segkit`` attributes against the schemas) and :func:`store_digest` (its
output digest)."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from segkit._version import __version__
from segkit.store.provenance import digest_tree

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "SPLITS",
    "SOURCES",
    "TABLE_COLUMNS",
    "SHARD_SLICES",
    "store_attrs",
    "store_digest",
    "validate_attrs",
]

# One Zarr v3 group that every step after ``convert`` reads:
#
#     STORE.zarr/
#       zarr.json            root group; attributes {"segkit": {...}} (schemas/store.schema.json)
#       image/               float32, N×H×W, one slice per chunk, 64-slice shards
#       mask/                uint8 0/1, N×H×W, same chunking
#       slices/              1-D arrays of length N (the per-slice table):
#         patient   str      patient pseudonym
#         series    str      series pseudonym
#         index     int32    slice index in its volume (0 = lowest along the normal)
#         position  float64  mm along the slice normal
#         split     str      train | val | test
#         source    str      original | augmented
#         parent    int64    row this slice was derived from (-1 for originals)
#         transform str      JSON of the transform parameters ("" for originals)
#         has_tumour bool    any mask pixel set
#
# Chunks are compressed with Blosc zstd (level 1) + bitshuffle and grouped in
# shards of 64 slices: on MR-like float32 slices it was 40 % smaller than
# lz4 + bitshuffle at a similar random-read rate; level 1 is 2.5 % larger than
# level 3 but writes 2.5× faster (compression dominated augment's time), and shards
# cut the file count ~36× (``python -m benchmarks.store_codecs``).

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


def _compressor():
    from zarr.codecs import BloscCodec

    return BloscCodec(cname="zstd", clevel=1, shuffle="bitshuffle")


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


def store_attrs(extra: Mapping[str, Any], *, size: tuple[int, int], slices: int, split: Mapping[str, str],
                provenance: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """A finished store's ``segkit`` attributes: ``extra`` and the format's own keys, as JSON holds them, validated.

    Raises
    ------
    jsonschema.ValidationError
        If they do not validate (see :func:`validate_attrs`).
    """
    attrs = {
        **extra,
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "segkit_version": __version__,
        "size": list(size),
        "slices": int(slices),
        "split": split,
        "provenance": provenance,
    }
    attrs = json.loads(json.dumps(attrs, sort_keys=True))
    validate_attrs(attrs)
    return attrs
