"""Fake language-model behaviours and a chapter for the personalized and translated chapter tests.

Each `*_reply` is a `reply` for the fake OpenAI server: it receives the request JSON and
rewrites the text it was sent (the last user message) the way a model might.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bookchat.chapters.models import GeneratedContent
from bookchat.content.loader import parse_markdown
from tests.conftest import MINI_BOOK
from tests.factories import count

PLACEHOLDER = re.compile(r"⟦P\d+⟧")
Reply = Callable[[dict[str, Any]], str]

FENCE = """```bash
python -m venv .venv && source .venv/bin/activate
pip install isaacsim==4.2.0 --extra-index-url https://pypi.nvidia.com
```"""
GUIDE_URL = (
    "(https://docs.omniverse.nvidia.com/isaacsim/latest/installation/requirements.html"
    ' "Requirements")'
)
CHAPTER = f"""---
title: Simulation on a GPU
sidebar_position: 2
---

# Simulation on a GPU {{#gpu-sim}}

Isaac Sim needs an NVIDIA GPU with at least 8 GB of memory. Read the [install guide]{GUIDE_URL}
before you start.

## Installing

Run `pip install isaacsim==4.2.0` inside a virtual environment:

{FENCE}

| part | minimum |
| --- | --- |
| GPU | RTX 3070 |
| RAM | 32 GB |

:::warning Driver version
Use driver 535 or newer: https://www.nvidia.com/drivers
:::

## Running a scene

![A warehouse scene](/img/warehouse.png)

Launch the sample with `./isaac-sim.sh --ext-folder exts`, then open the [ROS 2 bridge][bridge]
settings.

[bridge]: https://docs.ros.org/en/humble/
"""
CHAPTER_PATH = "03-simulation/gpu.md"
# The chapter as ingestion stores it (frontmatter off): what a stored chapter is rewritten from.
BODY = parse_markdown(CHAPTER, "gpu.md", "https://example.org").body  # type: ignore[union-attr]
# What must come back byte for byte, whatever the model does to the prose.
KEPT = [
    FENCE,
    GUIDE_URL,
    "`pip install isaacsim==4.2.0`",
    "`./isaac-sim.sh --ext-folder exts`",
    "https://www.nvidia.com/drivers",
    "(/img/warehouse.png)",
    "[bridge]: https://docs.ros.org/en/humble/",
    "| --- | --- |",
    ":::warning",
    "{#gpu-sim}",
]


def sent_text(request: dict[str, Any]) -> str:
    """The text a rewrite request asks the model to rewrite."""
    content: str = request["messages"][-1]["content"]
    return content


def system_prompt(request: dict[str, Any]) -> str:
    content: str = request["messages"][0]["content"]
    return content


def _prose(text: str, change: Callable[[str], str]) -> str:
    parts = PLACEHOLDER.split(text)
    tokens = PLACEHOLDER.findall(text)
    out = [change(parts[0])]
    for token, part in zip(tokens, parts[1:], strict=True):
        out += [token, change(part)]
    return "".join(out)


def shouting_reply(request: dict[str, Any]) -> str:
    """A model that rewrites all the prose (upper case) and keeps every placeholder."""
    return _prose(sent_text(request), str.upper)


def urdu_reply(request: dict[str, Any]) -> str:
    """A "translator" that turns every Latin word of the prose into Urdu."""
    return _prose(sent_text(request), lambda part: re.sub(r"[A-Za-z]+", "لفظ", part))


def dropping_reply(request: dict[str, Any]) -> str:
    """A model that loses the first placeholder it was sent."""
    return PLACEHOLDER.sub("", shouting_reply(request), count=1)


def heading_adding_reply(request: dict[str, Any]) -> str:
    """A model that keeps every placeholder but adds a heading of its own."""
    return shouting_reply(request) + "\n\n## A heading nobody asked for\n"


def broken_first_then(good: Reply) -> Reply:
    """Drops a placeholder on the first attempt only (the retry sees the rejection)."""

    def reply(request: dict[str, Any]) -> str:
        if "previous answer for this text was rejected" in system_prompt(request):
            return good(request)
        return PLACEHOLDER.sub("", good(request), count=1)

    return reply


def book_with_chapter(root: Path, chapter: str = CHAPTER) -> Path:
    """The mini book plus the GPU chapter, in a folder of the test's own."""
    folder = root / "book"
    shutil.copytree(MINI_BOOK, folder)
    path = folder / CHAPTER_PATH
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(chapter)
    return folder


async def generated_rows(database_url: str) -> int:
    """How many rewritten chapters are cached."""
    return await count(database_url, GeneratedContent)
