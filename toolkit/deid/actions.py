"""One walk over a dataset (nested sequences included) applying the profile's action to each element.

The walk also gathers the identifying values it removes or replaces (for the clean action
on free text, and for the verifier); elements the profile keeps are never decoded.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from pydicom.datadict import dictionary_VR
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence
from pydicom.uid import UID_dictionary

from segkit.deid.peek import sequence_items
from segkit.deid.profile import Profile
from segkit.deid.pseudonym import Keyring, shift_date, shift_datetime
from segkit.deid.verify import PhiCollector

__all__ = ["Deidentifier", "WalkResult"]

_TEXT_GATHER = {"AE", "AS", "LO", "LT", "SH", "ST", "UC", "UR", "UT"}  # CS: enumerated codes, not identifiers
_STR_VRS = {"AE", "AS", "CS", "DA", "DS", "DT", "IS", "LO", "LT", "PN", "SH", "ST", "TM", "UC", "UI", "UR", "UT"}
_MAX_LEN = {"AE": 16, "CS": 16, "SH": 16, "LO": 64, "PN": 64, "DS": 16, "IS": 12, "UI": 64}
_DUMMY_NUMERIC = {"IS": "0", "DS": "0"}
_SCRUB = "***"
_VR_CACHE: dict[int, str] = {}


def _dict_vr(tag: int) -> str:
    vr = _VR_CACHE.get(tag)
    if vr is None:
        try:
            vr = dictionary_VR(tag)
        except KeyError:
            vr = "UN"
        _VR_CACHE[tag] = vr
    return vr


_CODECS = {"": "latin-1", "ISO_IR 6": "latin-1", "ISO_IR 100": "latin-1", "ISO_IR 192": "utf-8",
           "ISO_IR 101": "iso8859-2", "ISO_IR 144": "iso8859-5", "ISO_IR 148": "iso8859-9"}


def _codec_of(ds: Dataset) -> str | None:
    """Python codec of a dataset's single (non-ISO 2022) character set, else None."""
    raw = ds._dict.get(0x00080005)  # noqa: SLF001
    if raw is None:
        return "latin-1"
    value = raw.value if raw.is_raw else "\\".join(ds.SpecificCharacterSet) if isinstance(
        ds.SpecificCharacterSet, (list, MultiValue)) else ds.SpecificCharacterSet
    if isinstance(value, bytes):
        value = value.decode("ascii", "replace")
    return _CODECS.get(str(value or "").strip("\x00 "))


def _as_str(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, (MultiValue, list, tuple)):
        return "\\".join(str(v) for v in value)
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).decode("latin-1")
    return str(value)


@dataclass
class WalkResult:
    """What the walk did to one dataset (no PHI: counts only)."""

    patient_key: str = ""
    shift: int | None = None
    counts: Counter[str] = field(default_factory=Counter)
    collector: PhiCollector = field(default_factory=PhiCollector)
    to_clean: list[tuple[Dataset, int, str]] = field(default_factory=list)


class Deidentifier:
    """Applies one resolved profile with one site key; built once per worker process.

    Parameters
    ----------
    profile:
        The resolved profile (see :func:`segkit.deid.profile.load_profile`).
    keyring:
        Keyed replacements derived from the site key.
    """

    def __init__(self, profile: Profile, keyring: Keyring) -> None:
        self.profile = profile
        self.keyring = keyring
        self.actions = profile.actions
        self._rule_cache: dict[tuple[int, str], str] = {}
        self._shift = "retain_modified_dates" in profile.options
        self._full_dates = "retain_full_dates" in profile.options
        self._retain_uids = "retain_uids" in profile.options
        self._safe_private = "retain_safe_private" in profile.options
        self._clean_desc = "clean_descriptors" in profile.options
        self._codec: str | None = "latin-1"

    # ------------------------------------------------------------------ rules
    def _rule(self, tag: int, vr: str) -> str:
        """Action for an attribute the table does not list (see segkit-rules.json)."""
        key = (tag, vr)
        action = self._rule_cache.get(key)
        if action is not None:
            return action
        group = tag >> 16
        p = self.profile
        if 0x5000 <= group <= 0x501E or 0x6000 <= group <= 0x601E:
            action = "X"  # curves and overlays
            for mask, value, act in p.repeating:
                if tag & mask == value:
                    action = act if act != "K" else "X"
        elif group == 0xFFFA or tag == 0xFFFCFFFC:
            action = "X"
        elif vr == "SQ":
            action = "K"
        elif vr == "UI":
            action = "UI?"  # decided by value: registered UIDs are kept
        elif vr in ("DA", "DT"):
            action = "K" if self._full_dates else ("C" if self._shift else "X")
        elif vr in p.text_vrs:
            if tag in p.keep_text:
                action = "R"  # kept, value recorded as legitimately retained
            elif tag in p.clean_text and self._clean_desc:
                action = "C"
            else:
                action = "X"
        else:
            action = "K"
        self._rule_cache[key] = action
        return action

    # ------------------------------------------------------------------ walk
    def walk(self, ds: Dataset, patient_key: str, result: WalkResult) -> None:
        """De-identify *ds* in place (one pass, nested sequences included)."""
        result.patient_key = patient_key
        result.shift = self.keyring.shift_days(patient_key) if self._shift else None
        self._codec = _codec_of(ds)
        self._walk(ds, result)

    def charset(self, ds: Dataset) -> str | tuple[str, ...]:
        """How the file encodes text (for the verifier): a Python codec, or its ISO 2022 terms."""
        if self._codec is not None:
            return self._codec
        value = ds.get("SpecificCharacterSet") or "ISO_IR 6"
        return tuple(value) if isinstance(value, (list, MultiValue)) else (str(value),)

    # Values are read and written straight from/to the raw bytes when the character set is a
    # single-byte or UTF-8 one (no pydicom element conversion: the walk's hot path); other
    # character sets go through pydicom's conversion.
    def _text(self, ds: Dataset, tag: int, raw: Any, vr: str) -> str:
        if raw.is_raw and self._codec is not None and vr in _STR_VRS:
            v = raw.value
            return v.decode(self._codec, "replace").rstrip("\x00 ") if v else ""
        return _as_str(ds[tag].value)

    def _set(self, ds: Dataset, tag: int, raw: Any, vr: str, text: str | None) -> None:
        if raw.is_raw and self._codec is not None and vr in _STR_VRS:
            b = text.encode(self._codec, "replace") if text else b""
            if len(b) & 1:
                b += b"\x00" if vr == "UI" else b" "
            ds._dict[tag] = raw._replace(value=b, length=len(b))  # noqa: SLF001
        else:
            ds[tag].value = text

    def _walk(self, ds: Dataset, r: WalkResult) -> None:
        patient_key, shift = r.patient_key, r.shift
        d = ds._dict  # noqa: SLF001 - raw access keeps kept elements undecoded (fast path)
        counts = r.counts
        col = r.collector
        private_seen = False
        for tag in list(d):
            raw = d[tag]
            group = tag >> 16
            if group & 1:
                private_seen = True
                continue
            if tag & 0xFFFF == 0:  # group length: recomputed or meaningless after changes
                del d[tag]
                continue
            vr = raw.VR or _dict_vr(tag)
            action = self.actions.get(int(tag))  # int keys: BaseTag.__eq__ is Python-level
            if action is None:
                action = self._rule(int(tag), vr)
            if action == "K":
                if vr == "SQ":
                    for item in ds[tag].value:
                        self._walk(item, r)
                continue
            if action == "R":  # structural text kept (Manufacturer, CodeMeaning …), still scrubbed
                if raw.value:
                    r.to_clean.append((ds, tag, vr))
                continue
            if vr == "SQ" or not raw.is_raw and raw.VR == "SQ":
                # gather everything identifying inside, then apply the action to the sequence (one that is
                # removed is read without being converted)
                items = sequence_items(ds, raw) if action == "X" else None
                if items is None:
                    elem = ds[tag]
                    items = elem.value
                for item in items:
                    self._walk(item, r)
                if action == "X":
                    del d[tag]
                elif action == "Z":
                    elem.value = Sequence()
                counts[action] += 1
                continue
            if vr not in _STR_VRS:
                elem = ds[tag]
                vr = elem.VR
                if vr == "SQ":  # an implicit-VR UN that pydicom resolved to a sequence
                    for item in elem.value:
                        self._walk(item, r)
                    if action in ("X", "Z"):
                        del d[tag]
                    counts[action] += 1
                    continue
            text = self._text(ds, tag, d[tag], vr)
            raw = d[tag]
            if action == "UI?":
                if not text or all(v in UID_dictionary for v in text.split("\\")):
                    continue
                action = "K" if self._retain_uids else "U"
                if action == "K":
                    continue
            counts[action] += 1
            if action == "C":
                self._clean(ds, tag, raw, vr, text, shift, r)
                continue
            self._gather(vr, text, col)
            if action == "X":
                del d[tag]
            elif action == "Z":
                if vr in _STR_VRS:
                    self._set(ds, tag, raw, vr, None)
                else:
                    ds[tag].value = b"" if vr in ("OB", "OW", "UN") else None
            elif action == "U":
                if text:
                    self._set(ds, tag, raw, vr, "\\".join(self.keyring.uid(v.strip("\x00 "))
                                                          for v in text.split("\\")))
            elif action == "P":
                self._set(ds, tag, raw, vr, self.keyring.patient(patient_key))
            elif action == "D":
                dummy = self._dummy(tag, vr, text, shift)
                if vr in _STR_VRS:
                    self._set(ds, tag, raw, vr, dummy)
                else:
                    ds[tag].value = dummy
        if private_seen:
            self._private(ds, d, r)

    def _gather(self, vr: str, text: str, col: PhiCollector) -> None:
        if not text:
            return
        if vr == "PN":
            col.add_name(text)
        elif vr in ("DA", "DT"):
            col.add_date(text)
        elif vr == "UI":
            col.add_uid(text)
        elif vr in _TEXT_GATHER:
            col.add_text(text)
        elif vr in ("UN", "OB"):
            col.add_opaque(text.encode("latin-1"))

    def _dummy(self, tag: int, vr: str, text: str, shift: int | None) -> Any:
        if vr == "UI":
            return "\\".join(self.keyring.uid(v.strip("\x00 ")) for v in text.split("\\")) if text else None
        if vr == "DA":
            return (shift_date(text, shift) if shift is not None else None) or "19000101"
        if vr == "DT":
            return (shift_datetime(text, shift) if shift is not None else None) or "19000101000000"
        if vr == "TM":
            return "000000"
        if vr == "PN":
            return "ANONYMOUS"
        if vr in _DUMMY_NUMERIC:
            return _DUMMY_NUMERIC[vr]
        if vr in _STR_VRS:
            return self.keyring.dummy(f"dummy-{tag:08X}", text, min(10, _MAX_LEN.get(vr, 10)))
        if vr in ("US", "SS", "UL", "SL", "FL", "FD", "SV", "UV"):
            return 0
        return None

    def _clean(self, ds: Dataset, tag: int, raw: Any, vr: str, text: str, shift: int | None,
               r: WalkResult) -> None:
        col = r.collector
        if vr in ("DA", "DT"):
            col.add_date(text)
            if not text:
                return
            values = []
            for v in text.split("\\"):
                new = (shift_date if vr == "DA" else shift_datetime)(v, shift) if shift is not None else None
                if new is None:
                    del ds._dict[tag]  # noqa: SLF001
                    r.counts["X"] += 1
                    return
                values.append(new)
            self._set(ds, tag, raw, vr, "\\".join(values))
        elif vr == "TM":
            return  # a day shift keeps the time of day
        elif vr == "PN":
            col.add_name(text)
            self._set(ds, tag, raw, vr, "ANONYMOUS" if text else None)
        elif vr in _TEXT_GATHER or vr in ("UN", "CS"):
            if text:
                r.to_clean.append((ds, tag, vr))
        elif vr == "UI":
            col.add_uid(text)
            if text:
                self._set(ds, tag, raw, vr, "\\".join(self.keyring.uid(v.strip("\x00 ")) for v in text.split("\\")))

    def finish_cleaning(self, r: WalkResult) -> None:
        """Scrub the file's identifiers out of the free text kept by the clean action."""
        if not r.to_clean:
            return
        pattern = r.collector.scrubber()
        for ds, tag, vr in r.to_clean:
            raw = ds._dict[tag]  # noqa: SLF001
            text = self._text(ds, tag, raw, vr)
            new = pattern(text, "X" if vr == "CS" else _SCRUB) if pattern is not None else text
            if new != text:
                r.counts["C"] += 1
                limit = _MAX_LEN.get(vr)
                new = new[:limit] if limit else new
                self._set(ds, tag, raw, vr, new)
            # kept by the profile: a removed private element holding the same text is not a leak
            r.collector.add_retained(new)
            if tag in self.profile.keep_text:
                r.collector.structural.add(new)

    # ------------------------------------------------------------------ private
    def _private(self, ds: Dataset, d: dict[int, Any], r: WalkResult) -> None:
        """Remove private elements, except allow-listed ones with the Retain Safe Private option."""
        col = r.collector
        keep_blocks: set[int] = set()
        creators: dict[int, str] = {}
        if self._safe_private and self.profile.safe_private:
            for tag in d:
                if tag >> 16 & 1 and 0x10 <= tag & 0xFFFF <= 0xFF:
                    creators[tag] = _as_str(ds[tag].value).strip()
        for tag in [t for t in d if t >> 16 & 1]:
            el = tag & 0xFFFF
            if el < 0x10 or 0x10 <= el <= 0xFF:
                continue  # creators are handled below
            creator_tag = (tag & 0xFFFF0000) | (el >> 8)
            creator = creators.get(creator_tag)
            if creator is not None and (creator, el & 0xFF) in self.profile.safe_private:
                keep_blocks.add(creator_tag)
                r.counts["K"] += 1
                raw = d[tag]
                if (raw.VR or "") == "SQ" or (raw.VR is None and isinstance(getattr(raw, "value", None), Sequence)):
                    for item in ds[tag].value:
                        self._walk(item, r)
                continue
            raw = d[tag]
            value = raw.value
            if isinstance(value, (bytes, bytearray)):
                col.add_opaque(bytes(value))
            elif isinstance(value, Sequence):
                for item in value:
                    self._walk(item, r)
            elif value is not None:
                col.add_opaque(_as_str(value).encode("latin-1", "replace"))
            del d[tag]
            r.counts["X"] += 1
        for tag in [t for t in d if t >> 16 & 1 and (t & 0xFFFF) <= 0xFF]:
            if tag not in keep_blocks:  # creators of removed blocks, private group lengths
                del d[tag]
