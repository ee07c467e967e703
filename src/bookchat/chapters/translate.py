"""The translated variant: the instructions for the model and the direction for the page."""

from __future__ import annotations

from bookchat.chapters.languages import direction, language_name
from bookchat.chapters.models import GeneratedKind
from bookchat.chapters.service import Variant


def instructions(tag: str, book_title: str) -> str:
    """The system prompt that translates a chapter into the language `tag` names."""
    name = language_name(tag)
    lines = [
        f'You translate one part of a chapter of the textbook "{book_title}" into {name} '
        f"(language tag {tag}).",
        "",
        "- Translate all the prose: headings, paragraphs, list items, table cells, "
        "admonition titles, link texts and image descriptions.",
        "- Keep technical identifiers exactly as written, in their original script: names of "
        "APIs, classes, functions, packages, commands, files, topics and message types, "
        "product names, units and numbers. On the first use of a key technical term you may "
        "add the English term in parentheses.",
        "- Keep the meaning, the facts and the tone: do not summarize, add or drop content.",
        f"- Write natural, fluent {name}, as a good textbook for students would, in the script "
        "normally used for it.",
    ]
    if direction(tag) == "rtl":
        lines.append(
            "- Do not add bidirectional control characters: the page sets the text direction."
        )
    return "\n".join(lines)


def variant_for(tag: str, book_title: str) -> Variant:
    """The translated variant: the language tag, the instructions, and the language and its
    direction for the answer."""
    return Variant(
        kind=GeneratedKind.TRANSLATED,
        key=tag,
        instructions=instructions(tag, book_title),
        extra={"language": tag, "direction": direction(tag)},
    )
