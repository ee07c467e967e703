"""What the language model is told: persona, rules, numbered sources, trimmed history."""

from __future__ import annotations

from collections.abc import Sequence

from bookchat.providers.base import ChatMessage, Source

BOOK_SYSTEM_PROMPT = """\
You are the teaching assistant of the textbook "{title}". You help readers understand the book.
Rules:
- Answer only from the numbered sources below; do not use outside knowledge.
- Cite the sources you use with their numbers in square brackets, like [1] or [2][3].
- If the sources do not answer the question, say that the book does not cover it.
- Be concise and precise; keep code, commands and identifiers exactly as the sources write them.
- Reply in the language the reader writes in.

Sources:
{sources}"""

BOOK_NO_SOURCES = "(none: no passage of the book matched this question)"

SELECTION_SYSTEM_PROMPT = """\
You are the teaching assistant of the textbook "{title}". The reader selected a passage of the
book and asks about it.
Rules:
- Answer solely from the selected text below; do not use outside knowledge or earlier conversation.
- If the selected text does not contain the answer, say so plainly.
- Cite the selection as [1].
- Reply in the language the reader writes in.

Selected text [1]:
\"\"\"
{selection}
\"\"\""""


NOT_COVERED_ANSWER = (
    "I couldn't find this in \"{title}\", so I can't answer it from the book. Try rephrasing "
    "the question, or ask about a topic the book covers."
)

REWRITE_SYSTEM_PROMPT = """\
You turn the reader's last message into a standalone search query for the textbook "{title}".
Use the conversation only to resolve what the message refers to ("it", "that", "the second one").
Reply with the query alone: one line, no quotes, no explanation, in the reader's language."""

REWRITE_HISTORY_MESSAGES = 6
REWRITE_MESSAGE_CHARS = 500


def approx_tokens(text: str) -> int:
    """A cheap token estimate (about four characters a token for English prose)."""
    return len(text) // 4 + 1


def format_sources(sources: Sequence[Source]) -> str:
    if not sources:
        return BOOK_NO_SOURCES
    blocks = []
    for source in sources:
        heading = source.title if not source.section else f"{source.title} > {source.section}"
        blocks.append(f"[{source.index}] {heading}\n{source.text.strip()}")
    return "\n\n".join(blocks)


def trim_history(history: Sequence[ChatMessage], token_budget: int) -> list[ChatMessage]:
    """Keep the newest messages whose estimated size fits the budget, oldest first."""
    kept: list[ChatMessage] = []
    used = 0
    for message in reversed(history):
        cost = approx_tokens(message.content)
        if used + cost > token_budget:
            break
        kept.append(message)
        used += cost
    kept.reverse()
    return kept


def book_messages(
    *,
    title: str,
    question: str,
    sources: Sequence[Source],
    history: Sequence[ChatMessage],
    history_token_budget: int,
) -> list[ChatMessage]:
    system = BOOK_SYSTEM_PROMPT.format(title=title, sources=format_sources(sources))
    return [
        ChatMessage("system", system),
        *trim_history(history, history_token_budget),
        ChatMessage("user", question),
    ]


def rewrite_messages(
    *, title: str, question: str, history: Sequence[ChatMessage]
) -> list[ChatMessage]:
    """A short prompt that asks for a standalone search query for a follow-up question."""
    lines = [
        f"{m.role}: {m.content[:REWRITE_MESSAGE_CHARS]}"
        for m in history[-REWRITE_HISTORY_MESSAGES:]
    ]
    conversation = "\n".join(lines)
    return [
        ChatMessage("system", REWRITE_SYSTEM_PROMPT.format(title=title)),
        ChatMessage("user", f"Conversation:\n{conversation}\n\nLast message: {question}"),
    ]


def selection_messages(*, title: str, question: str, selection: str) -> list[ChatMessage]:
    """The selection is the only context: no retrieval, no history."""
    system = SELECTION_SYSTEM_PROMPT.format(title=title, selection=selection)
    return [ChatMessage("system", system), ChatMessage("user", question)]
