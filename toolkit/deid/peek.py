"""Read an element's value as pydicom would give it, without converting the stored element.

pydicom converts a raw element on first access and keeps the converted element in the dataset;
the serialiser (:mod:`segkit.deid.serialise`) then writes it through pydicom's writer instead of
copying the bytes as read, which costs about as much again.  The per-file pass reads a dozen
elements before and after the walk (SOP class, Rows, Modality, Patient ID …) only to look at
them, so :func:`value` reads them from the stored bytes when those bytes are *canonical*: one of
the few VRs below, explicit VR, a defined length, printable ASCII and padded exactly as pydicom's
writer pads.  For such bytes the value returned is the one pydicom's conversion gives, pydicom's
writer would write the converted element back byte for byte as stored, and the walk's raw path
(:meth:`segkit.deid.actions.Deidentifier._set`) writes what pydicom's writer would; so leaving the
element raw changes no output byte.  Anything else (other VRs, implicit VR, empty, multi-valued
text but CS, non-ASCII, unusual padding, pydicom configured to convert dates or to raise on
invalid values) goes through pydicom as before.
"""

from __future__ import annotations

import re
from typing import Any

__all__ = ["value", "REQUIRED"]

_UNDEFINED = 0xFFFFFFFF
_MISSING = object()
#: a *default* that makes :func:`value` raise ``AttributeError`` like ``ds.Keyword`` when the element is absent
REQUIRED = object()
#: the pad byte pydicom's writer adds to an odd-length value, per VR handled here
_PAD = {"UI": b"\x00", "CS": b" ", "DA": b" ", "LO": b" ", "SH": b" "}
_ONE_VALUE = re.compile(rb"[\x20-\x5b\x5d-\x7e]*")  # printable ASCII but the value delimiter
_VALUES = re.compile(rb"[\x20-\x7e]*")  # the same, several values (CS only)
_PIXEL_VRS = ("OB", "OW")
_PIXEL_DATA = 0x7FE00010


def value(ds: Any, tag: int, default: Any = None) -> Any:
    """What ``ds.get(<keyword of tag>, default)`` gives, leaving a canonical raw element unconverted.

    A CS value of several values comes back as a list of ``str`` (pydicom: a ``MultiValue`` of
    them); every other value as pydicom's conversion gives it (``str`` for ``UID``).
    """
    raw = ds._dict.get(tag)  # noqa: SLF001 - raw access: the element is not converted
    if raw is None:
        if default is REQUIRED:
            raise AttributeError(f"no element ({tag >> 16:04X},{tag & 0xFFFF:04X})")
        return default
    if raw.is_raw:
        found = _canonical(raw)
        if found is not _MISSING:
            return found
    return ds[tag].value


def _canonical(raw: Any) -> Any:
    """The converted value of *raw* when its bytes are canonical, else ``_MISSING``."""
    vr = raw.VR
    data = raw.value
    if vr is None or not data or raw.length == _UNDEFINED or not isinstance(data, bytes):
        return _MISSING
    if vr == "US":
        if len(data) == 2 and raw.is_little_endian:
            return data[0] | data[1] << 8
        return _MISSING
    if vr in _PIXEL_VRS:
        if raw.tag == _PIXEL_DATA and not len(data) & 1:
            return data  # OB/OW are converted to the bytes themselves; the writer pads an odd length only
        return _MISSING
    pad = _PAD.get(vr)
    if pad is None or not _settings_allow():
        return _MISSING
    stripped = data.rstrip(b" \x00")
    if not stripped or data != stripped + pad * (len(stripped) & 1):
        return _MISSING
    if vr == "CS" and b"\\" in stripped:
        if _VALUES.fullmatch(stripped) is None:
            return _MISSING
        return stripped.decode("ascii").split("\\")
    if _ONE_VALUE.fullmatch(stripped) is None:
        return _MISSING
    return stripped.decode("ascii")


_config: Any = None


def _settings_allow() -> bool:
    """pydicom's defaults: DA values stay text, an invalid value only warns (as the fast path assumes)."""
    global _config
    if _config is None:
        from pydicom import config

        _config = config
    return not _config.datetime_conversion and _config.settings.reading_validation_mode != _config.RAISE
