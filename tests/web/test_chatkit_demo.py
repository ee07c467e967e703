"""The ChatKit demo page over HTTP: OpenAI's component from its CDN, pointed at /chatkit."""

from __future__ import annotations

from bookchat.web.service import CHATKIT_SCRIPT
from tests.conftest import AppFactory, make_settings


class TestChatKitDemoPage:
    async def test_mounts_the_component_against_this_server(
        self, sqlite_url: str, app_factory: AppFactory
    ) -> None:
        settings = make_settings(sqlite_url, chatkit_domain_key="domain_pk_test", book_title="R&D")
        async with app_factory(settings) as client:
            page = await client.get("/chatkit-demo")
            script = await client.get("/chatkit-demo.js")

        assert page.status_code == 200
        html = page.text
        assert f'<script src="{CHATKIT_SCRIPT}" async></script>' in html
        assert '<script src="/chatkit-demo.js" defer></script>' in html
        assert '<openai-chatkit id="chatkit"' in html
        assert 'data-api-url="/chatkit"' in html
        assert 'data-domain-key="domain_pk_test"' in html
        assert 'data-book-title="R&amp;D"' in html
        # It says where the component comes from, and that it needs a network.
        assert "this page works only online" in html
        policy = page.headers["content-security-policy"]
        assert "script-src 'self' https://cdn.platform.openai.com" in policy
        assert "frame-ancestors 'none'" in policy
        assert script.status_code == 200
        assert script.headers["content-type"].startswith("text/javascript")
        # The custom fetch sends the reader's token, as docs/chatkit.md shows for Docusaurus.
        assert "Authorization" in script.text
        assert "Bearer" in script.text

    async def test_is_not_in_the_openapi_schema(
        self, sqlite_url: str, app_factory: AppFactory
    ) -> None:
        async with app_factory(make_settings(sqlite_url)) as client:
            paths = (await client.get("/openapi.json")).json()["paths"]
        assert "/chatkit-demo" not in paths
        assert "/chatkit" not in paths  # the root alias; the API's own path is listed
        assert "/api/v1/chatkit" in paths
