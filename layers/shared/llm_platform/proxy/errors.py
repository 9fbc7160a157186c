"""Errors in OpenAI's wire format: ``{"error": {"message", "type", "code", "param"}}``."""

from __future__ import annotations


class ProxyError(Exception):
    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        type_: str = "invalid_request_error",
        param: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.type, self.param = status, code, message, type_, param
        self.headers = headers or {}

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.type, "code": self.code, "param": self.param}}


def bad_request(message: str, *, code: str = "invalid_request", param: str | None = None) -> ProxyError:
    return ProxyError(400, code, message, param=param)


def unauthorized(message: str = "Invalid API key.") -> ProxyError:
    return ProxyError(401, "invalid_api_key", message, type_="authentication_error")
