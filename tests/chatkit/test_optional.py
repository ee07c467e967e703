"""The `chatkit` extra is optional: without the SDK the app serves everything else."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# Run in a fresh interpreter where importing `chatkit` fails, as when bookchat[chatkit] is not
# installed (a None in sys.modules makes the import machinery report the module as absent).
WITHOUT_SDK = textwrap.dedent(
    """
    import sys
    sys.modules["chatkit"] = None

    import asyncio, json
    import httpx
    from asgi_lifespan import LifespanManager
    from bookchat.main import create_app
    from tests.conftest import make_settings

    async def main() -> None:
        app = create_app(make_settings(sys.argv[1]))
        async with LifespanManager(app) as manager:
            transport = httpx.ASGITransport(app=manager.app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                body = {"type": "threads.list", "params": {}}
                print(json.dumps({
                    "chatkit": (await client.post("/chatkit", json=body)).status_code,
                    "api": (await client.post("/api/v1/chatkit", json=body)).status_code,
                    "chat": (await client.post("/chat", json={"message": "hi"})).status_code,
                    "demo": (await client.get("/chatkit-demo")).text,
                    "loaded": "chatkit.server" in sys.modules,
                }))

    asyncio.run(main())
    """
)


def test_without_the_sdk_there_is_no_chatkit_route(sqlite_url: str) -> None:
    result = subprocess.run(
        [sys.executable, "-c", WITHOUT_SDK, sqlite_url],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout.strip().splitlines()[-1])
    assert (seen["chatkit"], seen["api"], seen["chat"]) == (404, 404, 200)
    assert "install bookchat[chatkit]" in seen["demo"]
    assert 'data-api-url=""' in seen["demo"]
    assert seen["loaded"] is False
