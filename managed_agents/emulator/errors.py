"""Refusals in the API's own error shape, so the SDK raises its usual exception classes.

The body is ``{"type": "error", "error": {"type": ..., "message": ...}, "request_id": "req_..."}``
and the same id is in the ``request-id`` header, as the API documents. The SDK picks the
exception class from the status code (400 BadRequestError, 404 NotFoundError, 409
ConflictError, 429 RateLimitError, 529 OverloadedError, other 5xx InternalServerError)
and retries 409, 429 and 5xx on its own unless ``max_retries=0``. A 409 carries
``invalid_request_error``: the API has no ``conflict_error`` type.
"""

from __future__ import annotations

import secrets
from typing import Any


def new_request_id() -> str:
    """An id shaped like the API's ``request-id`` (``req_…``), one per HTTP request."""
    return "req_" + secrets.token_hex(12)


class ApiError(Exception):
    """An HTTP error answer: status code, API error type, a message for people, extra headers."""

    def __init__(
        self,
        status: int,
        error_type: str,
        message: str,
        *,
        headers: dict[str, str] | None = None,
        error_code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.error_type = error_type
        self.message = message
        self.headers = headers or {}
        self.error_code = error_code

    def body(self, request_id: str | None = None) -> dict[str, Any]:
        error: dict[str, Any] = {"type": self.error_type, "message": self.message}
        if self.error_code:
            error["details"] = {"error_code": self.error_code}
        body: dict[str, Any] = {"type": "error", "error": error}
        if request_id:
            body["request_id"] = request_id
        return body


def invalid_request(message: str, *, error_code: str | None = None) -> ApiError:
    return ApiError(400, "invalid_request_error", message, error_code=error_code)


def not_found(kind: str, identifier: Any) -> ApiError:
    return ApiError(404, "not_found_error", f"No {kind} with id {identifier!r} exists (it may have been deleted).")


def conflict(message: str) -> ApiError:
    """409 with the type the API documents for it (``invalid_request_error``); the SDK raises ConflictError by status."""
    return ApiError(409, "invalid_request_error", message)


def rate_limited(message: str, *, retry_after_seconds: float) -> ApiError:
    """429 with both ``retry-after`` (whole seconds, as HTTP says) and ``retry-after-ms``.

    The SDK reads ``retry-after-ms`` first, so its retries wait the precise, short delay;
    clients that only read ``retry-after`` still get a valid, rounded-up value.
    """
    milliseconds = max(1, round(retry_after_seconds * 1000))
    whole_seconds = max(1, -(-milliseconds // 1000))
    return ApiError(
        429,
        "rate_limit_error",
        message,
        headers={"retry-after": str(whole_seconds), "retry-after-ms": str(milliseconds)},
    )


def overloaded(message: str) -> ApiError:
    """529 ``overloaded_error``: the API is temporarily overloaded and did not carry the request out."""
    return ApiError(529, "overloaded_error", message)


def internal_error(message: str) -> ApiError:
    return ApiError(500, "api_error", message)
