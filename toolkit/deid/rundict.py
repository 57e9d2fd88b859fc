"""One run, one dictionary: the names, IDs and UIDs of every input, gathered in a header-only first pass.

Each file is verified against its own identifiers (:mod:`segkit.deid.verify`) and, with this
dictionary, against every other input's too, so patient A's name planted in patient B's file is
found.  Dates are left out on purpose: another patient's original date is often a shifted date
of this one by coincidence.  The first pass reads the common file's header straight from its
bytes (no pydicom dataset is built: about a quarter of pydicom's CPU), and any other file
through pydicom, with the same result.  The search is a set lookup of the output's word tokens, then an
exact, bounded match for the few identifiers whose longest word occurred, so its cost does not
grow with the number of patients.
"""

from __future__ import annotations

import re
import struct
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Iterable

from segkit.deid.verify import MIN_TEXT, Scan, name_variants

__all__ = ["RunDictionary", "gather_identifiers", "build_run_dictionary", "retained_tokens"]

#: identifying IDs (top level or nested): patient IDs, other IDs, accession, MRN-like numbers
_ID_KEYWORDS = {0x00100020, 0x00101000, 0x00080050, 0x00401001, 0x00321032, 0x00380010, 0x00401000}
_TOKEN = re.compile(rb"[a-z0-9\x80-\xff]+")
#: values segkit writes itself (dummies) and the placeholder words test files put in name fields
#: ("Test", "Name", "Anonymous"): words, not identifiers of a person, when found in another file
_OWN = {b"anonymous", b"anonymized", b"anonymised", b"test", b"name", b"patient", b"unknown", b"phantom",
        b"none", b"demo", b"sample", b"first", b"last", b"given", b"family", b"s r test"}


def _vr(tag: int, raw: Any) -> str:
    if raw.VR:
        return raw.VR
    from pydicom.datadict import dictionary_VR

    try:
        return dictionary_VR(tag)
    except KeyError:
        return "UN"


_Found = tuple[frozenset[str], frozenset[str], frozenset[str]]


def gather_identifiers(path: str) -> _Found:
    """``(names, ids, uids)`` of one file, read without its pixel data (empty sets if unreadable).

    The common file (Part 10, explicit VR little endian, a single-byte or UTF-8 character set)
    is scanned straight from its bytes (:func:`_scan_identifiers`); anything else goes through
    pydicom (:func:`_read_identifiers`).  Both give the same sets.
    """
    found = _scan_identifiers(path)
    return found if found is not None else _read_identifiers(path)


def _read_identifiers(path: str) -> _Found:
    """:func:`gather_identifiers` through pydicom (any file pydicom reads)."""
    import warnings

    import pydicom
    from pydicom.uid import UID_dictionary

    names: set[str] = set()
    ids: set[str] = set()
    uids: set[str] = set()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(path, stop_before_pixels=True, force=True)

            def walk(d: Any) -> None:
                for tag, raw in list(d._dict.items()):  # noqa: SLF001 - raw access: only what is needed is decoded
                    if tag >> 16 & 1 or tag >> 16 == 2:
                        continue
                    vr = _vr(tag, raw)
                    if vr == "SQ":
                        for item in d[tag].value:
                            walk(item)
                    elif vr == "PN" or vr == "UI" or tag in _ID_KEYWORDS:
                        value = d[tag].value
                        if value is None or value == "":
                            continue
                        values = value if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue" \
                            else [value]
                        for v in values:
                            s = str(v).strip("\x00 ")
                            if vr == "PN":
                                forms, comps = name_variants(s)
                                names.update(f for f in forms + comps if len(f) >= MIN_TEXT)
                            elif vr == "UI":
                                if len(s) >= 8 and s not in UID_dictionary:
                                    uids.add(s)
                            elif len(s) >= MIN_TEXT:
                                ids.add(s)

            walk(ds)
    except Exception:  # noqa: BLE001 - an unreadable file adds nothing (it is quarantined later)
        pass
    return frozenset(names), frozenset(ids), frozenset(uids)


# ------------------------------------------------------------ the raw scan (pass 1's fast path)
_UNDEFINED = 0xFFFFFFFF
_ITEM, _ITEM_END, _SEQ_END = 0xFFFEE000, 0xFFFEE00D, 0xFFFEE0DD
_PIXEL_TAGS = frozenset({0x7FE00008, 0x7FE00009, 0x7FE00010})  # where pydicom's stop_before_pixels stops
_LONG_VRS = frozenset({b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"})
_SHORT_VRS = frozenset({b"AE", b"AS", b"AT", b"CS", b"DA", b"DS", b"DT", b"FD", b"FL", b"IS", b"LO", b"LT",
                        b"PN", b"SH", b"SL", b"SS", b"ST", b"TM", b"UI", b"UL", b"US"})
#: VRs an ID of _ID_KEYWORDS is read from as text on the fast path (anything else: pydicom)
_ID_TEXT_VRS = frozenset({b"LO", b"SH", b"LT", b"ST", b"UT", b"UC", b"CS", b"AE"})
#: Specific Character Set values whose text is one Python codec (as pydicom decodes it)
_SCAN_CODECS = {"": "latin-1", "ISO_IR 6": "latin-1", "ISO_IR 100": "latin-1", "ISO_IR 192": "utf-8"}
_NOT_EXPLICIT_LE = frozenset({"1.2.840.10008.1.2", "1.2.840.10008.1.2.2", "1.2.840.10008.1.2.1.99"})
_SCAN_HEAD = 1 << 20  # bytes read at first: the header of nearly every file (pixel data is not needed)


_HEAD = struct.Struct("<HH2sH").unpack_from  # group, element, VR, 16-bit length
_LONG_LENGTH = struct.Struct("<L").unpack_from


class _Unscannable(Exception):
    """The raw scan met something it leaves to pydicom."""


def _scan_identifiers(path: str) -> _Found | None:
    """:func:`gather_identifiers` from the raw bytes, or None when the file needs pydicom.

    Walks the elements as stored (tag, VR, length) without building a dataset: sequences
    (defined or undefined length) are entered, private groups skipped, only PN, UI and the ID
    elements are decoded, and the scan ends at the pixel data, like the pydicom reading it
    replaces.  Implicit VR, big endian, deflated, a character set other than the default,
    Latin-1 or UTF-8 (ISO 2022 …), a character set inside a sequence item, an ID element stored
    as UN, undefined-length non-sequence elements, a header longer than the first read and
    anything malformed return None.
    """
    try:
        with open(path, "rb") as fh:
            buf = fh.read(_SCAN_HEAD)
            complete = len(buf) < _SCAN_HEAD or not fh.read(1)
        if len(buf) < 132 or buf[128:132] != b"DICM":
            return None
        pos, ts = _scan_meta(buf)
        if ts is None or ts in _NOT_EXPLICIT_LE:
            return None
        found: list[tuple[bytes, int, bytes]] = []
        charset: list[bytes] = []
        _scan_dataset(buf, pos, len(buf), found, charset, top=True, complete=complete)
    except (_Unscannable, OSError, ValueError, IndexError, struct.error):
        return None
    codec = _SCAN_CODECS.get(charset[0].decode("ascii", "replace").strip("\x00 ") if charset else "")
    if codec is None:
        return None
    from pydicom.uid import UID_dictionary

    names: set[str] = set()
    ids: set[str] = set()
    uids: set[str] = set()
    for vr, tag, value in found:
        if vr == b"UI":
            for v in value.decode("ascii", "replace").split("\\"):
                v = v.strip("\x00 ")
                if len(v) >= 8 and v not in UID_dictionary:
                    uids.add(v)
            continue
        for v in value.decode(codec, "replace").split("\\"):
            v = v.strip("\x00 ")
            if vr == b"PN":
                names.update(_name_words(v))
            elif len(v) >= MIN_TEXT:
                ids.add(v)
    return frozenset(names), frozenset(ids), frozenset(uids)


@lru_cache(maxsize=16384)  # a patient's names recur in every file of the patient
def _name_words(pn: str) -> tuple[str, ...]:
    """The forms and components of a person name searched for (:func:`~segkit.deid.verify.name_variants`)."""
    forms, comps = name_variants(pn)
    return tuple(f for f in forms + comps if len(f) >= MIN_TEXT)


def _scan_meta(buf: bytes) -> tuple[int, str | None]:
    """Skip the File Meta Information (group 2, always explicit VR little endian); its transfer syntax."""
    pos, ts = 132, None
    while pos + 8 <= len(buf):
        group, element = struct.unpack_from("<HH", buf, pos)
        if group != 2:
            break
        vr = buf[pos + 4:pos + 6]
        if vr in _LONG_VRS:
            (length,) = struct.unpack_from("<L", buf, pos + 8)
            head = 12
        elif vr in _SHORT_VRS:
            (length,) = struct.unpack_from("<H", buf, pos + 6)
            head = 8
        else:
            raise _Unscannable
        if length == _UNDEFINED or pos + head + length > len(buf):
            raise _Unscannable
        if element == 0x0010:
            ts = buf[pos + head:pos + head + length].decode("ascii", "replace").strip("\x00 ")
        pos += head + length
    return pos, ts


def _scan_dataset(buf: bytes, pos: int, end: int, found: list[tuple[bytes, int, bytes]], charset: list[bytes],
                  *, top: bool = False, complete: bool = True, gather: bool = True, item: bool = False) -> int:
    """Scan the elements of one dataset from *pos* to *end* (or its item delimiter); the position after it."""
    head, long_length = _HEAD, _LONG_LENGTH
    size = len(buf)
    while pos < end:
        if pos + 8 > size:
            if top and complete and pos == size:
                return pos
            raise _Unscannable  # truncated, or a header longer than what was read
        group, element, vr, length = head(buf, pos)  # tag, VR and the short form's length in one unpack
        tag = group << 16 | element
        if tag == _ITEM_END:
            if not item:
                raise _Unscannable
            return pos + 8
        if top and tag in _PIXEL_TAGS:
            return pos
        if vr in _LONG_VRS:
            if pos + 12 > size:
                raise _Unscannable
            (length,) = long_length(buf, pos + 8)
            start = pos + 12
        elif vr in _SHORT_VRS:
            start = pos + 8
        else:
            raise _Unscannable
        skip = group & 1 or group == 2 or not gather
        if vr == b"SQ":
            pos = _scan_sequence(buf, start, length, found, charset, gather=not skip)
            continue
        if length == _UNDEFINED:
            raise _Unscannable  # an undefined-length UN (implicit sequence) or encapsulated data outside pixels
        pos = start + length
        if pos > size:
            raise _Unscannable
        if skip:
            continue
        if tag == 0x00080005:
            if not top:
                raise _Unscannable  # a character set of its own inside an item
            charset.append(buf[start:pos])
        elif vr == b"PN" or vr == b"UI":
            if length:
                found.append((vr, tag, buf[start:pos]))
        elif tag in _ID_KEYWORDS:
            if vr not in _ID_TEXT_VRS:
                raise _Unscannable
            if length:
                found.append((vr, tag, buf[start:pos]))
        # anything else (a public UN included: pydicom keeps its stored VR, which is not PN or UI) holds no
        # identifier of the dictionary
    if top and not complete:
        raise _Unscannable  # the header goes on past what was read
    if pos != end and end != size:
        raise _Unscannable
    return pos


def _scan_sequence(buf: bytes, pos: int, length: int, found: list[tuple[bytes, int, bytes]], charset: list[bytes],
                   *, gather: bool) -> int:
    end = None if length == _UNDEFINED else pos + length
    if end is not None and end > len(buf):
        raise _Unscannable
    while end is None or pos < end:
        if pos + 8 > len(buf):
            raise _Unscannable
        tag_group, tag_element, item_length = struct.unpack_from("<HHL", buf, pos)
        tag = tag_group << 16 | tag_element
        pos += 8
        if tag == _SEQ_END:
            if end is not None:
                raise _Unscannable
            return pos
        if tag != _ITEM:
            raise _Unscannable
        if item_length == _UNDEFINED:
            pos = _scan_dataset(buf, pos, len(buf) + 1, found, charset, gather=gather, item=True)
        else:
            item_end = pos + item_length
            if item_end > len(buf):
                raise _Unscannable
            _scan_dataset(buf, pos, item_end, found, charset, gather=gather)
            pos = item_end
    if pos != end:
        raise _Unscannable
    return pos


@dataclass
class RunDictionary:
    """The identifiers of every input of a run, searchable in an output's bytes."""

    index: dict[bytes, frozenset[bytes]] = field(default_factory=dict)
    uids: frozenset[bytes] = frozenset()
    size: int = 0

    @classmethod
    def of(cls, names: Iterable[str], ids: Iterable[str], uids: Iterable[str]) -> "RunDictionary":
        index: dict[bytes, set[bytes]] = {}
        count = 0
        for value in set(names) | set(ids):
            for enc in ("utf-8", "latin-1"):
                try:
                    b = value.lower().encode(enc)
                except UnicodeError:
                    continue
                tokens = _TOKEN.findall(b)
                if not tokens or b in _OWN or all(t in _OWN for t in tokens):
                    continue
                key = max(tokens, key=len)
                if len(key) < MIN_TEXT:
                    continue
                index.setdefault(key, set()).add(b)
                count += 1
        return cls({k: frozenset(v) for k, v in index.items()}, frozenset(u.encode("ascii", "replace") for u in uids),
                   count)

    def leaks(self, data: "bytes | memoryview | Scan", retained: frozenset[bytes] = frozenset()) -> bool:
        """True when an identifier of any input occurs in *data* as a whole word (or a UID as a whole UID).

        *retained*: the words of the structural text this file keeps by the profile (Manufacturer,
        Code Meaning …); another input's name made only of such words is a word of the study here.
        """
        scan = Scan.of(data)
        low = scan.low
        if self.uids and scan.holds_uid(self.uids):
            return True
        if not self.index:
            return False
        candidates = set()
        for token in scan.words():  # the set of _TOKEN.findall(low)
            hit = self.index.get(token)
            if hit:
                candidates |= hit
        for ident in candidates:
            if retained and all(t in retained for t in _TOKEN.findall(ident)):
                continue
            if _bounded(ident).search(low):
                return True
        return False


@lru_cache(maxsize=4096)
def _bounded(ident: bytes) -> re.Pattern[bytes]:
    """*ident* as a whole word (a number: not inside a longer number), compiled once per process."""
    left = rb"(?<![0-9])" if ident.isdigit() else rb"(?<![a-z0-9_])"
    right = rb"(?![0-9])" if ident.isdigit() else rb"(?![a-z0-9_])"
    return re.compile(left + re.escape(ident) + right)


def build_run_dictionary(paths: list[str], workers: int, *, keep_uids: bool = False) -> RunDictionary:
    """Read every file's header once (in *workers* processes) and index all identifiers found.

    With *keep_uids* (the Retain UIDs option) the inputs' UIDs are legitimately in the output
    and are not searched.
    """
    names: set[str] = set()
    ids: set[str] = set()
    uids: set[str] = set()
    if workers <= 1 or len(paths) < 64:
        results: Iterable[tuple[frozenset[str], frozenset[str], frozenset[str]]] = map(gather_identifiers, paths)
        for n, i, u in results:
            names |= n
            ids |= i
            uids |= u
    else:
        from segkit.workers import die_with_parent

        with ProcessPoolExecutor(max_workers=workers, initializer=die_with_parent) as pool:
            for n, i, u in pool.map(gather_identifiers, paths, chunksize=max(1, min(256, len(paths) // (workers * 4)))):
                names |= n
                ids |= i
                uids |= u
    return RunDictionary.of(names, ids, () if keep_uids else uids)


def retained_tokens(values: Iterable[str]) -> frozenset[bytes]:
    """The word tokens of a file's kept structural values (see :meth:`RunDictionary.leaks`)."""
    out: set[bytes] = set()
    for v in values:
        out.update(_TOKEN.findall(v.lower().encode("utf-8", "replace")))
    return frozenset(out)
