"""A Qdrant-like HTTP server for outage tests: it works, then fails the way a real one does.

It speaks the REST calls `QdrantIndex` makes (version check, collection exists / create / info,
payload index, upsert, delete, count, query, scroll), keeps points in memory, and can break
the point calls (the ones a request makes) on demand::

    with FakeQdrantServer() as qdrant:
        settings = make_settings(url, qdrant_url=qdrant.url)
        ...
        qdrant.fail("disconnect")  # read the next request, then close the connection unanswered
        qdrant.fail("error")       # answer 500 with a body the client must never see
        qdrant.kill()              # the process is gone: open connections cut, new ones refused

The collection calls keep working under `fail` (startup can still open the index); under `kill`
nothing answers. Queries ignore vectors and filters: they return the stored points in
insertion order. The fake checks nothing a real server would refuse.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import json
import re
import socket
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal, Self
from urllib.parse import urlsplit

Fault = Literal["disconnect", "error"]
VENDOR_SECRET = "fake-qdrant internal detail: segment 7 is corrupt"

_COLLECTION = re.compile(r"^/collections/(?P<name>[^/]+)(?P<rest>/.*)?$")


def _ok(result: Any) -> dict[str, Any]:
    return {"result": result, "status": "ok", "time": 0.0}


def _completed() -> dict[str, Any]:
    return {"operation_id": 0, "status": "completed"}


def _collection_info(metadata: dict[str, Any], points: int) -> dict[str, Any]:
    """The smallest `CollectionInfo` qdrant-client accepts, carrying the stored metadata."""
    return {
        "status": "green",
        "optimizer_status": "ok",
        "segments_count": 1,
        "points_count": points,
        "config": {
            "params": {},
            "hnsw_config": {"m": 16, "ef_construct": 100, "full_scan_threshold": 10000},
            "optimizer_config": {"default_segment_number": 0, "flush_interval_sec": 5},
            "metadata": metadata,
        },
        "payload_schema": {},
    }


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client hanging up, or `kill()` cutting a connection, is expected here.
        if not isinstance(sys.exc_info()[1], OSError):
            super().handle_error(request, client_address)


class FakeQdrantServer:
    """Qdrant's REST API on a loopback port, in a background thread."""

    def __init__(self) -> None:
        self.collections: dict[str, dict[str, Any]] = {}  # name -> metadata
        # name -> id -> {"payload": ..., "vector": ...}, as upserted
        self.points: dict[str, dict[str, dict[str, Any]]] = {}
        self.point_calls: list[str] = []  # "METHOD /path" of every point call received
        self._fault: Fault | None = None
        self._lock = threading.Lock()
        self._connections: set[socket.socket] = set()
        self._server = _Server(("127.0.0.1", 0), self._handler_class())
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="fake-qdrant", daemon=True
        )
        self._killed = False

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> Self:
        self._thread.start()
        return self

    def fail(self, fault: Fault) -> None:
        """From now on, every point call fails with `fault`."""
        with self._lock:
            self._fault = fault

    def kill(self) -> None:
        """Stop listening and cut every open connection (a crashed server)."""
        if self._killed:
            return
        self._killed = True
        self._server.shutdown()
        self._server.server_close()
        with self._lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
        self._thread.join(timeout=5)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.kill()

    # --- the API ------------------------------------------------------------------------------

    def _answer(self, method: str, path: str, body: dict[str, Any]) -> tuple[int, Any]:
        if path == "/":
            version = importlib.metadata.version("qdrant-client")
            return 200, {"title": "qdrant - vector search engine", "version": version}
        match = _COLLECTION.match(path)
        if match is None:
            return 404, {"status": {"error": f"Not found: {path}"}}
        name, rest = match["name"], match["rest"] or ""
        with self._lock:
            if (method, rest) == ("GET", "/exists"):
                return 200, _ok({"exists": name in self.collections})
            if (method, rest) == ("PUT", ""):
                self.collections[name] = dict(body.get("metadata") or {})
                self.points[name] = {}
                return 200, _ok(True)
            if name not in self.collections:
                return 404, {"status": {"error": f"Collection `{name}` doesn't exist!"}}
            points = self.points[name]
            if (method, rest) == ("GET", ""):
                return 200, _ok(_collection_info(self.collections[name], len(points)))
            if (method, rest) == ("DELETE", ""):
                del self.collections[name], self.points[name]
                return 200, _ok(True)
            if (method, rest) == ("PUT", "/index"):
                return 200, _ok(_completed())
            if (method, rest) == ("PUT", "/points"):
                for point in body["points"]:
                    points[str(point["id"])] = {
                        "payload": point.get("payload") or {},
                        "vector": point.get("vector") or {},
                    }
                return 200, _ok(_completed())
            if (method, rest) == ("POST", "/points/delete"):
                for point_id in _selected(points, body):
                    points.pop(point_id, None)
                return 200, _ok(_completed())
            if (method, rest) == ("POST", "/points/count"):
                return 200, _ok({"count": len(points)})
            if (method, rest) == ("POST", "/points/query"):
                limit = int(body.get("limit") or 10)
                chosen = _filtered(points, body.get("filter"))[:limit]
                found = [
                    {
                        "id": pid,
                        "version": 0,
                        "score": 1.0 / rank,
                        "payload": points[pid]["payload"],
                    }
                    for rank, pid in enumerate(chosen, start=1)
                ]
                return 200, _ok({"points": found})
            if (method, rest) == ("POST", "/points"):
                ids = [str(i) for i in body.get("ids") or []]
                return 200, _ok([_record(pid, points[pid], body) for pid in ids if pid in points])
            if (method, rest) == ("POST", "/points/scroll"):
                chosen = _filtered(points, body.get("filter"))
                found = [_record(pid, points[pid], body) for pid in chosen]
                return 200, _ok({"points": found, "next_page_offset": None})
        return 404, {"status": {"error": f"Not found: {method} {path}"}}

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # http.server writes headers and body separately (DESIGN.md section 9).
            disable_nagle_algorithm = True

            def setup(self) -> None:
                super().setup()
                with fake._lock:
                    fake._connections.add(self.connection)

            def finish(self) -> None:
                with fake._lock:
                    fake._connections.discard(self.connection)
                super().finish()

            def log_message(self, *_: Any) -> None:
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                body = json.loads(raw) if raw else {}
                path = urlsplit(self.path).path
                if "/points" in path:
                    with fake._lock:
                        fake.point_calls.append(f"{self.command} {path}")
                        fault = fake._fault
                    if fault == "disconnect":
                        # The request was read; the server goes away before answering.
                        self.close_connection = True
                        self.connection.shutdown(socket.SHUT_RDWR)
                        return
                    if fault == "error":
                        self._send(500, {"status": {"error": VENDOR_SECRET}})
                        return
                status, payload = fake._answer(self.command, path, body)
                self._send(status, payload)

            def _send(self, status: int, payload: Any) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_PUT = do_POST = do_DELETE = _handle

        return Handler


def _record(point_id: str, point: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
    """A point as a read returns it: the payload fields and named vectors the body asks for."""

    def chosen(stored: dict[str, Any], wanted: Any) -> dict[str, Any] | None:
        if not wanted:
            return None
        return stored if wanted is True else {k: v for k, v in stored.items() if k in wanted}

    return {
        "id": point_id,
        "payload": chosen(point["payload"], body.get("with_payload")),
        "vector": chosen(point["vector"], body.get("with_vector")),
    }


def _selected(points: dict[str, dict[str, Any]], body: dict[str, Any]) -> list[str]:
    """The ids a delete names: a list of ids, or a filter of `match` and `has_id` conditions."""
    if "points" in body:
        return [str(point_id) for point_id in body["points"]]
    return _filtered(points, body.get("filter"))


def _filtered(points: dict[str, dict[str, Any]], condition: dict[str, Any] | None) -> list[str]:
    """The ids of the points a filter of `match` and `has_id` conditions keeps (all: none)."""
    condition = condition or {}

    def matches(point_id: str, payload: dict[str, Any], clause: dict[str, Any]) -> bool:
        if "has_id" in clause:
            return point_id in {str(i) for i in clause["has_id"]}
        return bool(payload.get(clause["key"]) == clause["match"]["value"])

    return [
        point_id
        for point_id, point in points.items()
        if all(matches(point_id, point["payload"], c) for c in condition.get("must") or [])
        and not any(matches(point_id, point["payload"], c) for c in condition.get("must_not") or [])
    ]
