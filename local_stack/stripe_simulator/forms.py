"""Stripe's wire format as the simulator speaks it: the API version, form-encoded parameters
(``a[b][0]=…`` into nested dicts and lists) with the checks Stripe makes on them, and Stripe's error bodies."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

try:
    from stripe import api_version as STRIPE_API_VERSION
except ImportError:  # pragma: no cover - stripe is a dev dependency; the simulator itself does not need it
    STRIPE_API_VERSION = "2026-10-28.endive"

_DOC_URL = "https://stripe.com/docs/error-codes/"


class StripeError(Exception):
    """An API error, rendered as Stripe renders it: {"error": {"type", "message", "code"?, "param"?, …}}."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",  # noqa: A002 - Stripe's field name
        code: str | None = None,
        param: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.type, self.code, self.param = status, message, type, code, param

    def body(self, request_id: str | None = None) -> dict[str, Any]:
        error: dict[str, Any] = {}
        if self.code:
            error["code"] = self.code
            error["doc_url"] = _DOC_URL + self.code.replace("_", "-")
        error["message"] = self.message
        if self.param:
            error["param"] = self.param
        if request_id:
            error["request_log_url"] = f"https://dashboard.stripe.com/test/logs/{request_id}"
        error["type"] = self.type
        return {"error": error}


def missing(param: str) -> StripeError:
    return StripeError(400, f"Missing required param: {param}.", code="parameter_missing", param=param)


def invalid(param: str, message: str, code: str | None = None) -> StripeError:
    return StripeError(400, message, code=code, param=param)


def no_such(kind: str, object_id: str, param: str = "id") -> StripeError:
    return StripeError(404, f"No such {kind}: '{object_id}'", code="resource_missing", param=param)


_KEY = re.compile(r"^([^\[\]]+)((?:\[[^\[\]]*\])*)$")


def parse_params(pairs: Iterable[tuple[str, str]]) -> dict[str, Any]:
    """Stripe's form encoding to nested values: `a[b][0][c]=v` -> {"a": {"b": [{"c": "v"}]}}; `a[]=v`
    appends. Dicts whose keys are all indexes become lists, except under `metadata` (any key is allowed)."""
    root: dict[str, Any] = {}
    for key, value in pairs:
        match = _KEY.match(key)
        if not match:
            raise StripeError(400, f"Invalid parameter name: {key}", param=key)
        parts = [match.group(1), *re.findall(r"\[([^\[\]]*)\]", match.group(2))]
        node = root
        for depth, part in enumerate(parts):
            if part == "":
                part = str(len(node))
            if depth == len(parts) - 1:
                if isinstance(node.get(part), dict):
                    raise StripeError(400, f"Invalid value for {key}: a hash was expected", param=key)
                node[part] = value
            else:
                child = node.setdefault(part, {})
                if not isinstance(child, dict):
                    raise StripeError(400, f"Invalid value for {key}: a hash was expected", param=key)
                node = child
    return _listify(root, None)


def _listify(node: Any, key: str | None) -> Any:
    if not isinstance(node, dict):
        return node
    converted = {k: _listify(v, k) for k, v in node.items()}
    if key != "metadata" and converted and all(k.isdigit() for k in converted):
        return [converted[k] for k in sorted(converted, key=int)]
    return converted


def param_name(prefix: str, key: str | int) -> str:
    return f"{prefix}[{key}]" if prefix else str(key)


def check_keys(params: dict[str, Any], allowed: Iterable[str], prefix: str = "") -> None:
    for key in params:
        if key not in allowed:
            raise StripeError(
                400,
                f"Received unknown parameter: {param_name(prefix, key)} "
                "(or one the Stripe simulator does not implement)",
                code="parameter_unknown",
                param=param_name(prefix, key),
            )


def as_dict(params: dict[str, Any], key: str, prefix: str = "") -> dict[str, Any]:
    value = params.get(key)
    if value is None:
        return {}
    if value == "":  # Stripe: an empty string unsets a hash
        return {}
    if not isinstance(value, dict):
        raise invalid(param_name(prefix, key), f"Invalid object: {param_name(prefix, key)} must be a hash")
    return value


def as_str(params: dict[str, Any], key: str, prefix: str = "", *, required: bool = False) -> str | None:
    value = params.get(key)
    if value is None or value == "":
        if required:
            raise missing(param_name(prefix, key))
        return None
    if not isinstance(value, str):
        raise invalid(param_name(prefix, key), f"Invalid string: {param_name(prefix, key)} must be a string")
    return value


def as_int(
    params: dict[str, Any], key: str, prefix: str = "", *, required: bool = False, minimum: int = 0
) -> int | None:
    raw = as_str(params, key, prefix, required=required)
    if raw is None:
        return None
    try:
        value = int(raw)
    except ValueError:
        raise invalid(param_name(prefix, key), f"Invalid integer: {raw}", code="parameter_invalid_integer") from None
    if value < minimum:
        raise invalid(
            param_name(prefix, key),
            f"Invalid {param_name(prefix, key)}: must be at least {minimum}",
            code="parameter_invalid_integer",
        )
    return value


def as_bool(params: dict[str, Any], key: str, prefix: str = "") -> bool | None:
    raw = as_str(params, key, prefix)
    if raw is None:
        return None
    if raw not in ("true", "false"):
        raise invalid(param_name(prefix, key), f"Invalid boolean: {raw}")
    return raw == "true"


def as_metadata(params: dict[str, Any], key: str = "metadata", prefix: str = "") -> dict[str, str]:
    metadata = as_dict(params, key, prefix)
    name = param_name(prefix, key)
    if len(metadata) > 50:
        raise invalid(name, "Invalid metadata: metadata can have up to 50 keys")
    for meta_key, value in metadata.items():
        if not isinstance(value, str):
            raise invalid(f"{name}[{meta_key}]", f"Invalid value for {name}[{meta_key}]: must be a string")
        if len(meta_key) > 40:
            raise invalid(name, f"Invalid metadata: keys can be up to 40 characters long ({meta_key!r})")
        if len(value) > 500:
            raise invalid(name, f"Invalid metadata: values can be up to 500 characters long ({meta_key!r})")
    return dict(metadata)


def as_url(params: dict[str, Any], key: str) -> str | None:
    url = as_str(params, key)
    if url is not None and (urlsplit(url).scheme not in ("http", "https") or not urlsplit(url).netloc):
        raise invalid(key, "Not a valid URL", code="url_invalid")
    return url


def diff(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """`previous_attributes` as Stripe reports them: the old values of what changed (hashes recursively)."""
    previous: dict[str, Any] = {}
    for key in list(old) + [k for k in new if k not in old]:
        before, after = old.get(key), new.get(key)
        if before == after:
            continue
        previous[key] = diff(before, after) if isinstance(before, dict) and isinstance(after, dict) else before
    return previous
