"""The server's display-text rule (callerid.display_text), copied so that records are checked before they are sent.

A label name or call reason must be text a phone can show: no control, format or other invisible characters except
joiners and selectors in the contexts where they are part of visible text (emoji sequences, Indic scripts, flags).
Kept identical to the server's module; ``idna`` comes with httpx.
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
