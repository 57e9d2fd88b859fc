"""Write a file so that readers see either nothing or the whole of it.

Every segkit output is written to a temporary name beside its destination and
renamed into place only when complete (``os.replace`` is atomic within a file
system); on any error the temporary file is removed.  Folders (stores, cohorts,
reports) use the same pattern with their own temporary folder.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

__all__ = ["atomic_path", "write_atomic"]


@contextlib.contextmanager
def atomic_path(out: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a fresh temporary path beside ``out``; rename it to ``out`` when the block succeeds.

    The parent folder is created if needed.  If the block raises, the temporary
    file is removed and ``out`` is left as it was.
    """
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".partial", dir=out.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.replace(tmp, out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_atomic(out: str | os.PathLike[str], data: bytes | str) -> Path:
    """Write ``data`` (text as UTF-8) to ``out`` atomically and return ``out``."""
    with atomic_path(out) as tmp:
        tmp.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
    return Path(out)
