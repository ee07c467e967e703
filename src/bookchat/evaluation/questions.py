"""The question file: one JSON object a line.

```
{"id": "q1", "question": "...", "pages": ["part/page.md"], "kind"?: "...", "section"?: "..."}
{"id": "off1", "question": "...", "pages": []}                      must be refused
{"id": "off2", "question": "...", "refuse": true}                   the same, said outright
{"id": "f1", "history": ["an earlier question"], "question": "...", "pages": [...]}
{"id": "s1", "question": "...", "selection": "text the reader selected", "selection_answers": true}
```

`history` is asked first, in the same conversation; `selection` is sent as the reader's selected
text, and `selection_answers` says whether that text answers the question (when it does not, the
answer must say so). Blank lines are skipped.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from bookchat.core.errors import VISIBLE_TEXT_PATTERN, ValidationFailed

Category = Literal[
    "answerable", "follow_up", "off_topic", "topic_switch", "selection_answers", "selection_refuses"
]


@dataclass(frozen=True, slots=True)
class Question:
    """A question, what must happen to it, and what is asked before it."""

    id: str
    question: str
    pages: tuple[str, ...] = ()
    kind: str = ""
    section: str | None = None
    refuse: bool = False
    history: tuple[str, ...] = ()
    selection: str | None = None

    @property
    def category(self) -> Category:
        if self.selection is not None:
            return "selection_refuses" if self.refuse else "selection_answers"
        if self.refuse:
            return "topic_switch" if self.history else "off_topic"
        return "follow_up" if self.history else "answerable"

    @property
    def ranked(self) -> bool:
        """Whether retrieval alone can be scored on it: a first question with expected pages
        (a follow-up means nothing to the index on its own words)."""
        return bool(self.pages) and not self.history and self.selection is None


class QuestionFileError(ValidationFailed):
    """The question file is malformed (the message names the line)."""


_Text = Field(min_length=1, pattern=VISIBLE_TEXT_PATTERN)


class _Line(BaseModel):
    """One line as written; the rules that tie its fields together are checked here."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    id: str | int
    question: str = _Text
    pages: list[str] | None = None
    kind: str = ""
    section: str | None = None
    refuse: bool | None = None
    history: list[str] = Field(default_factory=list)
    selection: str | None = Field(default=None, min_length=1, pattern=VISIBLE_TEXT_PATTERN)
    selection_answers: bool | None = None

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if any(not earlier.strip() for earlier in self.history):
            raise ValueError("history holds an empty question")
        if self.selection is not None:
            if self.selection_answers is None:
                raise ValueError(
                    'a selection case says whether the selection answers: add "selection_answers"'
                )
            if self.pages:
                raise ValueError("a selection case is answered from the selection alone: no pages")
            if self.refuse is not None and self.refuse == self.selection_answers:
                raise ValueError('"refuse" contradicts "selection_answers"')
            return self
        if self.selection_answers is not None:
            raise ValueError('"selection_answers" needs a "selection"')
        if self.pages is None and self.refuse is not True:
            raise ValueError('"pages" is missing: the pages that answer it, or [] to refuse it')
        if self.refuse is True and self.pages:
            raise ValueError('a question to refuse has no pages ("refuse": true)')
        if self.refuse is False and not self.pages:
            raise ValueError('an answerable question ("refuse": false) names its pages')
        return self

    def to_question(self) -> Question:
        refuse = not self.selection_answers if self.selection is not None else not self.pages
        return Question(
            id=str(self.id),
            question=self.question,
            pages=tuple(self.pages or ()),
            kind=self.kind,
            section=self.section,
            refuse=refuse,
            history=tuple(self.history),
            selection=self.selection,
        )


def _problem(error: ValidationError) -> str:
    first = error.errors()[0]
    where = ".".join(str(part) for part in first["loc"])
    message = str(first["msg"]).removeprefix("Value error, ")
    if first["type"] == "extra_forbidden":
        message = "unknown field"
    if first["type"] == "string_pattern_mismatch":
        message = "must not be empty or only spaces"
    return f"{where}: {message}" if where else message


def load_questions(path: Path) -> list[Question]:
    """Read a JSONL question set; a malformed line is a `QuestionFileError` naming it."""
    questions: list[Question] = []
    lines: dict[str, int] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            raw = json.loads(line)
        except ValueError as exc:
            raise QuestionFileError(f"{path}:{number}: not JSON ({exc})") from None
        if not isinstance(raw, dict):
            raise QuestionFileError(f"{path}:{number}: not a JSON object")
        try:
            question = _Line.model_validate(raw).to_question()
        except ValidationError as exc:
            raise QuestionFileError(f"{path}:{number}: {_problem(exc)}") from None
        if question.id in lines:
            raise QuestionFileError(
                f"{path}:{number}: id {question.id!r} is already used on line {lines[question.id]}"
            )
        lines[question.id] = number
        questions.append(question)
    return questions
