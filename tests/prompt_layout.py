"""Read a user message laid out by `bookchat.chat.prompts` back into its blocks, the way a model
is told to: the first tag gives the message's token, and a block ends at the first closing tag
with its name and that token. Tests use it to see what the fake model received."""

from __future__ import annotations

import re
from dataclasses import dataclass

from tests.fakes.openai_server import FakeOpenAIServer

_OPENING_RE = re.compile(r"<(?P<name>[a-z]+)-(?P<token>[0-9a-f]{16})(?: n=\"(?P<n>\d+)\")?>\n")


@dataclass(frozen=True, slots=True)
class Block:
    name: str
    text: str
    number: int | None = None


@dataclass(frozen=True, slots=True)
class Layout:
    """The blocks of one user message in order, its token, and the text outside every block."""

    token: str
    blocks: list[Block]
    outside: str

    def texts(self, name: str) -> list[str]:
        return [block.text for block in self.blocks if block.name == name]

    @property
    def question(self) -> str:
        [question] = self.texts("question")
        return question

    @property
    def conversation(self) -> list[str]:
        """The earlier messages, oldest first, then the question."""
        turns = ("reader", "assistant", "question")
        return [block.text for block in self.blocks if block.name in turns]


def read_layout(content: str) -> Layout:
    """Split `content` into blocks; a block that is never closed is an AssertionError."""
    first = _OPENING_RE.search(content)
    assert first is not None, f"no block in {content!r}"
    token = first["token"]
    blocks: list[Block] = []
    outside: list[str] = []
    position = 0
    while (opening := _OPENING_RE.search(content, position)) is not None:
        assert opening["token"] == token, "every tag of a message carries the same token"
        closing = f"\n</{opening['name']}-{token}>"
        end = content.find(closing, opening.end())
        assert end >= 0, f"block {opening['name']} is never closed"
        outside.append(content[position : opening.start()])
        text = content[opening.end() : end]
        number = int(opening["n"]) if opening["n"] is not None else None
        blocks.append(Block(opening["name"], text, number))
        position = end + len(closing)
    outside.append(content[position:])
    return Layout(token, blocks, "".join(outside))


def question_of(content: str) -> str:
    """The question block of a chat prompt's user message, or the whole message when it has no
    blocks (a prompt the chat did not write)."""
    return read_layout(content).question if _OPENING_RE.search(content) else content


def sent_prompt(fake: FakeOpenAIServer, call: int = -1) -> tuple[str, Layout]:
    """The system message and the read user message of one call the fake model received."""
    messages = fake.chat_requests()[call]["messages"]
    assert [m["role"] for m in messages] == ["system", "user"]
    return messages[0]["content"], read_layout(messages[1]["content"])
