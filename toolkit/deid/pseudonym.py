"""Keyed, stateless replacements: pseudonyms, UIDs and date shifts.

Every replacement is a pure function of the site key and the original value
(HMAC-SHA256), so worker processes share no state, references across files stay
consistent without a lookup table, and nothing can be reversed without the key.
"""

from __future__ import annotations

import datetime as _dt
import hmac
import os
import secrets
import stat
from functools import lru_cache
from pathlib import Path

from segkit.errors import InputError, OutputExistsError

__all__ = ["Keyring", "generate_key", "read_key", "DEFAULT_PSEUDONYM_PATTERN"]

KEY_BYTES = 32
_KEY_HEADER = "segkit-site-key-v1"
DEFAULT_PSEUDONYM_PATTERN = "SK-{hash}"
#: the furthest a date moves back in time (days); the shift is never zero.
MAX_SHIFT_DAYS = 3650


def generate_key(path: str | os.PathLike[str], *, overwrite: bool = False) -> Path:
    """Write a new random site key to *path* with file mode 0600.

    Parameters
    ----------
    path:
        Where to write the key (a text file: a header line and 64 hex digits).
    overwrite:
        Replace an existing key. Off by default: losing a key loses the ability to
        link future data to the pseudonyms made with it.

    Raises
    ------
    OutputExistsError
        If *path* exists and *overwrite* is false.
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise OutputExistsError(str(path), "a key file already exists here; keep it, or choose another path")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, stat.S_IRUSR | stat.S_IWUSR)
    with os.fdopen(fd, "w") as fh:
        fh.write(f"{_KEY_HEADER}\n{secrets.token_hex(KEY_BYTES)}\n")
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)
    return path


def read_key(path: str | os.PathLike[str]) -> bytes:
    """Read a site key written by :func:`generate_key`.

    Raises
    ------
    InputError
        If the file is missing or is not a segkit key.
    """
    path = Path(path)
    try:
        lines = path.read_text().split()
    except OSError as exc:
        raise InputError(str(path), f"cannot read the key file ({exc.strerror or type(exc).__name__})") from None
    except UnicodeDecodeError:
        lines = []
    if len(lines) != 2 or lines[0] != _KEY_HEADER or len(lines[1]) != 2 * KEY_BYTES:
        raise InputError(str(path), "not a segkit key file; create one with `segkit keygen KEY`")
    try:
        return bytes.fromhex(lines[1])
    except ValueError:
        raise InputError(str(path), "not a segkit key file; create one with `segkit keygen KEY`") from None


class Keyring:
    """All keyed replacements derived from one site key.

    Parameters
    ----------
    key:
        The site key bytes (see :func:`read_key`).
    pseudonym_pattern:
        Pattern of patient pseudonyms; ``{hash}`` is replaced by 12 base-32 characters.
    """

    def __init__(self, key: bytes, pseudonym_pattern: str = DEFAULT_PSEUDONYM_PATTERN) -> None:
        if "{hash}" not in pseudonym_pattern:
            raise ValueError("the pseudonym pattern must contain '{hash}'")
        self._key = bytes(key)
        self.pseudonym_pattern = pseudonym_pattern
        # per-instance caches: a series repeats the same patient, study and frame UIDs in every file
        self.uid = lru_cache(maxsize=65536)(self._uid)  # type: ignore[method-assign]
        self.patient = lru_cache(maxsize=4096)(self._patient)  # type: ignore[method-assign]
        self.shift_days = lru_cache(maxsize=4096)(self._shift_days)  # type: ignore[method-assign]
        # the study and series folder names and the dummies (an accession number …) recur in a series too
        self.short = lru_cache(maxsize=65536)(self._short)  # type: ignore[method-assign]

    def digest(self, domain: str, value: str) -> bytes:
        """HMAC-SHA256 of *value* in a separate *domain* (so a UID and an ID never collide)."""
        # hmac.digest: OpenSSL's one-shot HMAC, the same bytes as hmac.new(...).digest() without its Python objects
        return hmac.digest(self._key, f"{domain}\x00{value}".encode("utf-8", "surrogateescape"), "sha256")

    def _short(self, domain: str, value: str, n: int = 12) -> str:
        """A short lower-case base-32 token (for file names and pseudonyms).

        The first *n* characters of the RFC 4648 base-32 text of the digest; up to 16 of them
        depend on its first 10 bytes only, which are encoded directly (``base64.b32encode`` is
        pure Python and encodes all 32).
        """
        digest = self.digest(domain, value)
        if n <= 16:
            bits = int.from_bytes(digest[:10], "big")
            return "".join(_B32[bits >> shift & 31] for shift in _B32_SHIFTS[:n])
        import base64

        return base64.b32encode(digest).decode("ascii")[:n].lower()

    def _uid(self, uid: str) -> str:
        """``2.25.<int>``: a UUID (version 8, RFC 9562) derived from the key and *uid*."""
        b = bytearray(self.digest("uid", uid)[:16])
        b[6] = (b[6] & 0x0F) | 0x80  # version 8 (custom)
        b[8] = (b[8] & 0x3F) | 0x80  # RFC variant
        return f"2.25.{int.from_bytes(b, 'big')}"

    def _patient(self, patient_id: str) -> str:
        """The patient pseudonym used for both PatientName and PatientID."""
        return self.pseudonym_pattern.replace("{hash}", self.short("patient", patient_id).upper())

    def _shift_days(self, patient_id: str) -> int:
        """Days to add to every date of this patient: in ``[-MAX_SHIFT_DAYS, -1]``."""
        n = int.from_bytes(self.digest("date-shift", patient_id)[:8], "big")
        return -(1 + n % MAX_SHIFT_DAYS)

    def dummy(self, domain: str, value: str, n: int = 10) -> str:
        """A stable dummy token for D-action text (e.g. an accession number)."""
        return self.short(domain, value, n).upper()


_B32 = "abcdefghijklmnopqrstuvwxyz234567"  # RFC 4648 base-32, lower case
_B32_SHIFTS = tuple(75 - 5 * i for i in range(16))  # 16 characters of 5 bits from an 80-bit integer


@lru_cache(maxsize=65536)  # a pure function of its arguments; a patient's dates recur in every file
def shift_date(value: str, days: int) -> str | None:
    """Shift a DA value (``YYYYMMDD``; also the legacy ``YYYY.MM.DD``) by *days*.

    Returns ``None`` when *value* is not a date (the caller then removes it).
    """
    v = value.strip().replace(".", "")
    if len(v) != 8 or not v.isdigit():
        return None
    try:
        d = _dt.date(int(v[:4]), int(v[4:6]), int(v[6:8]))
        return (d + _dt.timedelta(days=days)).strftime("%Y%m%d")
    except (ValueError, OverflowError):
        return None


def shift_datetime(value: str, days: int) -> str | None:
    """Shift the date part of a DT value; time of day and UTC offset are kept."""
    v = value.strip()
    if len(v) < 8:
        return None
    head = shift_date(v[:8], days)
    return None if head is None else head + v[8:]
