"""Read an element's value (or a sequence's items) as pydicom would give it, without converting the stored element.

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

__all__ = ["value", "REQUIRED", "sequence_items"]

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


_PIXEL_REPRESENTATION = 0x00280103


def sequence_items(ds: Any, raw: Any) -> Any:
    """The items of the raw sequence element *raw* of *ds*, read as ``ds[tag].value`` reads them; ``None`` if not
    possible.

    For a sequence the walk removes: its items are walked for the identifiers they hold, then the
    element is deleted, so converting it (pydicom's hooks, a ``DataElement``, ``__setitem__``)
    is wasted work.  The items are read by the same ``read_sequence`` call pydicom's conversion
    makes, and what that conversion does to *ds* besides is repeated: the pixel representation
    handed to the items (``_pixel_rep``) and *ds*'s Pixel Representation read, left raw when
    canonical (see :func:`value`).  Anything else (an implicit VR or deferred element, an error
    while reading) returns ``None``: the caller converts the element as before.
    """
    data = raw.value
    if not raw.is_raw or raw.VR != "SQ" or raw.is_implicit_VR or not isinstance(data, bytes):
        return None
    from io import BytesIO

    from pydicom.filereader import read_sequence

    try:
        encodings = ds.original_character_set or ds._character_set  # noqa: SLF001 - as Dataset.__getitem__
        if isinstance(encodings, str):
            encodings = [encodings]
        items = read_sequence(BytesIO(data), False, raw.is_little_endian, len(data),
                              encodings or ["iso8859"], raw.value_tell)
    except Exception:  # noqa: BLE001 - pydicom's conversion retries other VRs, or raises: let it
        return None
    # Dataset._set_pixel_representation, with Pixel Representation read through value()
    if _PIXEL_REPRESENTATION in ds._dict:  # noqa: SLF001
        pr = value(ds, _PIXEL_REPRESENTATION)
    else:
        pr = getattr(ds, "_pixel_rep", None)
    if pr is not None:
        ds._pixel_rep = int(b"\x01" in pr) if isinstance(pr, bytes) else pr  # noqa: SLF001
    for item in items:
        if _PIXEL_REPRESENTATION in item._dict:  # noqa: SLF001
            pr = item._dict[_PIXEL_REPRESENTATION].value  # noqa: SLF001
            if pr is not None:
                item._pixel_rep = int(b"\x01" in pr) if isinstance(pr, bytes) else pr  # noqa: SLF001
        elif hasattr(ds, "_pixel_rep"):
            item._pixel_rep = ds._pixel_rep  # noqa: SLF001
    return items
