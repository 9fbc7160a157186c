"""Domain errors. Each carries a stable snake_case ``code``; ``llm_platform.api.errors`` maps the
classes to HTTP statuses in one place, so business code never thinks about HTTP."""

from __future__ import annotations


class DomainError(Exception):
    code = "bad_request"

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code:
            self.code = code


class BadRequest(DomainError):
    code = "bad_request"


class Unauthenticated(DomainError):
    code = "unauthorized"


class Forbidden(DomainError):
    code = "forbidden"


class NotFound(DomainError):
    code = "not_found"


class Conflict(DomainError):
    code = "conflict"


class Unprocessable(DomainError):
    """A well-formed request whose values break a rule that needs stored state (422, like schema errors)."""

    code = "validation_error"


class InsufficientCredit(DomainError):
    code = "insufficient_credit"


class TooManyRequests(DomainError):
    """Limited: try again after ``retry_after`` seconds (sent as the Retry-After header)."""

    code = "too_many_requests"

    def __init__(self, message: str, code: str | None = None, retry_after: int | None = None) -> None:
        super().__init__(message, code)
        self.retry_after = retry_after


class PayloadTooLarge(DomainError):
    code = "payload_too_large"


class UnsupportedMediaType(DomainError):
    code = "unsupported_media_type"


class ServiceUnavailable(DomainError):
    code = "service_unavailable"
