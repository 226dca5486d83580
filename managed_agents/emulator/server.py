"""The emulator over loopback HTTP: a threaded stdlib server and the in-process ``EmulatorServer``.

Every connection gets its own daemon thread, so many SSE streams can stay open at
once; nothing blocks while holding the state lock.
"""

from __future__ import annotations

import http.server
import json
import logging
import queue
import select
import socket
import threading
import time
import urllib.parse
from typing import Any

from . import control, errors
from .eventlog import STREAM_CLOSED
from .events import stream_close, stream_open
from .knobs import KnobError, Knobs, fault_applies, knobs_updated, lost_applies
from .routes import ROUTE_NAMES, STREAM, Request, route_match
from .state import EmulatorState

log = logging.getLogger(__name__)

BETA_HEADER_VALUE = "managed-agents-2026-04-01"
STREAM_POLL_SECONDS = 0.25
STREAM_PING_SECONDS = 10.0


class EmulatorHTTPServer(http.server.ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], state: EmulatorState) -> None:
        self.state = state
        self.closing = threading.Event()
        super().__init__(address, EmulatorRequestHandler)


class EmulatorRequestHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body are separate writes; Nagle would add ~40 ms each
    server: EmulatorHTTPServer
    request_id = ""  # this request's id: the ``request-id`` header and the ``request_id`` of an error body

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        log.debug("emulator %s - %s", self.address_string(), format % args)

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    # --- plumbing -----------------------------------------------------------------------

    def _send_json(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.send_header("request-id", self.request_id or errors.new_request_id())
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def _send_error(self, error: errors.ApiError) -> None:
        self._send_json(error.status, error.body(self.request_id), error.headers)

    def _read_raw_body(self) -> bytes:
        """Read the whole body first, always, so a refused request never desynchronises keep-alive."""
        length = int(self.headers.get("content-length") or 0)
        return self.rfile.read(length) if length else b""

    @staticmethod
    def _parse_body(raw: bytes) -> dict[str, Any]:
        if not raw.strip():
            return {}
        try:
            body = json.loads(raw)
        except ValueError:
            raise errors.invalid_request("The request body is not valid JSON.") from None
        if not isinstance(body, dict):
            raise errors.invalid_request("The request body must be a JSON object.")
        return body

    def _dispatch(self, method: str) -> None:
        url = urllib.parse.urlsplit(self.path)
        self.request_id = errors.new_request_id()
        try:
            raw_body = self._read_raw_body()
            if url.path.startswith("/_emulator/"):
                operation = control.CONTROL_ROUTES.get((method, url.path))
                if operation is None:
                    raise errors.not_found("emulator control endpoint", f"{method} {url.path}")
                self._send_json(200, operation(self.server.state, self._parse_body(raw_body)))
                return
            self._dispatch_api(method, url, raw_body)
        except errors.ApiError as refusal:
            self._send_error(refusal)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        except Exception:
            log.exception("emulator failed on %s %s", method, self.path)
            self._send_error(errors.internal_error("The emulator failed on this request; see its log."))

    def _dispatch_api(self, method: str, url: urllib.parse.SplitResult, raw_body: bytes) -> None:
        state = self.server.state
        route, path_params, path_known = route_match(method, url.path)
        with state.lock:
            state.request_counts[route.name if route else f"{method} (unknown route)"] += 1
        if route is None:
            if path_known:
                raise errors.ApiError(405, "invalid_request_error", f"{method} is not allowed on {url.path}.")
            raise errors.not_found("route", url.path)
        self._check_headers()
        self._maybe_fault(route.name)
        query_lists = urllib.parse.parse_qs(url.query, keep_blank_values=True)
        request = Request(
            path_params=path_params,
            query={name: values[-1] for name, values in query_lists.items()},
            query_lists=query_lists,
            body=self._parse_body(raw_body),
        )
        result = route.operation(state, request)
        if result is STREAM:
            self._stream(path_params["session_id"])
            return
        if self._response_lost(route.name):
            return
        self._send_json(200, result)

    def _check_headers(self) -> None:
        if not (self.headers.get("x-api-key") or self.headers.get("authorization")):
            raise errors.ApiError(
                401, "authentication_error", "No API key: send an x-api-key header (any value works here)."
            )
        betas = [value.strip() for value in (self.headers.get("anthropic-beta") or "").split(",")]
        if BETA_HEADER_VALUE not in betas:
            raise errors.invalid_request(
                f"This endpoint is in beta: send the header anthropic-beta: {BETA_HEADER_VALUE}."
            )

    def _draw(self, knob: str) -> bool:
        state = self.server.state
        with state.lock:
            rate = getattr(state.knobs, knob)
            hit = rate > 0 and state.fault_random.random() < rate
            if hit:
                state.fault_counts[knob] += 1
            return hit

    def _response_lost(self, route_name: str) -> bool:
        """The work is done; maybe lose its answer: a 500, or a connection closed with no response at all."""
        with self.server.state.lock:
            knobs = self.server.state.knobs
        if not lost_applies(knobs, route_name) or not self._draw("fault_lost"):
            return False
        if knobs.lost_mode == "close":
            self.close_connection = True
            return True
        raise errors.internal_error("Emulated fault: the request was carried out but its response was lost.")

    def _maybe_fault(self, route_name: str) -> None:
        """Faults before the work: 500, 429 (with retry-after) or 529, on the routes ``fault_routes`` names."""
        with self.server.state.lock:
            applies = fault_applies(self.server.state.knobs, route_name)
        if not applies:
            return
        if self._draw("fault_529"):
            raise errors.overloaded(f"Emulated fault: overloaded on {route_name}; try again shortly.")
        if self._draw("fault_500"):
            raise errors.internal_error(f"Emulated fault: internal server error on {route_name}.")
        if self._draw("fault_429"):
            with self.server.state.lock:
                retry_after = self.server.state.knobs.retry_after
            raise errors.rate_limited(
                f"Emulated fault: rate limited on {route_name}. Retry after {retry_after:g} s.",
                retry_after_seconds=retry_after,
            )

    # --- server-sent events ---------------------------------------------------------------

    def _client_gone(self) -> bool:
        try:
            readable, _, _ = select.select([self.connection], [], [], 0)
            return bool(readable) and self.connection.recv(1, socket.MSG_PEEK) == b""
        except (OSError, ValueError):
            return True

    def _stream(self, session_id: str) -> None:
        """Events recorded after subscription, as ``event: <type>`` / ``data: <json>`` pairs, until closed.

        Liveness is checked by peeking at the socket rather than by writing, so an idle
        stream costs no bytes; a ``ping`` event (which the SDK skips) goes out now and then.
        """
        session, subscriber = stream_open(self.server.state, session_id)
        self.close_connection = True
        try:
            self.send_response(200)
            self.send_header("content-type", "text/event-stream")
            self.send_header("cache-control", "no-cache")
            self.send_header("connection", "close")
            self.send_header("request-id", self.request_id)
            self.end_headers()
            self.wfile.flush()
            last_write = time.monotonic()
            # A faulted stream delivers this many events, then an error event or a silent close.
            fault = "error" if self._draw("fault_stream_error") else "close" if self._draw("fault_stream_close") else ""
            with self.server.state.lock:
                left_before_fault = self.server.state.knobs.stream_fault_after
            while not self.server.closing.is_set():
                try:
                    event = subscriber.get(timeout=STREAM_POLL_SECONDS)
                except queue.Empty:
                    if self._client_gone():
                        return
                    if time.monotonic() - last_write >= STREAM_PING_SECONDS:
                        self.wfile.write(b'event: ping\ndata: {"type": "ping"}\n\n')
                        self.wfile.flush()
                        last_write = time.monotonic()
                    continue
                if event is STREAM_CLOSED:
                    return
                if fault and left_before_fault <= 0:
                    self._stream_fault(fault)
                    return
                self.wfile.write(f"event: {event['type']}\ndata: {json.dumps(event)}\n\n".encode())
                self.wfile.flush()
                last_write = time.monotonic()
                left_before_fault -= 1
        except (BrokenPipeError, ConnectionResetError, OSError):
            return
        finally:
            stream_close(self.server.state, session, subscriber)

    def _stream_fault(self, fault: str) -> None:
        """End a stream mid-turn the two ways the live API can: an SSE ``error`` event, or a close with no word.

        The event that was due is not written, so the client must recover it from the history.
        """
        if fault == "error":
            body = errors.overloaded("Emulated fault: the event stream failed (overloaded); reconnect.").body(
                self.request_id
            )
            self.wfile.write(f"event: error\ndata: {json.dumps(body)}\n\n".encode())
            self.wfile.flush()


class EmulatorServer:
    """The emulator in a background thread; ``port=0`` picks a free port (see ``base_url``)."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, **knobs: Any) -> None:
        try:
            default_knobs = knobs_updated(Knobs(), knobs, route_names=ROUTE_NAMES)
        except KnobError as refusal:
            raise ValueError(str(refusal)) from None
        self.host = host
        self.port = port
        self.state = EmulatorState(default_knobs)
        self._httpd: EmulatorHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        if self._httpd is None:
            raise RuntimeError("The emulator is not started; call start() first.")
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> None:
        if self._httpd is not None:
            return
        self._httpd = EmulatorHTTPServer((self.host, self.port), self.state)
        self.state.scheduler.start()
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="emulator-http", daemon=True)
        self._thread.start()

    def serve_forever(self) -> None:
        """Serve in the calling thread until interrupted (the management command uses this)."""
        self.start()
        assert self._thread is not None
        try:
            while self._thread.is_alive():
                self._thread.join(timeout=0.5)
        finally:
            self.stop()

    def stop(self) -> None:
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        httpd.closing.set()
        control.reset(self.state)
        httpd.shutdown()
        httpd.server_close()
        self.state.scheduler.stop()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def configure(self, **knobs: Any) -> dict[str, Any]:
        """Change knobs at run time; unknown names or bad values raise ``ValueError`` and change nothing."""
        try:
            return control.configure(self.state, knobs)
        except errors.ApiError as refusal:
            raise ValueError(refusal.message) from None

    def reset(self) -> dict[str, Any]:
        """Empty state and the knobs this server was constructed with."""
        return control.reset(self.state)

    def stats(self) -> dict[str, Any]:
        return control.stats(self.state)

    def fire_deployment(self, deployment_id: str) -> dict[str, Any]:
        """Fire a scheduled deployment now (same as ``POST /_emulator/deployments/fire``); refusals raise ``ValueError``."""
        try:
            return control.CONTROL_ROUTES[("POST", "/_emulator/deployments/fire")](
                self.state, {"deployment_id": deployment_id}
            )
        except errors.ApiError as refusal:
            raise ValueError(refusal.message) from None
