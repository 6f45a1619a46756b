"""Safe text: what a phone may display, and what both databases can store (the one copy of both rules).

**Display text** is whatever a phone shows on its call screen: label names, per-call label names and call reasons
(SPEC §7.1; the rule runs right after each field's length rule, §7.2 message ``<f> contains characters that cannot
be displayed``), feature-set names and static call reasons, Call Me Back config names, survey names and questions.
Refused, so that nothing on that screen is hidden, reordered or drawn as boxes:

- control characters (Cc: NUL, tab, newline, DEL, C1) and line/paragraph separators (Zl, Zp: U+2028, U+2029);
- format characters (Cf): the bidirectional marks, embeddings, overrides and isolates (U+200E, U+200F, U+061C,
  U+202A-U+202E, U+2066-U+2069), zero-width space U+200B, word joiner U+2060, U+FEFF, soft hyphen U+00AD, tags...
  except the joiners in the contexts below;
- the other invisible (Default_Ignorable) characters that Unicode files as marks or letters: U+034F COMBINING
  GRAPHEME JOINER, the Hangul fillers U+115F, U+1160, U+3164, U+FFA0, Khmer U+17B4, U+17B5, and variation
  selectors outside the contexts below;
- surrogates (Cs), private use (Co) and unassigned code points (Cn), except unassigned code points of the emoji
  blocks (U+1F000-U+1FAFF, U+1FC00-U+1FFFD), which Unicode reserves for future emoji (Extended_Pictographic):
  Python 3.11's Unicode 14 tables do not know newer emoji such as U+1FAE8 (Unicode 15) that phones already send.

Everything else is allowed: letters of any script, combining marks (Hindi matras and viramas), digits,
punctuation, symbols, emoji, and spaces (Zs, e.g. U+00A0). Invisible characters that are part of visible text are
allowed where they are:

- U+200D ZERO WIDTH JOINER after a virama (RFC 5892 A.2: Sinhala "ශ්‍රී", Malayalam chillus), or inside an emoji
  ZWJ sequence: between two pictographs (non-ASCII So/Sm symbols, or reserved emoji code points), the first one
  optionally followed by VS16 and/or a skin-tone modifier ("👨‍👩‍👧", "👩🏽‍💻", "🏳️‍🌈", "❤️‍🔥");
- U+200C ZERO WIDTH NON-JOINER where RFC 5892 A.1 allows it in domain names (IDNA's own check): after a virama
  (Hindi half forms) or between joining letters (Persian "می‌خواهم");
- U+FE0E/U+FE0F (text/emoji presentation) right after an emoji base: a non-ASCII symbol, a keycap base (``#``,
  ``*``, ``0``-``9``: "1️⃣") or one of U+203C, U+2049, U+2139, U+3030, U+303D ("❤️", "‼️");
- ideographic variation selectors U+E0100-U+E01EF right after a CJK ideograph, and the Mongolian free variation
  selectors U+180B-U+180D, U+180F right after a Mongolian letter (the other selectors, U+FE00-U+FE0D, are refused);
- tag characters U+E0020-U+E007E ended by U+E007F right after U+1F3F4 (subdivision flags such as Scotland's).

**Storable text** is any other text the API, console or CLI stores or looks up (API key names and descriptions,
account and webhook names, e-mails, survey responses, ...). PostgreSQL cannot hold U+0000 in text (asyncpg refuses
the value) while SQLite stores it, and no driver can encode a lone surrogate (the CLI's ``surrogateescape`` makes
them from undecodable bytes): both are refused, so that both databases give the same answer, a 400 naming the
field (``<field> contains characters that cannot be stored``) instead of a 500 on PostgreSQL only. Display text is
storable by construction (NUL is Cc, surrogates are Cs).

Where the checks run: in each field's own validation (the domain's service, or its wire parser), with the field's
name, never where bodies are parsed. A check in ``callerid.http.parse_json_object`` or in the fast lane's body
reading could only refuse a whole request without naming the field in each endpoint's shape (R2's ``field``,
R1/B1's v1 text, the ``{"slug", "message"}`` of the others), and would fail a whole B2 batch where only the record
holding the text must be ``invalid_input``; it would also refuse NUL where it is harmless (an unknown field, an
invalid phone number that NL only echoes). A NUL in a field already checked for a format (phone numbers, UUIDs,
enums, epoch times, URLs, time zones) is refused by that check. S1/S2 echo an invalid record's values as sent:
they are kept in a ``json`` column, whose text keeps the ``\\u0000`` escape verbatim on PostgreSQL (only ``jsonb``
and ``text`` refuse it), so the echo is exact on both databases (pinned by the tests; a move to ``jsonb`` would
have to replace NUL by U+FFFD there). ``tests/test_nul_walk.py`` sends a NUL in every field of every business and
app POST body on both databases, and fails for a POST endpoint it does not know, so a new endpoint or field
cannot skip this.

Speed (``bench/display_text.py``, ``python -m timeit``, 2-core machine): the real-time path (R2) checks two fields
per record. ASCII text, the usual case, costs ``isascii()`` (a flag) and ``isprintable()``: 55-100 ns for 15-38
characters; other scripts add one precompiled regex search (~250 ns for 28 Devanagari characters); only text with
joiners, selectors or refused characters takes the contextual rules (~2 µs for an emoji ZWJ sequence). R2's whole
rule check went from 3.9 to 4.0-4.1 µs for ASCII records; ``bench/personalisation.py --only r2`` saw no change
beyond its run-to-run noise (~6,800 records/s either way).
"""

from __future__ import annotations

import re
import unicodedata

import idna.core

# Characters str.isprintable() passes that the display rule refuses (outside their contexts): the
# Default_Ignorable_Code_Point characters of categories Mn and Lo. Cc, Cf, Cs, Co, Cn, Zl, Zp and non-ASCII Zs
# already fail isprintable().
_INVISIBLE_PRINTABLE = "\u034f\u115f\u1160\u17b4\u17b5\u180b-\u180d\u180f\u3164\ufe00-\ufe0f\uffa0\U000e0100-\U000e01ef"
_HAS_INVISIBLE_PRINTABLE = re.compile(f"[{_INVISIBLE_PRINTABLE}]")
# Invisible characters allowed in a context (see the module docstring): joiners, the selectors, flag tags.
_CONTEXTUAL = "\u200c\u200d\ufe0e\ufe0f\u180b-\u180d\u180f\U000e0100-\U000e01ef\U000e0020-\U000e007f"
_HAS_CONTEXTUAL = re.compile(f"[{_CONTEXTUAL}]")
_EMOJI_CONTEXTUAL = ("\u200d", "\ufe0f", "\u200c", "\ufe0e")  # the common ones: joiners, VS16, VS15
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")

ZWNJ, ZWJ = "\u200c", "\u200d"
_VS15, _VS16 = "\ufe0e", "\ufe0f"
_KEYCAP_AND_OTHER_EMOJI_BASES = frozenset("#*0123456789\u203c\u2049\u2139\u3030\u303d")
_BLACK_FLAG = "\U0001f3f4"
_FIRST_TAG, _LAST_TAG, _CANCEL_TAG = "\U000e0020", "\U000e007e", "\U000e007f"


def cannot_display(field: str) -> str:
    return f"{field} contains characters that cannot be displayed"


def cannot_store(field: str) -> str:
    return f"{field} contains characters that cannot be stored"


def is_displayable(text: str) -> bool:
    """True when ``text`` passes the display rule (see the module docstring); cheap for ordinary text."""
    if text.isascii():
        return text.isprintable()
    if text.isprintable() and _HAS_INVISIBLE_PRINTABLE.search(text) is None:
        return True
    return _first_undisplayable(text) is None


def undisplayable(text: str) -> str | None:
    """The first character of ``text`` the display rule refuses, or None."""
    if text.isascii():
        return None if text.isprintable() else next(c for c in text if not c.isprintable())
    if text.isprintable() and _HAS_INVISIBLE_PRINTABLE.search(text) is None:
        return None
    return _first_undisplayable(text)


def display_problem(text: str, field: str) -> str | None:
    """The message naming ``field`` when ``text`` cannot be displayed, else None."""
    return None if is_displayable(text) else cannot_display(field)


def unstorable(text: str) -> str | None:
    """The first character of ``text`` no database can store alike (NUL, a lone surrogate), or None."""
    found = _UNSTORABLE.search(text)
    return None if found is None else found.group()


def storage_problem(text: str, field: str) -> str | None:
    """The message naming ``field`` when ``text`` cannot be stored, else None."""
    return None if _UNSTORABLE.search(text) is None else cannot_store(field)


# --- the contextual rules (only for text the quick checks did not pass) ---------------------------------------


def _first_undisplayable(text: str) -> str | None:
    # Usually the only characters the quick checks stumbled on are joiners or selectors of emoji: check just those.
    if _contextual_allowed(text):
        return None
    # Otherwise every character, for the first one refused.
    for index, char in enumerate(text):
        if char.isprintable() and _HAS_INVISIBLE_PRINTABLE.match(char) is None:
            continue
        category = unicodedata.category(char)
        if category == "Zs" or (category == "Cn" and _reserved_emoji(char)):
            continue
        if _HAS_CONTEXTUAL.match(char) is not None and _allowed_at(text, index):
            continue
        return char
    return None


def _contextual_allowed(text: str) -> bool:
    """True when ``text`` without its joiners and presentation selectors passes the quick checks, and each of those
    is in a context that allows it. (``str.replace``/``str.find`` rather than a regex over the contextual class:
    a class with supplementary-plane ranges costs ~20 ns a character.)"""
    rest = text
    for char in _EMOJI_CONTEXTUAL:
        rest = rest.replace(char, "")
    if not rest.isprintable() or _HAS_INVISIBLE_PRINTABLE.search(rest) is not None:
        return False
    for char in _EMOJI_CONTEXTUAL:
        index = text.find(char)
        while index != -1:
            if not _allowed_at(text, index):
                return False
            index = text.find(char, index + 1)
    return True


def _allowed_at(text: str, index: int) -> bool:
    """Whether the contextual character at ``index`` is in a context that allows it."""
    char = text[index]
    if char in (ZWJ, ZWNJ):
        if char == ZWJ and _emoji_zwj(text, index):
            return True
        try:
            return bool(idna.core.valid_contextj(text, index))  # RFC 5892 Appendix A: virama, joining letters
        except (ValueError, idna.IDNAError):
            return False
    if _FIRST_TAG <= char <= _CANCEL_TAG:
        return _in_flag_tags(text, index)
    if index == 0:
        return False
    base = text[index - 1]
    if char in (_VS15, _VS16):
        return base in _KEYCAP_AND_OTHER_EMOJI_BASES or _symbol(base, "S") or _reserved_emoji(base)
    if char >= "\U000e0100":  # ideographic variation selectors
        return unicodedata.category(base) == "Lo" and unicodedata.name(base, "").startswith("CJK ")
    return "\u1820" <= base <= "\u18aa"  # Mongolian free variation selectors after a Mongolian letter


def _symbol(char: str, categories: str | tuple[str, ...]) -> bool:
    """A non-ASCII character whose category starts with one of ``categories``."""
    return not char.isascii() and unicodedata.category(char).startswith(categories)


def _reserved_emoji(char: str) -> bool:
    return ("\U0001f000" <= char <= "\U0001faff" or "\U0001fc00" <= char <= "\U0001fffd") and (
        unicodedata.category(char) == "Cn"
    )


def _pictograph(char: str) -> bool:
    """What an emoji ZWJ sequence joins: a non-ASCII symbol (👩 💻 ❤ ♀ ↔), or a reserved emoji code point."""
    category = unicodedata.category(char)
    if category == "So" or category == "Sm":
        return not char.isascii()
    return category == "Cn" and ("\U0001f000" <= char <= "\U0001faff" or "\U0001fc00" <= char <= "\U0001fffd")


def _emoji_zwj(text: str, index: int) -> bool:
    before = index - 1
    while before >= 0 and (text[before] == _VS16 or "\U0001f3fb" <= text[before] <= "\U0001f3ff"):  # skin tones
        before -= 1
    return before >= 0 and index + 1 < len(text) and _pictograph(text[before]) and _pictograph(text[index + 1])


def _in_flag_tags(text: str, index: int) -> bool:
    """The tag character at ``index`` is in U+1F3F4, U+E0020-U+E007E (one or more), U+E007F."""
    start = index if text[index] != _CANCEL_TAG else index - 1
    while start > 0 and _FIRST_TAG <= text[start - 1] <= _LAST_TAG:
        start -= 1
    end = start
    while end < len(text) and _FIRST_TAG <= text[end] <= _LAST_TAG:
        end += 1
    return start > 0 and text[start - 1] == _BLACK_FLAG and end > start and end < len(text) and text[end] == _CANCEL_TAG
