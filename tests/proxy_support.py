"""A loopback HTTP proxy in front of the emulator: it can hold chosen requests and rewrite agent replies.

Tests use it to stand where the network is slow (a request held until the test
releases it, to show nothing waits on a database lock meanwhile) and where a
newer server answers (agent objects with fields this SDK has never seen). It
forwards real HTTP both ways; the SDK and the emulator are untouched.
"""

from __future__ import annotations

import http.client
import http.server
import json
import re
import threading
import urllib.parse
from collections.abc import Callable
from typing import Any

_HOP_BY_HOP = {"connection", "transfer-encoding", "content-length", "keep-alive"}


class EmulatorProxy:
    def __init__(self, upstream: str) -> None:
        parsed = urllib.parse.urlsplit(upstream)
        self.upstream = (parsed.hostname or "127.0.0.1", parsed.port or 80)
        self.hold_pattern: re.Pattern[str] | None = None  # "METHOD /path" requests matching it wait for release()
        self.hold_after_upstream = False  # hold the reply (the server has done the work) instead of the request
        self.rewrite_agent: Callable[[dict[str, Any]], dict[str, Any]] | None = None
        self._held = 0
        self._arrival = threading.Condition()
        self._release = threading.Event()
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
                pass

            def _forward(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else None
                held = bool(
                    proxy.hold_pattern and proxy.hold_pattern.fullmatch(f"{self.command} {self.path.split('?')[0]}")
                )
                if held and not proxy.hold_after_upstream:
                    proxy._hold()
                upstream = http.client.HTTPConnection(*proxy.upstream, timeout=30)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP | {"host"}}
                upstream.request(self.command, self.path, body=body, headers=headers)
                response = upstream.getresponse()
                payload = response.read()
                if held and proxy.hold_after_upstream:
                    proxy._hold()
                if proxy.rewrite_agent and "json" in (response.getheader("content-type") or ""):
                    payload = json.dumps(proxy._rewritten(json.loads(payload))).encode()
                self.send_response(response.status)
                for key, value in response.getheaders():
                    if key.lower() not in _HOP_BY_HOP:
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)
                upstream.close()

            do_GET = do_POST = do_DELETE = _forward

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def _rewritten(self, value: Any) -> Any:
        assert self.rewrite_agent is not None
        if isinstance(value, dict) and value.get("type") == "agent":
            return self.rewrite_agent(value)
        if isinstance(value, dict) and isinstance(value.get("data"), list):
            return {**value, "data": [self._rewritten(item) for item in value["data"]]}
        return value

    def _hold(self) -> None:
        with self._arrival:
            self._held += 1
            self._arrival.notify_all()
        self._release.wait(timeout=30)

    def wait_held(self, count: int, timeout: float = 10) -> bool:
        """Whether ``count`` held requests have arrived within ``timeout`` seconds."""
        with self._arrival:
            return self._arrival.wait_for(lambda: self._held >= count, timeout=timeout)

    def release(self) -> None:
        self._release.set()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._release.set()
        self._server.shutdown()
        self._server.server_close()
