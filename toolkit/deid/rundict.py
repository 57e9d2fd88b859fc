"""One run, one dictionary: the names, IDs and UIDs of every input, gathered in a header-only first pass.

Each file is verified against its own identifiers (:mod:`segkit.deid.verify`) and, with this
dictionary, against every other input's too, so patient A's name planted in patient B's file is
found.  Dates are left out on purpose: another patient's original date is often a shifted date
of this one by coincidence.  The search is a set lookup of the output's word tokens, then an
exact, bounded match for the few identifiers whose longest word occurred, so its cost does not
grow with the number of patients.
"""

from __future__ import annotations

import re
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Iterable

from segkit.deid.verify import MIN_TEXT, name_variants

__all__ = ["RunDictionary", "gather_identifiers", "build_run_dictionary", "retained_tokens"]

#: identifying IDs (top level or nested): patient IDs, other IDs, accession, MRN-like numbers
_ID_KEYWORDS = {0x00100020, 0x00101000, 0x00080050, 0x00401001, 0x00321032, 0x00380010, 0x00401000}
_TOKEN = re.compile(rb"[a-z0-9\x80-\xff]+")
_UID_TOKEN = re.compile(rb"(?<![0-9.])[0-9]+(?:\.[0-9]+)+(?![0-9.])")
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


def gather_identifiers(path: str) -> tuple[frozenset[str], frozenset[str], frozenset[str]]:
    """``(names, ids, uids)`` of one file, read without its pixel data (empty sets if unreadable)."""
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

    def leaks(self, data: bytes | memoryview, retained: frozenset[bytes] = frozenset()) -> bool:
        """True when an identifier of any input occurs in *data* as a whole word (or a UID as a whole UID).

        *retained*: the words of the structural text this file keeps by the profile (Manufacturer,
        Code Meaning …); another input's name made only of such words is a word of the study here.
        """
        low = bytes(data).lower()
        if self.uids and not self.uids.isdisjoint(_UID_TOKEN.findall(low)):
            return True
        if not self.index:
            return False
        candidates = set()
        for token in set(_TOKEN.findall(low)):
            hit = self.index.get(token)
            if hit:
                candidates |= hit
        for ident in candidates:
            if retained and all(t in retained for t in _TOKEN.findall(ident)):
                continue
            left = rb"(?<![0-9])" if ident.isdigit() else rb"(?<![a-z0-9_])"
            right = rb"(?![0-9])" if ident.isdigit() else rb"(?![a-z0-9_])"
            if re.search(left + re.escape(ident) + right, low):
                return True
        return False


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
