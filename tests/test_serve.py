"""`bookchat serve` as operators run it: real processes, signals, migrations, workers."""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from bookchat.cli import app
from bookchat.core.config import Settings
from tests.conftest import free_port
from tests.fakes.openai_server import FakeOpenAIServer

runner = CliRunner()
SETTING_NAMES = {name.upper() for name in Settings.model_fields}
SELECTION = {
    "message": "Explain this.",
    "selected_text": "A publisher sends messages on a topic; subscribers receive them.",
}


# Commands read the environment through the cached get_settings().
pytestmark = pytest.mark.usefixtures("fresh_settings")


def server_env(tmp_path: Path, **settings: str) -> dict[str, str]:
    """The environment of a served process: this test's stores, nothing from the developer's."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k.upper() not in SETTING_NAMES and k != "PROMETHEUS_MULTIPROC_DIR"
    }
    env.update(
        DATABASE_URL=f"sqlite:///{tmp_path / 'bookchat.db'}",
        QDRANT_PATH=str(tmp_path / "qdrant"),
        EMBEDDINGS_PROVIDER="none",
        MIGRATE_ON_START="true",
        LOG_FORMAT="json",
        **settings,
    )
    return env


@dataclass
class Served:
    base: str
    process: subprocess.Popen[str]
    output: str = ""  # everything it printed, once it has stopped


@contextmanager
def serving(env: dict[str, str], cwd: Path, *args: str) -> Iterator[Served]:
    """`bookchat serve` in its own process, once it answers; stopped (SIGTERM) on the way out."""
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "bookchat.cli", "serve", "--port", str(port), *args],
        env=env,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90  # a loaded machine can take a while to import
        while True:
            try:
                httpx.get(f"{base}/api/v1/health/live", timeout=1)
                break
            except httpx.TransportError:
                if server.poll() is not None or time.monotonic() > deadline:
                    output = server.communicate(timeout=5)[0] if server.poll() is not None else ""
                    raise RuntimeError(f"the server did not start:\n{output}") from None
                time.sleep(0.1)
        served = Served(base, server)
        yield served
    finally:
        if server.poll() is None:
            server.terminate()
        output = server.communicate(timeout=60)[0]
    served.output = output


def read_events(lines: Iterator[str]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(event, payload) pairs of an SSE body, as they arrive."""
    name = None
    for line in lines:
        if line.startswith("event:"):
            name = line.partition(":")[2].strip()
        elif line.startswith("data:") and name is not None:
            yield name, json.loads(line.partition(":")[2])
            name = None


def stored_replies(database: Path) -> list[tuple[str, str]]:
    """(status, content) of every assistant message in the served database."""
    with sqlite3.connect(database) as db:
        return list(db.execute("select status, content from messages where role = 'assistant'"))


def slow_model_env(fake: FakeOpenAIServer, tmp_path: Path, **settings: str) -> dict[str, str]:
    return server_env(
        tmp_path,
        LLM_PROVIDER="openai",
        OPENAI_API_KEY="sk-test",
        OPENAI_BASE_URL=fake.base_url,
        LLM_MAX_RETRIES="0",
        **settings,
    )


def assert_stopped_cleanly(code: int, output: str) -> None:
    # uvicorn re-raises the SIGTERM it caught once its shutdown is complete: the exit status
    # says "terminated by SIGTERM", and the log says whether the shutdown ran to its end.
    assert code in (0, -signal.SIGTERM)
    assert "Application shutdown complete" in output


class TestWorkers:
    def test_several_workers_need_a_qdrant_server(self, monkeypatch: pytest.MonkeyPatch) -> None:
        result = runner.invoke(app, ["serve", "--workers", "2"])
        assert result.exit_code == 2
        assert "one process only" in result.output
        assert "QDRANT_URL" in result.output

    def test_workers_and_reload_do_not_mix(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("QDRANT_URL", "http://127.0.0.1:6333")
        result = runner.invoke(app, ["serve", "--workers", "2", "--reload"])
        assert result.exit_code == 2
        assert "--reload" in result.output

    def test_a_bad_trusted_proxy_is_refused_before_serving(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("TRUSTED_PROXIES", "10.0.0.1,proxy.local")
        result = runner.invoke(app, ["serve"])
        assert result.exit_code == 2
        assert "TRUSTED_PROXIES: 'proxy.local'" in result.output

    def test_zero_workers_is_refused(self) -> None:
        result = runner.invoke(app, ["serve", "--workers", "0"])
        assert result.exit_code == 2


def test_version() -> None:
    from bookchat import __version__

    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.output.strip() == f"bookchat {__version__}"


def test_migrates_on_start_when_asked(tmp_path: Path) -> None:
    with serving(server_env(tmp_path), tmp_path) as served:
        ready = httpx.get(f"{served.base}/api/v1/health/ready", timeout=5)
        chat = httpx.post(f"{served.base}/api/v1/chat", json=SELECTION, timeout=10)
    assert ready.status_code == 200
    assert chat.status_code == 200
    with sqlite3.connect(tmp_path / "bookchat.db") as db:
        (version,) = db.execute("select version_num from alembic_version").fetchone()
    assert version


class TestGracefulShutdown:
    def test_open_streams_finish_before_the_server_stops(
        self, tmp_path: Path, fake_openai: FakeOpenAIServer
    ) -> None:
        words = [f"word{i} " for i in range(20)]
        fake_openai.reply = lambda request: "".join(words)
        fake_openai.token_delay = 0.1  # two seconds of answer
        with serving(slow_model_env(fake_openai, tmp_path), tmp_path) as served:
            seen = []
            with httpx.stream(
                "POST", f"{served.base}/api/v1/chat/stream", json=SELECTION, timeout=30
            ) as response:
                for name, payload in read_events(response.iter_lines()):
                    seen.append((name, payload))
                    if name == "token" and sum(n == "token" for n, _ in seen) == 1:
                        served.process.send_signal(signal.SIGTERM)
            code = served.process.wait(timeout=30)

        names = [name for name, _ in seen]
        assert names[-1] == "done"
        assert names.count("token") == len(words)
        assert_stopped_cleanly(code, served.output)
        assert stored_replies(tmp_path / "bookchat.db") == [("complete", "".join(words).strip())]

    def test_streams_past_the_timeout_are_cut_and_kept(
        self, tmp_path: Path, fake_openai: FakeOpenAIServer
    ) -> None:
        fake_openai.reply = lambda request: " ".join(f"w{i}" for i in range(100))
        fake_openai.token_delay = 0.1  # ten seconds of answer, one second of grace
        env = slow_model_env(fake_openai, tmp_path, SHUTDOWN_TIMEOUT_SECONDS="1")
        with serving(env, tmp_path) as served:
            names = []
            with httpx.stream(
                "POST", f"{served.base}/api/v1/chat/stream", json=SELECTION, timeout=30
            ) as response:
                try:
                    for name, _ in read_events(response.iter_lines()):
                        names.append(name)
                        if names.count("token") == 1:
                            stopped_at = time.monotonic()
                            served.process.send_signal(signal.SIGTERM)
                except httpx.RemoteProtocolError:
                    pass  # the server closed the stream: what this test expects
                ended_at = time.monotonic()
            code = served.process.wait(timeout=30)

        assert "done" not in names
        assert 0.5 < ended_at - stopped_at < 6
        assert_stopped_cleanly(code, served.output)
        [(status, content)] = stored_replies(tmp_path / "bookchat.db")
        assert status == "partial"
        assert content.startswith("w0 w1")


def test_metrics_are_shared_through_the_multiprocess_folder(tmp_path: Path) -> None:
    """What several workers do: each writes its values to PROMETHEUS_MULTIPROC_DIR and
    /metrics adds them up (one process here; embedded Qdrant cannot serve several)."""
    folder = tmp_path / "metrics"
    folder.mkdir()
    env = server_env(tmp_path) | {"PROMETHEUS_MULTIPROC_DIR": str(folder)}
    with serving(env, tmp_path) as served:
        for _ in range(3):
            httpx.get(f"{served.base}/api/v1/health/live", timeout=5)
        text = httpx.get(f"{served.base}/metrics", timeout=5).text
    assert list(folder.glob("*.db"))
    # Three requests, and the one `serving` made to see the server was up.
    assert (
        'bookchat_http_requests_total{book="",method="GET",route="/api/v1/health/live",'
        'status="200"} 4.0' in text
    )
    assert "process_resident_memory_bytes" not in text  # per-process facts do not add up


class TestForwardedFor:
    """Whose address `bookchat serve` counts: X-Forwarded-For only from TRUSTED_PROXIES."""

    @staticmethod
    def chat_as(served: Served, address: str) -> int:
        response = httpx.post(
            f"{served.base}/api/v1/chat",
            json=SELECTION,
            headers={"X-Forwarded-For": address},
            timeout=10,
        )
        return response.status_code

    def test_without_trusted_proxies_nobody_is_believed(self, tmp_path: Path) -> None:
        # The client is on 127.0.0.1, which uvicorn trusts by default.
        with serving(server_env(tmp_path, RATE_LIMIT_CHAT="1/minute"), tmp_path) as served:
            codes = [self.chat_as(served, address) for address in ("1.1.1.1", "2.2.2.2")]
        assert codes == [200, 429]  # one client, one quota, whatever it claims

    def test_a_trusted_proxy_is_believed(self, tmp_path: Path) -> None:
        env = server_env(tmp_path, RATE_LIMIT_CHAT="1/minute", TRUSTED_PROXIES="127.0.0.1")
        with serving(env, tmp_path) as served:
            codes = [self.chat_as(served, address) for address in ("1.1.1.1", "2.2.2.2", "1.1.1.1")]
        assert codes == [200, 200, 429]


def cut_within(sock: socket.socket, trickle: bytes, bound: float) -> tuple[bool, bytes]:
    """Send `trickle` one byte a second (nothing when empty) until the server closes the
    connection or `bound` seconds pass; whether it closed, and what it answered."""
    sock.settimeout(1.0)
    answer = b""
    deadline = time.monotonic() + bound
    position = 0
    while time.monotonic() < deadline:
        try:
            if trickle:
                sock.sendall(trickle[position % len(trickle) : position % len(trickle) + 1])
                position += 1
            chunk = sock.recv(4096)
        except TimeoutError:
            continue
        except (BrokenPipeError, ConnectionResetError):
            return True, answer
        if not chunk:
            return True, answer
        answer += chunk
    return False, answer


def read_response(sock: socket.socket) -> bytes:
    """One whole response with a Content-Length body (the health check's)."""
    sock.settimeout(10)
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(4096)
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    while len(body) < length:
        body += sock.recv(4096)
    return head


class TestSlowClients:
    """Slow-loris: a client that sends its request too slowly is cut, the server keeps serving."""

    # Generous: the point is that the connection is cut at all, not how fast.
    BOUND_SECONDS = 30.0

    def test_slow_headers_silence_and_slow_bodies_are_cut(self, tmp_path: Path) -> None:
        env = server_env(tmp_path, HTTP_HEADER_TIMEOUT_SECONDS="2", HTTP_BODY_TIMEOUT_SECONDS="2")
        with serving(env, tmp_path) as served:
            address = ("127.0.0.1", int(served.base.rsplit(":", 1)[1]))
            results = {}
            with socket.create_connection(address) as sock:
                sock.sendall(b"GET /api/v1/health/live HTTP/1.1\r\nHost: bookchat\r\n")
                results["slow headers"] = cut_within(sock, b"X-Padding: a\r\n", self.BOUND_SECONDS)
            with socket.create_connection(address) as sock:
                results["silence"] = cut_within(sock, b"", self.BOUND_SECONDS)
            with socket.create_connection(address) as sock:
                sock.sendall(
                    b"POST /api/v1/chat HTTP/1.1\r\nHost: bookchat\r\n"
                    b"Content-Type: application/json\r\nContent-Length: 4000\r\n\r\n"
                )
                results["slow body"] = cut_within(sock, b" ", self.BOUND_SECONDS)
            with socket.create_connection(address) as sock:
                # A kept-alive connection: the next request's headers are timed too.
                sock.sendall(b"GET /api/v1/health/live HTTP/1.1\r\nHost: bookchat\r\n\r\n")
                first = read_response(sock)
                sock.sendall(b"GET /api/v1/health/live HTTP/1.1\r\n")
                results["slow second request"] = cut_within(
                    sock, b"X-Padding: a\r\n", self.BOUND_SECONDS
                )
            still_serving = httpx.get(f"{served.base}/api/v1/health/live", timeout=10)

        for case, (closed, answer) in results.items():
            assert closed, case
            assert answer == b"" or answer.startswith(b"HTTP/1.1 408 "), (case, answer)
        assert first.startswith(b"HTTP/1.1 200 ")
        head, _, body = results["slow headers"][1].partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 408 ")
        error = json.loads(body)
        assert error["error"]["code"] == "request_timeout"
        assert f"x-request-id: {error['request_id']}".encode() in head
        assert still_serving.status_code == 200
