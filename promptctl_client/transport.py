"""One HTTP call to the change-control API, and every way it can fail as one line for people.

- the server refused (400, 401, 403, 404, 409): its ``detail`` is the line, as
  the server wrote it (a 401 adds where the token came from and how to renew it);
- the server could not be reached, or answered something that is not the
  promptctl API (HTML, a 502 from a proxy, a 404 without our error shape): the
  line names PROMPTCTL_URL (or the config file) and what to check.

Both raise ``ClientError``; ``__main__`` prints ``error: <line>`` and exits 1.
"""

from __future__ import annotations

import json
import os
from typing import Any

from promptctl_client.config import API_PREFIX, Settings

USER_AGENT = "promptctl-client/0.1"


class ClientError(Exception):
    """A refusal or a failure, worded as one line for people; exit status 1."""


def _timeout() -> float:
    try:
        return float(os.environ.get("PROMPTCTL_TIMEOUT", "") or 60)
    except ValueError:
        return 60.0


def _detail(body: Any) -> str:
    """The one line of the error shape ``{"detail": "...", "errors": [...]}`` (or ninja's list of errors)."""
    if not isinstance(body, dict):
        return ""
    detail = body.get("detail")
    if isinstance(detail, str):
        return detail
    problems = detail if isinstance(detail, list) else body.get("errors")
    if isinstance(problems, list) and problems:
        parts = []
        for problem in problems:
            if isinstance(problem, dict):
                where = ".".join(str(p) for p in problem.get("loc", []) if p not in ("body", "query", "path"))
                parts.append(f"{where}: {problem.get('msg', problem)}" if where else str(problem.get("msg", problem)))
            else:
                parts.append(str(problem))
        return "; ".join(parts)
    return ""


class Api:
    """The API at ``settings.url`` + ``/api/v1`` with the bearer token."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def where(self) -> str:
        source = self.settings.url_source
        return f"{self.settings.url} ({'from ' + source if source != 'PROMPTCTL_URL' else 'PROMPTCTL_URL'})"

    def get(self, path: str, query: dict[str, Any] | None = None) -> Any:
        return self.call("GET", path, query=query)

    def post(self, path: str, body: dict[str, Any] | None = None) -> Any:
        return self.call("POST", path, body=body if body is not None else {})

    def call(self, method: str, path: str, *, query: dict[str, Any] | None = None, body: Any = None) -> Any:
        import urllib.error
        import urllib.parse
        import urllib.request

        url = self.settings.url + API_PREFIX + path
        pairs = {k: v for k, v in (query or {}).items() if v is not None and v != ""}
        if pairs:
            url += "?" + urllib.parse.urlencode(pairs)
        headers = {
            "Authorization": f"Bearer {self.settings.token}",
            "Accept": "application/json",
            "User-Agent": USER_AGENT,
        }
        data = None
        if body is not None:
            data = json.dumps(body).encode("utf-8")
            headers["Content-Type"] = "application/json"
        request = urllib.request.Request(url, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=_timeout()) as response:
                status, raw = response.status, response.read()
        except urllib.error.HTTPError as error:
            status, raw = error.code, error.read()
        except (urllib.error.URLError, OSError) as error:
            reason = getattr(error, "reason", None) or error
            raise ClientError(
                f"Cannot reach the promptctl API at {self.where()}: {reason}. "
                "Is the server running, and is PROMPTCTL_URL its address (e.g. http://127.0.0.1:8000)?"
            )
        try:
            parsed = json.loads(raw) if raw else None
        except ValueError:
            parsed = None
            if 200 <= status < 300 or status >= 500 or status == 404:
                raise ClientError(
                    f"{self.where()} answered {method} {API_PREFIX}{path} with HTTP {status} and no promptctl JSON: "
                    "is PROMPTCTL_URL the promptctl server's address, and is it up to date?"
                )
        if 200 <= status < 300:
            return parsed
        detail = _detail(parsed)
        if status == 401:
            raise ClientError(
                f"{detail or 'The token was refused'} (token from {self.settings.token_source}; "
                "create a new one and run `promptctl login --url URL`, or set PROMPTCTL_TOKEN)."
            )
        if status >= 500 or not detail:
            raise ClientError(
                f"The promptctl API at {self.where()} answered {method} {API_PREFIX}{path} with HTTP {status}"
                f"{': ' + detail if detail else ''}; see the server's log, and try again."
            )
        raise ClientError(detail)


def segment(value: Any) -> str:
    """``value`` as one path segment (an agent name with a slash stays one segment)."""
    from urllib.parse import quote

    return quote(str(value), safe="")
