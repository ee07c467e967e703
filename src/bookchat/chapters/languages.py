"""Language tags: their names (for the model) and their writing direction (for the page)."""

from __future__ import annotations

from typing import Literal

Direction = Literal["ltr", "rtl"]

# Languages written right to left in their usual script.
RTL_LANGUAGES = frozenset({"ar", "fa", "he", "ur", "ps", "sd", "ug", "yi", "dv", "ckb"})
# Scripts decide when a tag names one: `ur-Latn` (Roman Urdu) is left to right, `pa-Arab`
# (Shahmukhi) right to left.
RTL_SCRIPTS = frozenset({"Arab", "Hebr", "Thaa", "Syrc", "Nkoo", "Adlm", "Rohg", "Mand", "Samr"})

LANGUAGE_NAMES = {
    "ar": "Arabic",
    "bn": "Bengali",
    "ckb": "Central Kurdish (Sorani)",
    "de": "German",
    "dv": "Dhivehi",
    "en": "English",
    "es": "Spanish",
    "fa": "Persian (Farsi)",
    "fr": "French",
    "gu": "Gujarati",
    "he": "Hebrew",
    "hi": "Hindi",
    "id": "Indonesian",
    "it": "Italian",
    "ja": "Japanese",
    "ko": "Korean",
    "mr": "Marathi",
    "ms": "Malay",
    "nl": "Dutch",
    "pa": "Punjabi",
    "pl": "Polish",
    "ps": "Pashto",
    "pt": "Portuguese",
    "pt-BR": "Brazilian Portuguese",
    "ru": "Russian",
    "sd": "Sindhi",
    "sw": "Swahili",
    "ta": "Tamil",
    "te": "Telugu",
    "th": "Thai",
    "tr": "Turkish",
    "ug": "Uyghur",
    "uk": "Ukrainian",
    "ur": "Urdu",
    "ur-Latn": "Roman Urdu (Urdu in the Latin script)",
    "vi": "Vietnamese",
    "yi": "Yiddish",
    "zh": "Chinese",
    "zh-Hans": "Simplified Chinese",
    "zh-Hant": "Traditional Chinese",
}


def language_name(tag: str) -> str:
    """A name the model knows the language by: `ur` -> `Urdu`; unknown tags stay as they are."""
    if tag in LANGUAGE_NAMES:
        return LANGUAGE_NAMES[tag]
    primary = tag.split("-", 1)[0]
    if primary in LANGUAGE_NAMES:
        return f"{LANGUAGE_NAMES[primary]} ({tag})"
    return f"the language with the BCP 47 tag {tag}"


def direction(tag: str) -> Direction:
    """`rtl` or `ltr` for a (normalized) language tag."""
    primary, *rest = tag.split("-")
    script = next((part for part in rest if len(part) == 4 and part.isalpha()), None)
    if script is not None:
        return "rtl" if script in RTL_SCRIPTS else "ltr"
    return "rtl" if primary in RTL_LANGUAGES else "ltr"
