"""NUL characters refused at the edge: in the path, the query string, JSON and form bodies.

PostgreSQL text cannot hold NUL (SQLite can): without this, such input stored or compared in
SQL is a 500 on PostgreSQL only (or, in a background job, a failure that carries SQL text). One
check at the edge covers every field and parameter, present and future. Bodies are scanned as
they are read, never buffered; form bodies go through python-multipart's streaming parsers (the
ones Starlette parses them with), so the answer names the field.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from urllib.parse import unquote_plus

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from python_multipart.exceptions import FormParserError
from python_multipart.multipart import (
    MultipartParser,
    QuerystringParser,
    parse_options_header,
)
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bookchat.core.errors import error_response
from bookchat.core.middleware import send_error

NUL_MESSAGE = "Text in the request must not contain NUL characters (\\u0000)."
FIELD_NUL_MESSAGE = "must not contain NUL characters (\\u0000)"
# A JSON `\u0000` escape: an odd run of backslashes before `u0000` (`\\u0000` is a
# literal backslash followed by text, which is fine).
_JSON_NUL = re.compile(rb"(?<!\\)(?:\\\\)*\\u0000")
_SCAN_OVERLAP = 64
_FORM = b"application/x-www-form-urlencoded"
_MULTIPART = b"multipart/form-data"
_MAX_NAME_BYTES = 200  # enough to name a field; a longer name is cut in the message


class NulInRequest(StarletteHTTPException):
    """Raised from `receive`: an HTTPException, so FastAPI's body parsing re-raises it (other
    errors there become a generic 400); `install_nul_handler` renders it with its details."""

    def __init__(self, field: str | None = None) -> None:
        message = NUL_MESSAGE if field is None else f"{field}: {FIELD_NUL_MESSAGE}"
        super().__init__(status_code=400, detail=message)
        self.loc = ["body"] if field is None else ["body", field]


def install_nul_handler(app: FastAPI) -> None:
    """Answer `NulInRequest` as a 400 `validation_error` whose details name the field."""

    async def on_nul(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, NulInRequest)
        details = [{"loc": exc.loc, "msg": FIELD_NUL_MESSAGE, "type": "nul"}]
        return error_response(400, "validation_error", exc.detail, details)

    app.add_exception_handler(NulInRequest, on_nul)


class RejectNulMiddleware:
    """Answers 400 `validation_error` for a NUL character in the path, the query string or a
    JSON, urlencoded or multipart body (form fields are named; file contents are the route's
    business, file names are checked)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        query: bytes = scope.get("query_string", b"")
        if "\x00" in scope["path"] or b"%00" in query or b"\x00" in query:
            await send_error(send, 400, "validation_error", NUL_MESSAGE)
            return
        scanner = _scanner_for(_header(scope, b"content-type"))
        if scanner is None:
            await self.app(scope, receive, send)
            return

        async def scanned_receive() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                scanner(message.get("body", b""), not message.get("more_body", False))
            return message

        await self.app(scope, scanned_receive, send)


def _scanner_for(raw_type: bytes) -> Callable[[bytes, bool], None] | None:
    """A function fed each piece of the body (and whether it is the last) that raises
    `NulInRequest` at the first NUL."""
    content_type = raw_type.lower()
    if content_type.startswith(_MULTIPART):
        # The raw header: a boundary is case-sensitive.
        _, options = parse_options_header(raw_type)
        boundary = options.get(b"boundary")
        # Without a boundary Starlette refuses the body itself.
        return _MultipartScanner(boundary).feed if boundary else None
    if content_type.startswith(_FORM):
        return _FormScanner().feed
    if content_type.startswith(b"application/json") or b"+json" in content_type:
        return _JsonScanner().feed
    return None


class _JsonScanner:
    """Raw NUL bytes and `\\u0000` escapes, found across piece boundaries."""

    def __init__(self) -> None:
        self._tail = b""

    def feed(self, data: bytes, last: bool) -> None:
        window = self._tail + data
        # The substring test first: the regex alone costs ~30 ms a megabyte.
        if b"\x00" in window or (b"\\u0000" in window and _JSON_NUL.search(window)):
            raise NulInRequest()
        self._tail = window[-_SCAN_OVERLAP:]


def _field_name(raw: bytes) -> str:
    return raw[:_MAX_NAME_BYTES].decode("utf-8", "replace").replace("\x00", "\\u0000")


class _FormScanner:
    """An urlencoded body: `%00` or a raw NUL in a field's name or value."""

    def __init__(self) -> None:
        self._name = b""
        self._tail = b""  # the value's last two bytes: `%00` may straddle two pieces
        self._bad = False
        self._parser = QuerystringParser(
            {
                "on_field_start": self._start,
                "on_field_name": self._on_name,
                "on_field_data": self._on_data,
                "on_field_end": self._end,
            }
        )

    def feed(self, data: bytes, last: bool) -> None:
        try:
            self._parser.write(data)
            if last:
                self._parser.finalize()  # the last field ends with the body, not with `&`
        except FormParserError:
            return  # malformed: Starlette's own parser answers for it

    def _start(self) -> None:
        self._name, self._tail, self._bad = b"", b"", False

    def _on_name(self, data: bytes, start: int, end: int) -> None:
        self._name += data[start:end]

    def _on_data(self, data: bytes, start: int, end: int) -> None:
        window = self._tail + data[start:end]
        self._bad = self._bad or b"%00" in window or b"\x00" in window
        self._tail = window[-2:]

    def _end(self) -> None:
        name = unquote_plus(self._name.decode("latin-1"))
        if self._bad or "\x00" in name:
            raise NulInRequest(_field_name(name.encode("utf-8", "replace")))


class _MultipartScanner:
    """A multipart body: a NUL in a part's headers (its name or file name) or in the value of
    a part that is not a file. File contents may be binary: the route that reads them decides."""

    def __init__(self, boundary: bytes) -> None:
        self._header_value = b""
        self._nul_in_headers = False
        self._name = "body"
        self._is_file = False
        self._parser = MultipartParser(
            boundary,
            {
                "on_part_begin": self._begin,
                "on_header_value": self._on_header_value,
                "on_header_end": self._header_end,
                "on_headers_finished": self._headers_finished,
                "on_part_data": self._on_data,
            },
        )

    def feed(self, data: bytes, last: bool) -> None:
        try:
            self._parser.write(data)
        except FormParserError:
            return  # malformed: Starlette's own parser answers for it

    def _begin(self) -> None:
        self._header_value, self._nul_in_headers = b"", False
        self._name, self._is_file = "body", False

    def _on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def _header_end(self) -> None:
        value, self._header_value = self._header_value, b""
        if value.lower().startswith(b"form-data"):
            _, options = parse_options_header(value)
            self._name = _field_name(options.get(b"name", b"body"))
            self._is_file = b"filename" in options
        self._nul_in_headers = self._nul_in_headers or b"\x00" in value

    def _headers_finished(self) -> None:
        if self._nul_in_headers:
            raise NulInRequest(self._name)

    def _on_data(self, data: bytes, start: int, end: int) -> None:
        if not self._is_file and b"\x00" in data[start:end]:
            raise NulInRequest(self._name)


def _header(scope: Scope, name: bytes) -> bytes:
    for key, value in scope.get("headers", []):
        if key == name:
            return bytes(value)
    return b""
