"""What every chat model offers, whoever its vendor is."""

from __future__ import annotations

import re
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol, runtime_checkable

Role = Literal["system", "user", "assistant"]


@dataclass(frozen=True, slots=True)
class ChatMessage:
    role: Role
    content: str


# A citation marker as a reader reads it in prose: `[1]`, `[2, 3]`. One definition for the chat
# that renumbers them, the offline answerer that never quotes one, and the evaluation.
CITATION_MARKER = re.compile(r"\[(\d{1,3}(?:[ \t]*,[ \t]*\d{1,3})*)\]")

# The title of the one source of a selected-text answer: the reader's selection. Models that work
# on passages (the extractive one) tell selection mode by it.
SELECTION_TITLE = "Selected text"


@dataclass(frozen=True, slots=True)
class Source:
    """One numbered passage the answer may cite as `[index]`."""

    index: int
    title: str
    text: str
    section: str | None = None
    page_url: str | None = None
    source_path: str | None = None
    score: float | None = None


@dataclass(frozen=True, slots=True)
class ChatPrompt:
    """A request to a chat model.

    `messages` is the rendered prompt (the rules, then the numbered sources, history and
    question in delimited blocks: `chat/prompts.py`) for generative models; `question` and
    `sources` are the same content in structured form for models that work on passages
    directly, such as the extractive one.

    `document_messages`, when set, is the same prompt for a model that takes `sources` as
    documents and cites them itself (Claude's search results): rules that ask for no `[n]`
    markers, and a user message without the source blocks, which such a model sends as
    documents ahead of it.
    """

    messages: Sequence[ChatMessage]
    question: str
    sources: Sequence[Source] = ()
    temperature: float = 0.2
    max_tokens: int | None = None
    document_messages: Sequence[ChatMessage] | None = None


@dataclass(frozen=True, slots=True)
class Usage:
    """Tokens a call used. `prompt_tokens` counts every input token, those read from or written
    to the vendor's prompt cache included (`cache_read_tokens`, `cache_write_tokens`)."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


# How a model says it ended an answer: it finished (`stop`), or it was cut at the token limit
# (`length`) or by the vendor's filter (`content_filter`). Only `stop` is a whole answer.
FINISHED = "stop"


@dataclass(frozen=True, slots=True)
class Finish:
    """The model's own word that its answer ended, and why (`finish_reason`)."""

    reason: str


@dataclass(frozen=True, slots=True)
class Completion:
    text: str
    model: str
    usage: Usage = field(default_factory=Usage)
    # None when the vendor did not say how the answer ended.
    finish_reason: str | None = FINISHED


AnswerMode = Literal["generative", "extractive"]


@runtime_checkable
class ChatModel(Protocol):
    """A chat model: one complete answer, or the same answer as a stream of text pieces.

    `stream` yields the answer's text pieces, then a `Finish` when the model ended the answer
    itself, and, last, its `Usage` when the vendor reports it. A stream without a `Finish`
    ended without the model's word that it was over: it is not a whole answer.
    Implementations raise only the project's `LLMError`, `LLMUnavailable` and `LLMTimeout`.

    `takes_documents`: the model is sent the sources as documents and cites them itself, so its
    prompts are built in that layout too (`ChatPrompt.document_messages`).
    """

    provider: str
    model: str
    mode: AnswerMode
    takes_documents: bool

    async def complete(self, prompt: ChatPrompt) -> Completion: ...

    def stream(self, prompt: ChatPrompt) -> AsyncGenerator[str | Finish | Usage]: ...

    async def aclose(self) -> None: ...
