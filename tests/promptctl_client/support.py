"""Helpers for the client's tests: run ``python -m promptctl_client`` as a real process; a canned-JSON server.

``CannedApi`` is a stand-in for the server, used only for what is the client's
own (argv handling, the config file, output formatting, exit statuses, how
failures are worded); what the server does is tested against the real server
(test_real_server.py).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parents[2]


@dataclass
class Result:
    code: int
    out: str
    err: str

    def json(self):
        return json.loads(self.out)


def client_env(config_home: Path, **extra: str) -> dict[str, str]:
    """The environment of a client process: no inherited PROMPTCTL_* settings, its own config directory."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PROMPTCTL_")}
    env.update({"XDG_CONFIG_HOME": str(config_home), "HOME": str(config_home), "NO_PROXY": "*", **extra})
    for proxy in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY"):
        env.pop(proxy, None)
    return env


def run_client(*args: str, env: dict[str, str], stdin: str = "", timeout: float = 60) -> Result:
    process = subprocess.run(
        [sys.executable, "-m", "promptctl_client", *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=env,
        cwd=BASE_DIR,
        timeout=timeout,
    )
    return Result(process.returncode, process.stdout, process.stderr)


@dataclass
class CannedApi:
    """A loopback HTTP server answering ``(method, path)`` with canned ``(status, body)``; it records requests."""

    routes: dict[tuple[str, str], tuple[int, object]] = field(default_factory=dict)
    requests: list[dict] = field(default_factory=list)

    def __post_init__(self) -> None:
        canned = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                canned.requests.append(
                    {
                        "method": self.command,
                        "path": self.path,
                        "authorization": self.headers.get("Authorization"),
                        "body": json.loads(body) if body else None,
                    }
                )
                path = self.path.split("?", 1)[0]
                status, payload = canned.routes.get((self.command, path), (404, {"detail": f"no route {path}"}))
                raw = payload.encode() if isinstance(payload, str) else json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json" if not isinstance(payload, str) else "text/html")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            do_GET = do_POST = _answer

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
