"""The display-text and storable-text rules (callerid.display_text), character class by character class."""

from __future__ import annotations

import unicodedata

import pytest

from callerid.display_text import (
    cannot_display,
    cannot_store,
    display_problem,
    is_displayable,
    storage_problem,
    undisplayable,
    unstorable,
)

REFUSED = {
    "NUL": "\x00",
    "tab": "\t",
    "newline": "\n",
    "carriage return": "\r",
    "DEL": "\x7f",
    "C1 control": "\x85",
    "line separator": "\u2028",
    "paragraph separator": "\u2029",
    "RLO": "\u202e",
    "LRE": "\u202a",
    "PDF": "\u202c",
    "LRI": "\u2066",
    "RLI": "\u2067",
    "FSI": "\u2068",
    "PDI": "\u2069",
    "LRM": "\u200e",
    "RLM": "\u200f",
    "ALM": "\u061c",
    "ZWSP": "\u200b",
    "word joiner": "\u2060",
    "BOM": "\ufeff",
    "soft hyphen": "\u00ad",
    "Mongolian vowel separator": "\u180e",
    "combining grapheme joiner": "\u034f",
    "Hangul filler": "\u3164",
    "halfwidth Hangul filler": "\uffa0",
    "Hangul choseong filler": "\u115f",
    "Khmer inherent vowel": "\u17b4",
    "private use": "\ue000",
    "supplementary private use": "\U000f0000",
    "surrogate": "\ud800",
    "unassigned": "\u0378",
    "noncharacter": "\uffff",
    "unassigned outside the emoji blocks": "\U0001fbff",
    "tag outside a flag": "\U000e0041",
}

ACCEPTED = {
    "ASCII": "Flower Delivery",
    "Hindi (matras, virama)": "नमस्ते",
    "Hindi sentence": "आपका फूल ऑर्डर रास्ते में है",
    "Arabic": "مرحبا",
    "Chinese": "你好 鲜花速递",
    "Japanese": "お花のお届け",
    "Tamil": "வணக்கம்",
    "Thai": "สวัสดีครับ",
    "accents, decomposed": "Cafe\u0301",
    "emoji": "🌸 Flowers",
    "ZWJ family": "👨‍👩‍👧",
    "ZWJ with skin tone": "👩🏽‍💻 at work",
    "ZWJ after VS16": "🏳️‍🌈",
    "ZWJ heart on fire": "❤️‍🔥",
    "ZWJ to an arrow (Sm)": "🙂‍↔️",
    "VS16 heart": "❤️ Roses",
    "VS15 text presentation": "☎︎ call",
    "keycap": "1️⃣ first",
    "keycap hash": "#️⃣",
    "VS16 on a punctuation emoji": "‼️",
    "VS16 on information source": "ℹ️ info",  # noqa: RUF001 - the emoji base, on purpose
    "skin tone": "👍🏾 thanks",
    "flag (regional indicators)": "🇮🇳 India",
    "subdivision flag (tags)": "🏴\U000e0067\U000e0062\U000e0073\U000e0063\U000e0074\U000e007f Scotland",
    "newer emoji than Python's Unicode tables": "\U0001fae8 shaking face",
    "ZWJ with a newer emoji": "🐦\u200d\U0001fae8",
    "no-break space": "Acme\u00a0Flowers",
    "ideographic space": "鲜花\u3000速递",
    "Sinhala ZWJ after virama": "ශ්‍රී ලංකා",
    "Malayalam ZWJ after virama": "ന്‍",
    "Persian ZWNJ between joining letters": "می‌خواهم",
    "Hindi ZWNJ after virama": "क्‌ष",
    "ideographic variation selector": "葛\U000e0100城",
    "Mongolian free variation selector": "ᠠ᠋ᠠ",
}


@pytest.mark.parametrize("char", REFUSED.values(), ids=REFUSED.keys())
def test_each_refused_class_is_found_anywhere(char: str) -> None:
    for text in (f"{char}Flower", f"Flo{char}wer", f"Flower{char}", f"नम{char}स्ते"):
        assert not is_displayable(text)
        assert undisplayable(text) == char
        assert display_problem(text, "name") == "name contains characters that cannot be displayed"


@pytest.mark.parametrize("text", ACCEPTED.values(), ids=ACCEPTED.keys())
def test_scripts_marks_and_emoji_are_accepted(text: str) -> None:
    assert is_displayable(text)
    assert undisplayable(text) is None
    assert display_problem(text, "name") is None


@pytest.mark.parametrize(
    ("text", "refused"),
    [
        ("a\u200db", "\u200d"),  # ZWJ between letters: invisible
        ("\u200d🌸", "\u200d"),  # nothing to join
        ("🌸\u200d", "\u200d"),
        ("🌸\u200d\u200d🌸", "\u200d"),
        ("+\u200d=", "\u200d"),  # ASCII symbols are not emoji
        ("a\u200cb", "\u200c"),  # ZWNJ between Latin letters
        ("\u200cمرحبا", "\u200c"),  # noqa: RUF001 - Arabic on purpose
        ("a\ufe0f", "\ufe0f"),  # a selector after a letter: invisible
        ("\ufe0fFlowers", "\ufe0f"),
        ("❤\ufe0f\ufe0f", "\ufe0f"),  # one selector per base
        ("$\ufe0f", "\ufe0f"),
        (" \ufe0e", "\ufe0e"),
        ("A\U000e0100", "\U000e0100"),  # ideographic selector after a Latin letter
        ("ᠠ\ufe00", "\ufe00"),  # standardized variation selectors other than VS15/VS16
        ("a\u180b", "\u180b"),  # Mongolian selector after a Latin letter
        ("🏴\U000e0067\U000e0062", "\U000e0067"),  # tags without their CANCEL TAG
        ("🏴\U000e007f", "\U000e007f"),  # CANCEL TAG alone
        ("🌸\U000e0067\U000e007f", "\U000e0067"),  # tags after another emoji
        ("Flowers\U000e0067\U000e007f", "\U000e0067"),  # hidden text
        ("ok 👨‍👩‍👧 then\u202e", "\u202e"),  # an allowed sequence does not hide a later offender
        ("\u202e👨‍👩‍👧", "\u202e"),
    ],
)
def test_invisible_characters_only_in_their_contexts(text: str, refused: str) -> None:
    assert not is_displayable(text)
    assert undisplayable(text) == refused


def _expected(code: int) -> bool:
    """The rule by character class, for one character between two letters."""
    category = unicodedata.category(chr(code))
    if category in ("Cc", "Cf", "Cs", "Co", "Zl", "Zp"):
        return False
    if category == "Cn":
        return 0x1F000 <= code <= 0x1FAFF or 0x1FC00 <= code <= 0x1FFFD
    invisible = {0x34F, 0x115F, 0x1160, 0x17B4, 0x17B5, 0x180B, 0x180C, 0x180D, 0x180F, 0x3164, 0xFFA0}
    return code not in invisible and not 0xFE00 <= code <= 0xFE0F and not 0xE0100 <= code <= 0xE01EF


def test_every_character_between_letters_follows_its_class() -> None:
    """The quick checks and the per-character rules agree with the rule by class, for the planes with assigned
    characters (a sample of the others)."""
    codes = [*range(0x30000), *range(0xE0000, 0xE1000), *range(0x30000, 0x110000, 997)]
    wrong = [
        hex(code)
        for code in codes
        if is_displayable(f"x{chr(code)}x") != _expected(code)
        or (undisplayable(f"x{chr(code)}x") is None) != _expected(code)
    ]
    assert wrong == []


def test_storable_text_refuses_only_nul_and_lone_surrogates() -> None:
    for text in ("Acme", "line one\nline two\ttabbed", "\u202eRLO is storable", "नमस्ते 👨‍👩‍👧", "\x01\x7f"):
        assert unstorable(text) is None and storage_problem(text, "name") is None
    for text, char in (("Ac\x00me", "\x00"), ("\x00", "\x00"), ("Acme\udcff", "\udcff"), ("\ud800x\x00", "\ud800")):
        assert unstorable(text) == char
        assert storage_problem(text, "API key name") == "API key name contains characters that cannot be stored"


def test_messages_name_the_field() -> None:
    assert cannot_display("dynamic_label_name") == "dynamic_label_name contains characters that cannot be displayed"
    assert cannot_store("description") == "description contains characters that cannot be stored"
