"""The verifier's one-pass search (a trie of the identifiers) finds exactly what the plain alternation finds."""

from __future__ import annotations

import random

from segkit.deid.verify import PhiCollector, _compile, _compile_plain, _encoded


def _identifiers(rng: random.Random) -> tuple[frozenset[bytes], frozenset[str]]:
    words = set()
    for _ in range(rng.randint(1, 60)):
        kind = rng.random()
        if kind < 0.3:
            words.add("".join(rng.choice("0123456789") for _ in range(rng.randint(3, 10))))
        elif kind < 0.5:  # names sharing prefixes, with spaces, commas, carets, dots, non-ASCII
            words.add(rng.choice(["anne", "anna", "annemarie", "an", "müller", "mül"]) + rng.choice(
                ["", "liese", " smith", ", j", "^x", "-1", ".b", "_c", "\u00e9"]))
        else:
            words.add("".join(rng.choice("abcxyz019_-. ,^é") for _ in range(rng.randint(3, 12))))
    text = frozenset(w.encode(rng.choice(["utf-8", "latin-1"])) for w in words)
    dates = frozenset(f"{rng.randint(1900, 2030)}{rng.randint(1, 12):02d}{rng.randint(1, 28):02d}"
                      for _ in range(rng.randint(0, 3)))
    return text, dates


def _data(rng: random.Random, planted: list[bytes]) -> bytes:
    alphabet = b"abcxyz0123456789_-. ,^\\\x00\x80\xc3\xa9\xff\n"
    out = bytearray()
    for _ in range(rng.randint(0, 40)):
        out += bytes(rng.choice(alphabet) for _ in range(rng.randint(0, 6)))
        if planted and rng.random() < 0.6:
            out += rng.choice(planted)
    return bytes(out)


def test_trie_search_matches_plain_alternation_everywhere() -> None:
    rng = random.Random(20261203)
    for _ in range(300):
        text, dates = _identifiers(rng)
        trie, plain = _compile(text, dates), _compile_plain(text, dates)
        assert (trie is None) == (plain is None)
        planted = [t[: rng.randint(1, len(t))] if rng.random() < 0.2 else t for t in text]
        planted += [d.encode() + rng.choice([b"", b"1200", b"123456.5+0100", b"9"]) for d in dates]
        for _ in range(10):
            data = _data(rng, planted)
            for pos in range(len(data) + 1):  # a match starting at every position, or none, in both
                assert bool(trie.match(data, pos)) == bool(plain.match(data, pos))
            assert bool(trie.search(data)) == bool(plain.search(data))


def test_verifier_of_a_collector_uses_the_trie() -> None:
    col = PhiCollector()
    col.add_name("Quixote^Alonso")
    col.add_text("MRN4711042")
    col.add_text("4711042")
    col.add_date("20210315")
    v = col.verifier("latin-1")
    assert v.pattern is _compile(_encoded(frozenset(col.text), "latin-1"), frozenset(col.dates))
    for hit in (b"x alonso quixote y", b"mrn4711042", b"id 4711042\\", b"on 20210315103000.5+0100", b"2021-03-15"):
        assert v.leaks(hit)
    for miss in (b"alonsos", b"47110420", b"120210315", b"quixoteville"):
        assert not v.leaks(miss)


def test_scan_tokens_are_the_regex_tokens() -> None:
    """Scan cuts UID tokens and word tokens with translate + split: the same sets as the regexes' findall."""
    import re

    from segkit.deid.verify import _UID_TOKEN, Scan

    word = re.compile(rb"[a-z0-9\x80-\xff]+")
    rng = random.Random(20261207)
    pieces = [b"1.2", b"1.2.840.10008", b"..", b".", b"1.", b".5", b"12..3", b"2.25.1234", b"a1.2", b"1.2b",
              b"\x00", b" ", b"\\", b"\t", b"\n", b"\x0b", b"\x1c", b"x", b"Ab", b"\xc3\xa9", b"\xff", b"_", b"-"]
    for _ in range(3000):
        data = b"".join(rng.choice(pieces) for _ in range(rng.randint(0, 30)))
        if rng.random() < 0.3:
            data += bytes(rng.randrange(256) for _ in range(rng.randint(0, 40)))
        scan = Scan(data)
        tokens = frozenset(_UID_TOKEN.findall(scan.low))
        assert scan.uid_tokens() == tokens, data
        assert scan.words() == frozenset(word.findall(scan.low)), data
        uids = frozenset(rng.sample([b"1.2", b"1.2.840.10008", b"..", b"1.", b".5", b"12..3", b"2.25.1234", b"1..2",
                                     b"12", b"1.2b", b"a1.2"], rng.randint(0, 4)))
        assert scan.holds_uid(uids) == (not uids.isdisjoint(tokens)), (data, uids)


def test_keys_pass_wherever_the_pattern_matches() -> None:
    """The cheap token test before the search never skips bytes the pattern would match (it only saves work)."""
    from segkit.deid.verify import Scan, _keys

    rng = random.Random(20261208)
    for _ in range(400):
        text, dates = _identifiers(rng)
        plain = _compile_plain(text, dates)
        keys = _keys(text, dates)
        planted = [t[: rng.randint(1, len(t))] if rng.random() < 0.2 else t for t in text]
        planted += [d.encode() + rng.choice([b"", b"12", b"1200", b"120000", b"123456.5+0100", b"9", b"1234567"])
                    for d in dates]
        planted += [rng.choice([b"_", b"x", b"1", b" ", b"\xc3", b"-"]) + rng.choice(planted or [b"a"])
                    + rng.choice([b"_", b"x", b"1", b" ", b"\xa9", b"."]) for _ in range(3)]
        for _ in range(20):
            scan = Scan(_data(rng, planted))
            if plain is not None and plain.search(scan.low):
                assert keys.may_match(scan), (text, dates, scan.low)


def test_verifier_with_and_without_keys_agree() -> None:
    from segkit.deid.verify import Verifier

    rng = random.Random(20261209)
    for _ in range(200):
        col = PhiCollector()
        for _ in range(rng.randint(1, 6)):
            rng.choice([col.add_name, col.add_text, col.add_date])(rng.choice(
                ["Quixote^Alonso", "MRN4711042", "4711042", "20210315", "Fakeville General", "Dr. Ann O'Neil",
                 "Müller^Jürgen", "A1", "x_y", "2020-01-02", "19991231123000", "----", "-- . --"]))
        v = col.verifier("latin-1")
        plain = Verifier(v.pattern, v.uids, v.weak)
        for _ in range(20):
            data = _data(rng, [b"alonso quixote", b"mrn4711042", b"4711042", b"20210315", b"2021-03-15", b"fakeville",
                               b"m\xfcller", b"x_y", b"19991231", b"a1", b"----", b"-- . --"])
            assert v.leaks(data) == plain.leaks(data)
