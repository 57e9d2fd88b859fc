"""Provenance records: one step per command, digests of what went in and what came out.

A step is a plain dict (so it goes straight into JSON and Zarr attributes) that
validates against ``schemas/provenance.schema.json``::

    {"name": "convert", "segkit_version": "0.1.0",
     "started": "2026-01-01T12:00:00Z", "finished": "2026-01-01T12:00:09Z",
     "parameters": {...}, "input_digest": "sha256:…", "input_files": 130,
     "output_digest": "sha256:…", "seed": 0}

Digests
-------
* **input digest** — SHA-256 over the *sorted* per-file SHA-256 digests of the
  inputs (:func:`digest_files`): it depends on the bytes of the inputs only, not
  on their names, locations or the order they were found in.
* **output digest** — SHA-256 over a ``sha256sum``-style manifest
  (``<hex>  <relative path>`` lines sorted by path) of the files of a directory
  output (:func:`digest_tree`); the store uses it with its root ``zarr.json``
  (which holds the provenance itself) left out.

Times are UTC.  When ``SOURCE_DATE_EPOCH`` is set (the reproducible-builds
convention) it is used instead of the clock, so even the attributes of two runs
are byte-identical.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from segkit._version import __version__

__all__ = [
    "utc_now",
    "file_digest",
    "digest_files",
    "combine_digests",
    "digest_tree",
    "provenance_step",
    "finish_step",
]

_CHUNK = 1 << 20


def utc_now() -> str:
    """Return the current UTC time as ``YYYY-MM-DDTHH:MM:SSZ`` (or ``SOURCE_DATE_EPOCH``)."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    moment = datetime.fromtimestamp(int(epoch), timezone.utc) if epoch else datetime.now(timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def file_digest(path: str | os.PathLike[str]) -> str:
    """Return the SHA-256 hex digest of one file's bytes."""
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def digest_files(paths: Iterable[str | os.PathLike[str]]) -> str:
    """Return ``sha256:<hex>`` over the sorted per-file digests of ``paths``.

    Independent of file names and of the order ``paths`` come in.
    """
    return combine_digests(file_digest(p) for p in paths)


def combine_digests(digests: Iterable[str]) -> str:
    """Return ``sha256:<hex>`` over per-file SHA-256 hex digests (any order), as :func:`digest_files` does.

    For callers that hash the files while reading them anyway.
    """
    return "sha256:" + hashlib.sha256("".join(d + "\n" for d in sorted(digests)).encode()).hexdigest()


def digest_tree(root: str | os.PathLike[str], exclude: Iterable[str] = (),
                known: Mapping[str, str] | None = None) -> str:
    """Return ``sha256:<hex>`` over the ``sha256sum`` manifest of every file under ``root``.

    Parameters
    ----------
    root:
        A directory.
    exclude:
        Relative POSIX paths to leave out (e.g. ``"zarr.json"``).
    known:
        Relative POSIX path → SHA-256 hex of files whose digest the caller made
        while writing them (they are not read again).
    """
    root = Path(root)
    skip = set(exclude)
    rels = sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
    known = known or {}
    lines = [f"{known.get(rel) or file_digest(root / rel)}  {rel}\n" for rel in rels if rel not in skip]
    return "sha256:" + hashlib.sha256("".join(lines).encode()).hexdigest()


def provenance_step(
    name: str,
    parameters: Mapping[str, Any],
    *,
    input_digest: str | None = None,
    input_files: int | None = None,
    seed: int | None = None,
) -> dict[str, Any]:
    """Start a provenance step (``finished`` and ``output_digest`` are filled by :func:`finish_step`).

    Parameters
    ----------
    name:
        The command, e.g. ``"convert"``.
    parameters:
        The exact, JSON-serialisable parameters of the run (no PHI: paths are
        the user's own, values are pseudonyms).
    input_digest:
        From :func:`digest_files` (files) or another store's output digest.
    input_files:
        How many input files went into ``input_digest``.
    seed:
        The random seed, or ``None`` for a step without randomness.
    """
    return {
        "name": name,
        "segkit_version": __version__,
        "started": utc_now(),
        "finished": None,
        "parameters": dict(parameters),
        "input_digest": input_digest,
        "input_files": input_files,
        "output_digest": None,
        "seed": seed,
    }


def finish_step(step: dict[str, Any], output_digest: str) -> dict[str, Any]:
    """Return ``step`` completed with its end time and output digest."""
    return {**step, "finished": utc_now(), "output_digest": output_digest}
