"""Refusals in the API's own error shape, so the SDK raises its usual exception classes.

The body is ``{"type": "error", "error": {"type": ..., "message": ...}}``; the SDK picks
the exception class from the status code (400 BadRequestError, 404 NotFoundError,
409 ConflictError, 429 RateLimitError, 5xx InternalServerError) and retries 409, 429
and 5xx on its own unless ``max_retries=0``.
"""

from __future__ import annotations

from typing import Any


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

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {"type": self.error_type, "message": self.message}
        if self.error_code:
            error["details"] = {"error_code": self.error_code}
        return {"type": "error", "error": error}


def invalid_request(message: str, *, error_code: str | None = None) -> ApiError:
    return ApiError(400, "invalid_request_error", message, error_code=error_code)


def not_found(kind: str, identifier: Any) -> ApiError:
    return ApiError(404, "not_found_error", f"No {kind} with id {identifier!r} exists (it may have been deleted).")


def conflict(message: str) -> ApiError:
    return ApiError(409, "conflict_error", message)


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


def internal_error(message: str) -> ApiError:
    return ApiError(500, "api_error", message)
