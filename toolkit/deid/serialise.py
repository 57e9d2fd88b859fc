"""Serialise a de-identified dataset to the bytes of its output file, in memory.

The output is a 128-byte preamble, ``DICM`` and a fresh File Meta Information group (segkit's
implementation UID and version), then the top-level elements in the output transfer syntax,
returned as three parts — everything before the pixel data, the pixel data element, anything
after it — so that the verifier can search every byte but the pixel data value.  Raw elements
that were read in the output transfer syntax and left untouched are copied as read; elements
shared by every file (the de-identification marks) are encoded once per encoding and reused;
everything else goes through pydicom's writer, so the bytes are what pydicom would write.
"""

from __future__ import annotations

from typing import Any

from segkit.deid.peek import REQUIRED, value as peek

__all__ = ["serialise", "IMPLEMENTATION_CLASS_UID", "IMPLEMENTATION_VERSION"]

IMPLEMENTATION_CLASS_UID = "2.25.209542398174519036513416412337935391581"
IMPLEMENTATION_VERSION = "SEGKIT_0_1"
_PIXEL = 0x7FE00010


def _file_meta(sop_class: str, sop_instance: str, ts: str) -> bytes:
    """Preamble, ``DICM`` and a fresh File Meta Information group (explicit VR little endian)."""
    import struct

    def elem(element: int, vr: bytes, value: bytes, pad: bytes) -> bytes:
        if len(value) & 1:
            value += pad
        if vr == b"OB":
            return struct.pack("<HH2s2xL", 2, element, vr, len(value)) + value
        return struct.pack("<HH2sH", 2, element, vr, len(value)) + value

    body = b"".join((
        elem(0x0001, b"OB", b"\x00\x01", b"\x00"),
        elem(0x0002, b"UI", sop_class.encode("ascii"), b"\x00"),
        elem(0x0003, b"UI", sop_instance.encode("ascii"), b"\x00"),
        elem(0x0010, b"UI", ts.encode("ascii"), b"\x00"),
        elem(0x0012, b"UI", IMPLEMENTATION_CLASS_UID.encode("ascii"), b"\x00"),
        elem(0x0013, b"SH", IMPLEMENTATION_VERSION.encode("ascii"), b" "),
    ))
    return b"\x00" * 128 + b"DICM" + struct.pack("<HH2sHL", 2, 0, b"UL", 4, len(body)) + body


def serialise(ds: Any, ts: str, constant: dict[int, tuple[Any, dict[Any, bytes]]] | None = None
              ) -> tuple[bytes, bytes, bytes]:
    """Write *ds* to bytes: ``(everything before the pixel data, pixel data element, anything after)``.

    The pixel data value is kept apart so that the verifier searches everything but it.
    *constant*: ``tag -> (element, cache)`` of elements shared by every file (the de-identification
    marks); their bytes are written once per encoding and reused.
    """
    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_data_element
    from pydicom.uid import UID

    d = ds._dict  # noqa: SLF001
    after = [t for t in d if int(t) > _PIXEL]
    after_elems = {t: d.pop(t) for t in after}
    pixel_tag = next((t for t in d if int(t) == _PIXEL), None)
    pixel = d.pop(pixel_tag) if pixel_tag is not None else None
    uid = UID(ts)
    buf = DicomBytesIO()
    buf.write(_file_meta(str(peek(ds, 0x00080016, REQUIRED)).strip("\x00 "),
                         str(peek(ds, 0x00080018, REQUIRED)).strip("\x00 "), ts))
    buf.is_little_endian = uid.is_little_endian
    buf.is_implicit_VR = uid.is_implicit_VR
    try:
        _write_top_level(buf, ds, constant or {})
    finally:
        if pixel is not None:
            d[pixel_tag] = pixel
        d.update(after_elems)
    header = buf.getvalue()
    little, implicit = uid.is_little_endian, uid.is_implicit_VR
    as_read = ds.original_encoding == (implicit, little)
    encodings: Any = _UNSET
    parts = [b"", b""]
    for i, elems in enumerate(([pixel_tag] if pixel is not None else [], sorted(after, key=int))):
        if not elems:
            continue
        fp = DicomBytesIO()
        fp.is_little_endian = little
        fp.is_implicit_VR = implicit
        for t in elems:
            elem = ds.get_item(t)
            if as_read and (stored := _stored(elem, little, implicit)) is not None:
                fp.write(stored)  # what write_data_element writes for this raw element, without its buffers
                continue
            if encodings is _UNSET:
                encodings = ds.get("SpecificCharacterSet", None) or None
            write_data_element(fp, elem, encodings)
        parts[i] = fp.getvalue()
    return header, parts[0], parts[1]


_UNSET = object()


def _stored(elem: Any, little: bool, implicit: bool) -> bytes | None:
    """Tag, VR, length and value of a raw element read in this encoding (the pixel data, mostly), else ``None``.

    Only a raw element with a known VR (or implicit VR) and a defined length: pydicom's
    ``write_data_element`` writes such an element's bytes as read, after the same header.
    """
    if not elem.is_raw or elem.length == 0xFFFFFFFF or elem.VR in ("SQ", "UN") or (elem.VR is None and not implicit):
        return None
    import struct

    value = elem.value
    if not isinstance(value, bytes):
        return None
    e = "<" if little else ">"
    tag = elem.tag
    if implicit:
        return struct.pack(f"{e}HHL", tag >> 16, tag & 0xFFFF, len(value)) + value
    if elem.VR in _LONG_VRS:
        return struct.pack(f"{e}HH2s2xL", tag >> 16, tag & 0xFFFF, elem.VR.encode(), len(value)) + value
    if len(value) <= 0xFFFF:
        return struct.pack(f"{e}HH2sH", tag >> 16, tag & 0xFFFF, elem.VR.encode(), len(value)) + value
    return None


_LONG_VRS = {"OB", "OD", "OF", "OL", "OV", "OW", "SQ", "SV", "UC", "UN", "UR", "UT", "UV"}


def _write_top_level(fp: Any, ds: Any, constant: dict[int, tuple[Any, dict[Any, bytes]]] | None = None) -> None:
    """pydicom's ``write_dataset`` for the top level, with a fast path for untouched raw elements.

    A raw element that was read in this transfer syntax, has a defined length and is not a
    sequence is copied as tag + VR + length + the bytes read; an element of *constant* (the
    same object in every file) is written by pydicom once per encoding and its bytes reused;
    everything else (changed or converted elements, sequences) goes through pydicom's
    ``write_data_element``.
    """
    import struct

    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_data_element

    d = ds._dict  # noqa: SLF001
    little, implicit = fp.is_little_endian, fp.is_implicit_VR
    if ds.original_encoding != (implicit, little) or ds.original_character_set != ds._character_set:  # noqa: SLF001
        from pydicom.filewriter import write_dataset

        write_dataset(fp, ds)
        return
    e = "<" if little else ">"
    short_head = struct.Struct(f"{e}HH2sH")
    long_head = struct.Struct(f"{e}HH2s2xL")
    implicit_head = struct.Struct(f"{e}HHL")
    encodings = ds.get("SpecificCharacterSet", None) or None
    write = fp.write
    for tag in sorted(d, key=int):
        if tag & 0xFFFF == 0 and tag >> 16 > 6:
            continue
        elem = d[tag]
        vr = elem.VR
        if elem.is_raw and vr not in ("SQ", "UN") and elem.length != 0xFFFFFFFF and (vr is not None or implicit):
            value = elem.value or b""
            if implicit:
                write(implicit_head.pack(tag >> 16, tag & 0xFFFF, len(value)))
            elif vr in _LONG_VRS:
                write(long_head.pack(tag >> 16, tag & 0xFFFF, vr.encode(), len(value)))
            elif len(value) <= 0xFFFF:
                write(short_head.pack(tag >> 16, tag & 0xFFFF, vr.encode(), len(value)))
            else:
                write_data_element(fp, elem, encodings)
                continue
            write(value)
        elif constant and (shared := constant.get(tag)) is not None and shared[0] is elem:
            key = (little, implicit, repr(encodings))
            encoded = shared[1].get(key)
            if encoded is None:
                one = DicomBytesIO()
                one.is_little_endian, one.is_implicit_VR = little, implicit
                write_data_element(one, elem, encodings)
                encoded = shared[1][key] = one.getvalue()
            write(encoded)
        else:  # a raw element read without a VR (implicit data under an explicit syntax) is converted first
            write_data_element(fp, ds[tag] if elem.is_raw and vr is None else ds.get_item(tag), encodings)
