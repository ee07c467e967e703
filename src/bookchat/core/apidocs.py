"""`/docs` (Swagger UI) and `/redoc` with pinned assets, Subresource Integrity and a
Content-Security-Policy that allows exactly what each page loads.

No installed package ships the Swagger UI or ReDoc bundles, so the pages load them from
jsDelivr, pinned to one version each; the `integrity` hashes are those of the files in the npm
packages (jsDelivr serves them byte for byte), so a changed file is refused by the browser.
Upgrading: change the version and recompute the hash of the new file
(`npm pack swagger-ui-dist@X`, then `openssl dgst -sha384 -binary FILE | base64`).
"""

from __future__ import annotations

import base64
import hashlib
import html as markup
import json
import re
from dataclasses import dataclass

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_oauth2_redirect_html
from fastapi.responses import HTMLResponse

CDN = "https://cdn.jsdelivr.net"


@dataclass(frozen=True, slots=True)
class Asset:
    """A file on the CDN and the SRI hash of its exact bytes."""

    url: str
    integrity: str


SWAGGER_JS = Asset(
    f"{CDN}/npm/swagger-ui-dist@5.35.0/swagger-ui-bundle.js",
    "sha384-gjRm0bEPMeTmMh5jT2cHccIwCUZSTd8YC+j0d0sXw0MdGEfScduGpSyF3ZSSLkX9",
)
SWAGGER_CSS = Asset(
    f"{CDN}/npm/swagger-ui-dist@5.35.0/swagger-ui.css",
    "sha384-WlYgdmXYOOBWL5apwjDEZwN+U3HmXSSu5R6V5aGxEcf7z+KuRNwBhoxKVN1i3D5I",
)
REDOC_JS = Asset(
    f"{CDN}/npm/redoc@2.5.4/bundles/redoc.standalone.js",
    "sha384-w447zOpYfw/1Tv/5AK9NfHTlQIqE3RVR6KY62jCyy9zNDgO64cMwGGP1Fj0zJVf5",
)

# The "API docs by Redocly" link's image, which ReDoc always shows (it has no option to hide it).
REDOC_LOGO = "https://cdn.redoc.ly/redoc/logo-mini.svg"

_INLINE_SCRIPT = re.compile(r"<script>(.*?)</script>", re.DOTALL)


def _tag(asset: Asset, *, script: bool) -> str:
    attributes = f'integrity="{asset.integrity}" crossorigin="anonymous"'
    if script:
        return f'<script src="{asset.url}" {attributes}></script>'
    return f'<link rel="stylesheet" href="{asset.url}" {attributes}>'


def _page(title: str, head: str, body: str) -> str:
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{markup.escape(title)}</title>\n{head}</head>\n<body>\n{body}</body>\n</html>\n"
    )


def _policy(
    html: str,
    *,
    scripts: tuple[Asset, ...] = (),
    styles: tuple[Asset, ...] = (),
    images: tuple[str, ...] = (),
    workers: tuple[str, ...] = (),
) -> str:
    """The page's CSP: its own files by exact URL, its inline scripts by hash, nothing else.
    Inline styles are allowed: both bundles set styles at run time (ReDoc injects <style>
    elements), and a style cannot run code."""
    inline = [
        "'sha256-" + base64.b64encode(hashlib.sha256(code.encode()).digest()).decode() + "'"
        for code in _INLINE_SCRIPT.findall(html)
    ]
    script_src = " ".join([*(asset.url for asset in scripts), *inline]) or "'none'"
    style_src = " ".join([*(asset.url for asset in styles), "'unsafe-inline'"])
    return "; ".join(
        [
            "default-src 'none'",
            f"script-src {script_src}",
            f"style-src {style_src}",
            " ".join(["img-src 'self' data:", *images]),
            "connect-src 'self'",  # the OpenAPI document
            *([f"worker-src {' '.join(workers)}"] if workers else []),
            "base-uri 'none'",
            "form-action 'none'",
            "frame-ancestors 'none'",
        ]
    )


def _response(html: str, policy: str) -> HTMLResponse:
    return HTMLResponse(html, headers={"Content-Security-Policy": policy})


def swagger_ui_page(title: str, openapi_url: str, oauth2_redirect_url: str) -> HTMLResponse:
    """Swagger UI for the OpenAPI document (no third-party validator badge)."""
    config = {
        "url": openapi_url,
        "dom_id": "#swagger-ui",
        "layout": "BaseLayout",
        "deepLinking": True,
        "showExtensions": True,
        "showCommonExtensions": True,
        "validatorUrl": None,  # the badge would send the schema's URL to validator.swagger.io
    }
    redirect = json.dumps(oauth2_redirect_url)
    init = (
        f"const config = {json.dumps(config)};\n"
        f"config.oauth2RedirectUrl = window.location.origin + {redirect};\n"
        "const presets = SwaggerUIBundle.presets;\n"
        "config.presets = [presets.apis, SwaggerUIBundle.SwaggerUIStandalonePreset];\n"
        "window.ui = SwaggerUIBundle(config);\n"
    )
    html = _page(
        f"{title} - Swagger UI",
        _tag(SWAGGER_CSS, script=False) + "\n",
        f'<div id="swagger-ui"></div>\n{_tag(SWAGGER_JS, script=True)}\n<script>{init}</script>\n',
    )
    return _response(html, _policy(html, scripts=(SWAGGER_JS,), styles=(SWAGGER_CSS,)))


def oauth2_redirect_page() -> HTMLResponse:
    """The page Swagger UI's OAuth2 flow returns to (FastAPI's, with its one inline script)."""
    html = bytes(get_swagger_ui_oauth2_redirect_html().body).decode()
    return _response(html, _policy(html))


def redoc_page(title: str, openapi_url: str) -> HTMLResponse:
    """ReDoc for the OpenAPI document, without web fonts (no request to a font service)."""
    html = _page(
        f"{title} - ReDoc",
        "",
        f'<redoc spec-url="{markup.escape(openapi_url)}"></redoc>\n{_tag(REDOC_JS, script=True)}\n',
    )
    # Its search index runs in a worker made from a blob.
    policy = _policy(html, scripts=(REDOC_JS,), images=(REDOC_LOGO,), workers=("blob:",))
    return _response(html, policy)


def add_api_docs(app: FastAPI, *, docs_url: str = "/docs", redoc_url: str = "/redoc") -> None:
    """Serve the two documentation pages (create the app with `docs_url=None, redoc_url=None`)."""
    openapi_url = app.openapi_url or "/openapi.json"
    oauth2_redirect_url = f"{docs_url}/oauth2-redirect"

    async def swagger_ui() -> HTMLResponse:
        return swagger_ui_page(app.title, openapi_url, oauth2_redirect_url)

    async def swagger_ui_redirect() -> HTMLResponse:
        return oauth2_redirect_page()

    async def redoc() -> HTMLResponse:
        return redoc_page(app.title, openapi_url)

    methods = ["GET", "HEAD"]  # as FastAPI's own docs routes answer
    app.add_api_route(docs_url, swagger_ui, methods=methods, include_in_schema=False)
    app.add_api_route(
        oauth2_redirect_url, swagger_ui_redirect, methods=methods, include_in_schema=False
    )
    app.add_api_route(redoc_url, redoc, methods=methods, include_in_schema=False)
