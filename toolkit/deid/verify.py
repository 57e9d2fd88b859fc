"""Collect a file's identifying values and prove that none of them survives in the output bytes.

The collector records every value of every PHI-bearing element of the input (names, IDs,
dates, UIDs, addresses, free text, private text) in the forms it can take in a file:

- padded or not (values are stripped; the search is on the bare value);
- person names as stored (``Doe^John``) and as people write them (``John Doe``,
  ``Doe, John``, ``Doe John``) and each name component of 4+ characters (all three
  component groups: alphabetic, ideographic, phonetic);
- dates as ``YYYYMMDD`` (also as the head of a DT value) and as ``YYYY-MM-DD``,
  ``YYYY.MM.DD``, ``YYYY/MM/DD``, ``DD/MM/YYYY``, ``MM/DD/YYYY``, ``DD.MM.YYYY``, ``DD-MM-YYYY``;
- every value of a multi-valued element;
- encoded in the file's character set (ISO 2022 included), UTF-8 and Latin-1, in any case.

:class:`Verifier` searches the written bytes (everything but the pixel data value) in memory:
one compiled multi-pattern search for names, IDs and dates (the same for every file of a
patient, so compiled once and cached; it runs only when the bytes hold one of the identifiers'
tokens), the UID-like tokens (maximal runs of digits and dots) intersected with the file's UIDs,
and the printable runs matched against the removed private or unknown values; :class:`Scan`
prepares the bytes once for these searches and the run dictionary's.  Matches are bounded: a value must not be part of a longer word or number
(a UID not a prefix of a longer UID; digit IDs and dates not inside longer numbers), which
keeps random binary bytes from raising false alarms.  Only on a hit is the output parsed, to
name the tag path of every survivor (never its value).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Callable, Iterable

__all__ = ["PhiCollector", "Verifier", "Scan", "locate_leaks", "MIN_TEXT", "date_variants", "name_variants"]

#: shortest identifier searched for in the bytes (shorter ones match random bytes)
MIN_TEXT = 4
_PRINTABLE_RUN = re.compile(rb"[\x20-\x7e]{6,}")
_SPLIT = re.compile(r"[\\\x00]")
_UID_LIKE = re.compile(r"^[0-9]+(\.[0-9]+){2,}$")
_NAME_WORDS = re.compile(r"[\s,.\-]+")  # what separates the words of a name component
_NUMBER_LIKE = re.compile(r"^[-+]?[0-9]*\.?[0-9]+([eE][-+]?[0-9]+)?$")


def date_variants(da: str) -> list[str]:
    """The ways a ``YYYYMMDD`` date is commonly written."""
    y, m, d = da[:4], da[4:6], da[6:8]
    return [da, f"{y}-{m}-{d}", f"{y}.{m}.{d}", f"{y}/{m}/{d}", f"{d}/{m}/{y}", f"{m}/{d}/{y}",
            f"{d}.{m}.{y}", f"{d}-{m}-{y}"]


def name_variants(pn: str) -> tuple[list[str], list[str]]:
    """``(whole-name forms, components)`` of a PN value (all three component groups)."""
    forms: list[str] = []
    comps: list[str] = []
    for group in pn.split("="):
        parts = [p.strip() for p in group.split("^")]
        parts = [p for p in parts if p]
        if not parts:
            continue
        family, given = parts[0], (parts[1] if len(parts) > 1 else "")
        forms.append(group.strip("^ "))
        if given:
            forms += [f"{given} {family}", f"{family}, {given}", f"{family} {given}", f"{family},{given}"]
        for p in parts:
            comps += [w for w in _NAME_WORDS.split(p) if w]
    return forms, comps


@dataclass
class PhiCollector:
    """Identifying values of one input file, gathered during the de-identification walk."""

    text: set[str] = field(default_factory=set)
    short_text: set[str] = field(default_factory=set)  # scrubbed from free text, too short to search bytes
    uids: set[str] = field(default_factory=set)
    dates: set[str] = field(default_factory=set)  # YYYYMMDD, also searched as the head of a DT value
    weak: set[bytes] = field(default_factory=set)
    retained: set[str] = field(default_factory=set)
    structural: set[str] = field(default_factory=set)  # kept structural text (Manufacturer, Code Meaning …)

    def add_text(self, value: str) -> None:
        """A text value (ID, address, institution …); each value of a multi-valued element."""
        for v in _SPLIT.split(value):
            v = v.strip()
            if not v:
                continue
            if len(v) >= MIN_TEXT:
                self.text.add(v)
            elif len(v) >= 3:
                self.short_text.add(v)

    def add_name(self, value: str) -> None:
        """A person name in every form it is commonly written."""
        text, short = _name_terms(value)
        self.text.update(text)
        self.short_text.update(short)

    def add_date(self, value: str) -> None:
        """A DA value, or the date part of a DT value."""
        text, dates = _date_terms(value)
        self.text.update(text)
        self.dates.update(dates)

    def add_uid(self, value: str) -> None:
        """Instance UIDs (registered DICOM UIDs such as SOP classes are public constants, not PHI)."""
        for v in _SPLIT.split(value):
            v = v.strip()
            if len(v) >= 8 and v not in _registered():
                self.uids.add(v)

    def add_opaque(self, raw: bytes) -> None:
        """Printable runs of a removed private or unknown element (nested sequences included)."""
        for run in _PRINTABLE_RUN.findall(raw):
            for piece in run.split(b"\\"):
                piece = piece.strip(b" ")
                if len(piece) < 6:
                    continue
                s = piece.decode("ascii")
                if _NUMBER_LIKE.match(s):
                    continue
                if "^" in s:
                    self.add_name(s)
                if _UID_LIKE.match(s):
                    self.add_uid(s)
                else:
                    self.weak.add(piece.lower())

    def add_retained(self, value: str) -> None:
        """A value a kept structural attribute legitimately carries (e.g. Manufacturer)."""
        for v in _SPLIT.split(value):
            v = v.strip().lower()
            if v:
                self.retained.add(v)

    def verifier(self, charset: str | tuple[str, ...] = "latin-1") -> "Verifier":
        """The search for these identifiers.

        Parameters
        ----------
        charset:
            How text is encoded in the file: a Python codec, or the tuple of the file's
            Specific Character Set terms (ISO 2022, encoded by pydicom).  UTF-8 and Latin-1
            are always tried too.  Letters are matched in any ASCII case, and non-ASCII
            letters as written, in upper and in lower case.

        Notes
        -----
        The names, IDs and dates of one patient's files are the same, so their compiled
        pattern is built once and reused (cached); the UIDs, different in every file, are
        checked by a fixed pattern that finds every UID-like token plus a set lookup.
        """
        text = _encoded(frozenset(self.text), charset)
        # a removed private value that a kept element legitimately repeats is no identifier
        weak = frozenset(w for w in self.weak if w.decode("ascii") not in self.retained and w not in text)
        dates = frozenset(self.dates)
        return Verifier(_compile(text, dates), frozenset(u.encode("ascii", "replace") for u in self.uids), weak,
                        _keys(text, dates))

    def scrubber(self) -> Callable[[str, str], str] | None:
        """``scrub(text, replacement)``: this file's identifiers in free text replaced (the clean action)."""
        words = self.text | self.short_text | self.dates
        if not words and not self.uids:
            return None
        pattern = _compile_text(frozenset(words)) if words else None
        uids = frozenset(self.uids)

        def scrub(text: str, replacement: str) -> str:
            if pattern is not None:
                text = pattern.sub(replacement, text)
            if uids:
                text = _UID_TOKEN_STR.sub(lambda m: replacement if m.group() in uids else m.group(), text)
            return text

        return scrub


# The terms of a value depend on the value alone, and a patient's names and dates recur in every
# file of the patient: they are derived once per process.
@lru_cache(maxsize=16384)
def _name_terms(value: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """``(searched text, short text)`` of a PN value (see :meth:`PhiCollector.add_name`)."""
    text: list[str] = []
    short: list[str] = []
    for v in _SPLIT.split(value):
        forms, comps = name_variants(v)
        text += [f for f in forms if len(f) >= 3]
        for c in comps:
            if len(c) >= MIN_TEXT:
                text.append(c)
            elif len(c) >= 3:
                short.append(c)
    return tuple(text), tuple(short)


@lru_cache(maxsize=16384)
def _date_terms(value: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """``(the other ways the dates are written, YYYYMMDD dates)`` of a DA or DT value (see
    :meth:`PhiCollector.add_date`)."""
    text: list[str] = []
    dates: list[str] = []
    for v in _SPLIT.split(value):
        v = v.strip().replace(".", "").replace("-", "")
        if len(v) >= 8 and v[:8].isdigit():
            text += date_variants(v[:8])[1:]
            dates.append(v[:8])
    return tuple(text), tuple(dates)


@lru_cache(maxsize=512)
def _encoded(text: frozenset[str], charset: str | tuple[str, ...]) -> frozenset[bytes]:
    if isinstance(charset, tuple):
        from pydicom.charset import convert_encodings, encode_string

        encodings = convert_encodings(list(charset))
        encs: tuple[Callable[[str], bytes], ...] = (lambda t: encode_string(t, encodings), _utf8, _latin1)
    else:
        encs = (lambda t: t.encode(charset), _utf8, _latin1)
    out: set[bytes] = set()
    for t in text:
        for variant in {t, t.upper(), t.lower()}:
            for enc in encs:
                try:
                    out.add(enc(variant).lower())
                except (UnicodeError, LookupError, ValueError):
                    continue
    return frozenset(out)


def _utf8(text: str) -> bytes:
    return text.encode("utf-8")


def _latin1(text: str) -> bytes:
    return text.encode("latin-1")


@lru_cache(maxsize=1)
def _registered() -> frozenset[str]:
    from pydicom.uid import UID_dictionary

    return frozenset(UID_dictionary)


@lru_cache(maxsize=256)
def _compile_text(words: frozenset[str]) -> re.Pattern[str]:
    def alts(items: Iterable[str]) -> str:
        return "|".join(re.escape(w) for w in sorted(items, key=lambda w: (-len(w), w)))

    numbers = {w for w in words if w.isdigit() and len(w) >= 6}
    parts = [rf"(?<![A-Za-z0-9_])(?:{alts(words - numbers)})(?![A-Za-z0-9_])"] if words - numbers else []
    if numbers:  # an ID of digits is found glued to letters too ("MRN4711042" for ID 4711042)
        parts.append(rf"(?<![0-9])(?:{alts(numbers)})(?![0-9])")
    return re.compile("|".join(parts), re.IGNORECASE)


@lru_cache(maxsize=1024)
def _compile(text: frozenset[bytes], dates: frozenset[str] = frozenset()) -> re.Pattern[bytes] | None:
    """One search for all of a file's names, IDs and dates (in the lower-cased output bytes).

    Three kinds, each bounded on both sides: dates (``YYYYMMDD``, also as the head of a DT
    value, not inside a longer number), digit IDs of 6+ digits (not inside a longer number,
    glued to letters allowed) and text (not inside a longer word).  The identifiers of a kind are
    written as a trie (their common prefixes shared) and every alternative of the pattern starts
    with a literal byte, its left bound checked just after that byte: ``re`` then skips the
    positions whose byte starts no identifier and tries one branch per byte, instead of every
    identifier at every position.  ``search`` finds a match exactly where a plain alternation
    of the bounded identifiers would.
    """
    numbers = {t for t in text if t.isdigit() and len(t) >= 6}
    kinds = []
    if dates:
        # a DA, or the date part of a DT (time, fraction and UTC offset may follow), also glued to letters
        kinds.append(({d.encode("ascii") for d in dates}, rb"[0-9]",
                      rb"(?:[0-9]{2}){0,3}(?:\.[0-9]{1,6})?(?:[+-][0-9]{4})?(?![0-9])"))
    if text - numbers:
        kinds.append((text - numbers, rb"[a-z0-9_]", rb"(?![a-z0-9_])"))
    if numbers:
        kinds.append((numbers, rb"[0-9]", rb"(?![0-9])"))
    branches = []
    for words, before, end in kinds:
        words = {w for w in words if w}
        for first in sorted({w[0] for w in words}):
            rest = {w[1:] for w in words if w[0] == first}
            # the left bound of the match start, checked once its first byte is consumed
            branches.append(re.escape(bytes([first])) + rb"(?<!" + before + rb"[\x00-\xff])" + _trie(rest, end))
    if not branches:
        return None
    return re.compile(b"|".join(branches))


@dataclass(frozen=True)
class _Keys:
    """Tokens of which the bytes must hold one for :func:`_compile`'s pattern to match: a test cheaper than the
    search itself, which then runs only when it passes.

    A match of a text identifier is bounded by bytes outside ``[a-z0-9_]``, so each maximal run of
    ``[a-z0-9_]`` bytes in the identifier is a maximal run of the bytes too (one per identifier is
    kept, the longest); a digit ID of 6+ digits is a whole maximal run of digits; a date is the
    head of a maximal digit run of 8, 10, 12 or 14 digits (a DT's time digits follow it, and
    whatever follows them is no digit).  An identifier with no ``[a-z0-9_]`` byte (``----``) is
    looked for as it is.
    """

    words: frozenset[bytes]
    numbers: frozenset[bytes]
    dates: frozenset[bytes]
    bare: frozenset[bytes] = frozenset()

    def may_match(self, scan: "Scan") -> bool:
        if self.words and not self.words.isdisjoint(scan.idents()):
            return True
        if self.bare and any(b in scan.low for b in self.bare):
            return True
        if self.numbers or self.dates:
            runs = scan.digit_runs()
            if self.numbers and not self.numbers.isdisjoint(runs):
                return True
            if self.dates and any(len(r) in (8, 10, 12, 14) and r[:8] in self.dates for r in runs):
                return True
        return False


@lru_cache(maxsize=1024)
def _keys(text: frozenset[bytes], dates: frozenset[str] = frozenset()) -> _Keys:
    """The :class:`_Keys` of :func:`_compile`'s pattern (the same identifiers, split into the same kinds)."""
    numbers = {t for t in text if t.isdigit() and len(t) >= 6}
    words = set()
    bare = set()
    for t in text - numbers:
        if not t:
            continue
        runs = t.translate(_IDENT_RUNS).split()
        if runs:
            words.add(max(runs, key=len))
        else:
            bare.add(t)
    return _Keys(frozenset(words), frozenset(numbers), frozenset(d.encode("ascii") for d in dates), frozenset(bare))


def _trie(words: set[bytes], end: bytes) -> bytes:
    """A regex matching any of *words* followed by *end* (its alternatives share their prefixes)."""
    alternatives = []
    for first in sorted({w[0] for w in words if w}):
        rest = {w[1:] for w in words if w and w[0] == first}
        alternatives.append(re.escape(bytes([first])) + _trie(rest, end))
    if b"" in words:
        alternatives.append(end)
    if len(alternatives) == 1:
        return alternatives[0]
    return b"(?:" + b"|".join(alternatives) + b")"


def _compile_plain(text: frozenset[bytes], dates: frozenset[str] = frozenset()) -> re.Pattern[bytes] | None:
    """The plain alternation :func:`_compile` is equivalent to (kept for the tests that pin it)."""
    def alts(items: Iterable[bytes]) -> bytes:
        return b"|".join(re.escape(t) for t in sorted(items, key=lambda w: (-len(w), w)))

    parts = []
    if dates:
        parts.append(rb"(?<![0-9])(?:" + alts(d.encode("ascii") for d in dates)
                     + rb")(?:[0-9]{2}){0,3}(?:\.[0-9]{1,6})?(?:[+-][0-9]{4})?(?![0-9])")
    numbers = {t for t in text if t.isdigit() and len(t) >= 6}
    if text - numbers:
        parts.append(rb"(?<![a-z0-9_])(?:" + alts(text - numbers) + rb")(?![a-z0-9_])")
    if numbers:
        parts.append(rb"(?<![0-9])(?:" + alts(numbers) + rb")(?![0-9])")
    if not parts:
        return None
    return re.compile(b"|".join(parts))


#: every UID-like token (a UID stands between non-digit, non-dot bytes)
_UID_TOKEN = re.compile(rb"(?<![0-9.])[0-9]+(?:\.[0-9]+)+(?![0-9.])")
_UID_TOKEN_STR = re.compile(r"(?<![0-9.])[0-9]+(?:\.[0-9]+)+(?![0-9.])")


class Scan:
    """Output bytes prepared once for every search of them: lower-cased, and their UID-like tokens (on first use).

    The file's own :class:`Verifier` and the run's dictionary (:mod:`segkit.deid.rundict`) search the
    same bytes; with a ``Scan`` they lower-case them and list their UID tokens once between them.
    """

    __slots__ = ("low", "_uid_runs", "_words", "_idents", "_digit_runs")

    def __init__(self, data: bytes | memoryview) -> None:
        self.low = bytes(data).lower()
        self._uid_runs: frozenset[bytes] | None = None
        self._words: frozenset[bytes] | None = None
        self._idents: frozenset[bytes] | None = None
        self._digit_runs: list[bytes] | None = None

    @classmethod
    def of(cls, data: "bytes | memoryview | Scan") -> "Scan":
        return data if isinstance(data, Scan) else cls(data)

    def uid_tokens(self) -> frozenset[bytes]:
        """Every UID-like token of the bytes: the set ``_UID_TOKEN.findall`` gives.

        A token is bounded by bytes that are neither digits nor dots, so it is a whole maximal
        run of digits and dots, one shaped like a UID (digits, a dot, digits …); the runs are
        cut out by ``bytes.translate`` and ``split`` (C loops, several times faster than the
        regex's try at every position).
        """
        return frozenset(r for r in self._digit_dot_runs() if _uid_shaped(r))

    def holds_uid(self, uids: frozenset[bytes]) -> bool:
        """Whether one of *uids* is a UID token of the bytes: ``not uids.isdisjoint(self.uid_tokens())``.

        A UID token is a maximal run of digits and dots shaped like a UID, so the runs that are
        one of *uids* are found first (a set intersection) and only they are checked for shape.
        """
        return any(_uid_shaped(u) for u in uids.intersection(self._digit_dot_runs()))

    def _digit_dot_runs(self) -> frozenset[bytes]:
        return self._runs("_uid_runs", _UID_RUNS)

    def words(self) -> frozenset[bytes]:
        """The word tokens of the bytes: the set ``findall`` of ``[a-z0-9\\x80-\\xff]+`` gives (maximal runs)."""
        return self._runs("_words", _WORD_RUNS)

    def idents(self) -> frozenset[bytes]:
        """The maximal runs of ``[a-z0-9_]`` bytes (what bounds a text identifier's match)."""
        return self._runs("_idents", _IDENT_RUNS)

    def digit_runs(self) -> list[bytes]:
        """The maximal runs of digits (what bounds a digit ID's or a date's match)."""
        return self._runs("_digit_runs", _DIGIT_RUNS, list)

    def _runs(self, slot: str, table: bytes, kind: Callable[[list[bytes]], Any] = frozenset) -> Any:
        """The maximal runs of the bytes that *table* keeps, cut on first use and kept in *slot*."""
        value = getattr(self, slot)
        if value is None:
            value = kind(self.low.translate(table).split())
            setattr(self, slot, value)
        return value


def _uid_shaped(run: bytes) -> bool:
    """Whether a run of digits and dots is shaped like a UID: digits, then dot and digits once or more."""
    return run[:1] != b"." and run[-1:] != b"." and b"." in run and b".." not in run


def _runs_table(keep: bytes) -> bytes:
    """A ``bytes.translate`` table keeping the bytes of *keep* and turning every other byte into a space."""
    return bytes(b if b in keep else 0x20 for b in range(256))


_UID_RUNS = _runs_table(b"0123456789.")
_IDENT_RUNS = _runs_table(b"abcdefghijklmnopqrstuvwxyz0123456789_")
_DIGIT_RUNS = _runs_table(b"0123456789")
_WORD_RUNS = _runs_table(b"abcdefghijklmnopqrstuvwxyz0123456789" + bytes(range(0x80, 0x100)))


@dataclass(frozen=True)
class Verifier:
    """The search of one file's identifiers: a compiled multi-pattern search, UID tokens, private tokens."""

    pattern: re.Pattern[bytes] | None
    uids: frozenset[bytes]
    weak: frozenset[bytes]
    keys: _Keys | None = None  # a cheap test the bytes pass whenever the pattern matches (None: no test)

    def leaks(self, data: "bytes | memoryview | Scan") -> bool:
        """True when any identifier occurs in *data* (the output bytes without the pixel data value)."""
        scan = Scan.of(data)
        low = scan.low
        if self.pattern is not None and (self.keys is None or self.keys.may_match(scan)) and self.pattern.search(low):
            return True
        if self.uids and scan.holds_uid(self.uids):
            return True
        # a printable run's piece equal to a weak token contains it: no token in the bytes, no run to split
        if self.weak and any(w in low for w in self.weak):
            for run in _PRINTABLE_RUN.findall(low):
                for piece in run.split(b"\\"):
                    if piece.strip(b" ") in self.weak:
                        return True
        return False


#: value representations that hold numbers or enumerated codes: an identifier's characters found
#: there (Series Number 123456 of a patient whose ID is 123456, Body Part HEADNECK of patient
#: QIN-HEADNECK-01) are a coincidence, not a leak
CODED_VRS = frozenset({"IS", "DS", "CS", "US", "SS", "UL", "SL", "UV", "SV", "FL", "FD", "AT", "OF", "OD", "OL",
                       "OV"})


def locate_leaks(data: bytes, verifier: Verifier) -> list[tuple[str, str, int]]:
    """``(tag path, VR, tag)`` of the elements of *data* in which an identifier survives (never the value).

    Parses *data* (a DICOM file, possibly without its pixel data); called only after
    :meth:`Verifier.leaks` said yes, so the common case never re-parses.
    """
    from io import BytesIO

    import pydicom

    try:
        ds = pydicom.dcmread(BytesIO(data), force=True, stop_before_pixels=True)
    except Exception:  # noqa: BLE001 - the bytes were written by pydicom a moment ago
        return [("(unparsed output)", "UN", 0)]
    paths: list[tuple[str, str, int]] = []
    if getattr(ds, "file_meta", None) is not None:
        _walk_leaks(ds.file_meta, "", verifier, paths)
    _walk_leaks(ds, "", verifier, paths)
    return paths or [("(between elements)", "UN", 0)]


def _walk_leaks(ds: Any, prefix: str, verifier: Verifier, paths: list[tuple[str, str, int]]) -> None:
    for elem in ds:
        name = f"{prefix}({elem.tag.group:04X},{elem.tag.element:04X})"
        if elem.VR == "SQ":
            for i, item in enumerate(elem.value):
                _walk_leaks(item, f"{name}[{i}]>", verifier, paths)
            continue
        value = elem.value
        if isinstance(value, (bytes, bytearray)):
            raw = bytes(value)
        elif isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
            raw = "\\".join(str(v) for v in value).encode("utf-8", "replace")
        else:
            raw = str(value).encode("utf-8", "replace")
        if verifier.leaks(b" " + raw + b" "):
            paths.append((name, elem.VR, int(elem.tag)))
