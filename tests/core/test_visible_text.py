""" "Some visible text" means one thing to the OpenAPI schema, to validation and to trimming.

Schemathesis reads the documented pattern the way JavaScript does; pydantic checks it with Rust's
regex; the value is then trimmed with Python's `str.strip`. Their ideas of a space differ (NEL,
U+001C-U+001F, U+FEFF), so a plain `\\S` let the schema call a request valid that the server
refused: the fuzz tests failed now and then.
"""

from __future__ import annotations

import re
from typing import Any

from bookchat.core.errors import VISIBLE_TEXT_PATTERN
from tests.conftest import AppFactory, make_settings

# ECMA-262's WhiteSpace and LineTerminator: what `\s` means to an OpenAPI client.
ECMASCRIPT_SPACE = (
    "\t\n\v\f\r \xa0\u1680"
    + "".join(chr(c) for c in range(0x2000, 0x200B))
    + "\u2028\u2029\u202f\u205f\u3000\ufeff"
)
PYTHON_SPACE = "".join(chr(c) for c in range(0x3001) if chr(c).isspace())
DISPUTED = sorted(set(ECMASCRIPT_SPACE) | set(PYTHON_SPACE))


def ecmascript_search(pattern: str, text: str) -> bool:
    """`pattern` searched in `text` with JavaScript's meaning of `\\s` and `\\S`."""
    spaces = "".join(f"\\u{ord(c):04x}" for c in ECMASCRIPT_SPACE)
    translated = pattern.replace("\\S", f"[^{spaces}]").replace("\\s", spaces)
    return re.search(translated, text) is not None


def documented_pattern(schema: dict[str, Any], name: str) -> str:
    pattern: str = schema["components"]["schemas"][name]["properties"]["message"]["pattern"]
    return pattern


async def test_blank_by_any_reading_is_refused_by_the_schema_and_the_server(
    sqlite_url: str, app_factory: AppFactory
) -> None:
    settings = make_settings(sqlite_url, rate_limit_chat="1000/minute")
    async with app_factory(settings) as client:
        schema = (await client.get("/openapi.json")).json()
        search = next(
            p["schema"]["pattern"]
            for p in schema["paths"]["/api/v1/content/search"]["get"]["parameters"]
            if p["name"] == "q"
        )
        patterns = [documented_pattern(schema, "ChatCreate"), search]
        refused, accepted = [], []
        for char in DISPUTED:
            blank, visible = char * 3, f"{char}ROS 2{char}"
            chat = await client.post("/api/v1/chat", json={"message": blank})
            query = await client.get("/api/v1/content/search", params={"q": blank})
            refused.append((char, chat.status_code, query.status_code))
            ok_chat = await client.post("/api/v1/chat", json={"message": visible})
            ok_query = await client.get("/api/v1/content/search", params={"q": visible})
            accepted.append((char, ok_chat.status_code, ok_query.status_code))
            for pattern in patterns:
                assert not ecmascript_search(pattern, blank), f"schema accepts {char!r}"
                assert ecmascript_search(pattern, visible)

    assert patterns == [VISIBLE_TEXT_PATTERN, VISIBLE_TEXT_PATTERN]
    assert [r for r in refused if r[1:] != (400, 400)] == []
    assert [a for a in accepted if a[1:] != (200, 200)] == []
