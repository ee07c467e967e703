"""The demo site and the embeddable widget (HTTP only; outside /api and the OpenAPI schema)."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse
from sqlalchemy.ext.asyncio import AsyncSession

from bookchat import chatkit
from bookchat.books.dependencies import CurrentBook
from bookchat.books.service import BookConfig
from bookchat.dependencies import SessionDep, SettingsDep
from bookchat.web.dependencies import BookPagesDep, DemoPageDep
from bookchat.web.service import (
    BookPages,
    Chapter,
    admin_page_html,
    chatkit_page_html,
    etag_matches,
    find_chapter,
    message_article,
    page_html,
    static_asset,
)

# The demo page loads only its own script and stylesheet and calls only this server. The
# widget styles itself with constructed stylesheets and CSSOM, which style-src does not govern.
DEMO_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: https:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
# The ChatKit demo also runs OpenAI's component: its script and frames come from OpenAI's CDN,
# and it styles itself inline.
CHATKIT_ORIGIN = "https://cdn.platform.openai.com"
CHATKIT_DEMO_CSP = (
    f"default-src 'self'; script-src 'self' {CHATKIT_ORIGIN}; frame-src {CHATKIT_ORIGIN}; "
    f"style-src 'self' 'unsafe-inline' {CHATKIT_ORIGIN}; font-src 'self' data: {CHATKIT_ORIGIN}; "
    f"img-src 'self' data: https:; connect-src 'self' {CHATKIT_ORIGIN}; base-uri 'none'; "
    "form-action 'none'; frame-ancestors 'none'"
)
# The admin page: its own script and stylesheet, and calls to this server's API only. Its
# charts are SVG built by the script (presentation attributes and CSSOM, which style-src does
# not govern); the CSV is saved from a blob, a download rather than a navigation.
ADMIN_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
STATIC_CACHE_CONTROL = "public, max-age=3600"


router = APIRouter(include_in_schema=False)


async def _page(
    request: Request,
    db: AsyncSession,
    pages: BookPages,
    book: BookConfig,
    chapters: list[Chapter],
    current: Chapter | None,
    *,
    status_code: int = 200,
) -> HTMLResponse:
    if current is not None:
        article = await pages.article(db, book.slug, current)
    elif chapters:
        article = message_article("Page not found", "No chapter of this book lives here.")
    else:
        article = message_article(
            "No chapters yet",
            "Ingest a book first with: uv run bookchat ingest (make run does it when the "
            "book is empty).",
        )
    body = page_html(
        book=book.slug,
        book_title=book.title,
        chapters=chapters,
        current=current,
        article=article,
        base_url=str(request.base_url),
    )
    return HTMLResponse(
        body,
        status_code=status_code,
        headers={"Content-Security-Policy": DEMO_CSP, "Cache-Control": "no-cache"},
    )


@router.get("/", response_class=HTMLResponse)
async def read_demo_page(
    request: Request, db: SessionDep, pages: BookPagesDep, book: CurrentBook
) -> HTMLResponse:
    """The demo: the book's first chapter, the chapter list and the chat widget."""
    chapters = await pages.chapters(db, book.slug)
    current = chapters[0] if chapters else None
    return await _page(request, db, pages, book, chapters, current)


@router.get("/book", response_class=HTMLResponse)
@router.get("/book/{route:path}", response_class=HTMLResponse)
async def read_chapter_page(
    request: Request, db: SessionDep, pages: BookPagesDep, page: DemoPageDep
) -> HTMLResponse:
    """A chapter at its Docusaurus route under /book, or under /book/{slug} for another book
    (404 page when there is none)."""
    book = page.book
    chapters = await pages.chapters(db, book.slug)
    if page.route is None:  # a book's home: its first chapter
        current = chapters[0] if chapters else None
    else:
        current = find_chapter(chapters, page.route)
    status_code = 200 if current is not None or page.route is None else 404
    return await _page(request, db, pages, book, chapters, current, status_code=status_code)


def _static(request: Request, name: str) -> Response:
    asset = static_asset(name)
    headers = {"Cache-Control": STATIC_CACHE_CONTROL, "ETag": asset.etag}
    if etag_matches(request.headers.get("if-none-match"), asset.etag):
        return Response(status_code=304, headers=headers)
    return Response(asset.body, media_type=asset.media_type, headers=headers)


@router.api_route("/widget.js", methods=["GET", "HEAD"])
async def read_widget_script(request: Request) -> Response:
    """The embeddable chat widget (one script, no dependencies)."""
    return _static(request, "widget.js")


@router.api_route("/demo.css", methods=["GET", "HEAD"])
async def read_demo_stylesheet(request: Request) -> Response:
    """The demo page's stylesheet."""
    return _static(request, "demo.css")


@router.api_route("/demo.js", methods=["GET", "HEAD"])
async def read_demo_script(request: Request) -> Response:
    """The demo page's script: the chapter menu on narrow screens."""
    return _static(request, "demo.js")


@router.get("/chatkit-demo", response_class=HTMLResponse)
async def read_chatkit_demo_page(settings: SettingsDep) -> HTMLResponse:
    """OpenAI's ChatKit front end against this server's POST /chatkit (needs to be online)."""
    body = chatkit_page_html(
        book_title=settings.book_title,
        domain_key=settings.chatkit_domain_key,
        api_url="/chatkit" if chatkit.available() else None,
    )
    return HTMLResponse(
        body,
        headers={
            "Content-Security-Policy": CHATKIT_DEMO_CSP,
            "Cache-Control": "no-cache",
            # ChatKit's frame checks which site embeds it against the domain key; the API's
            # `no-referrer` would hide even the origin from it.
            "Referrer-Policy": "strict-origin",
        },
    )


@router.api_route("/chatkit-demo.js", methods=["GET", "HEAD"])
async def read_chatkit_demo_script(request: Request) -> Response:
    """The ChatKit demo page's script: the component's options and a fetch with the token."""
    return _static(request, "chatkit-demo.js")


@router.get("/admin", response_class=HTMLResponse)
async def read_admin_page(settings: SettingsDep) -> HTMLResponse:
    """The admin page: sign in as an admin, then what readers ask (the insights API)."""
    return HTMLResponse(
        admin_page_html(book_title=settings.book_title),
        headers={
            "Content-Security-Policy": ADMIN_CSP,
            # Shows nothing but the shell; still, keep a signed-in admin's page out of caches.
            "Cache-Control": "no-store",
            "X-Robots-Tag": "noindex",
        },
    )


@router.api_route("/admin.js", methods=["GET", "HEAD"])
async def read_admin_script(request: Request) -> Response:
    """The admin page's script: sign-in, the insights calls, the charts and the CSV download."""
    return _static(request, "admin.js")


@router.api_route("/admin.css", methods=["GET", "HEAD"])
async def read_admin_stylesheet(request: Request) -> Response:
    """The admin page's stylesheet."""
    return _static(request, "admin.css")
