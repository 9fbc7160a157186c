"""Secrets referenced by name and never stored in the template (upstream provider keys, the chain's
RPC URL): ``ssm:NAME`` (a SecureString; a relative NAME lives under the stack's provider prefix, an
absolute ``/path`` is used as is), ``secretsmanager:NAME`` or, for local runs only, ``env:VAR``.
Fetched on first use and cached for a few minutes, so rotations apply soon."""

from __future__ import annotations

import os
import threading
import time

from llm_platform.config import get_settings

_TTL_SECONDS = 300
_cache: dict[str, tuple[float, str]] = {}
_lock = threading.Lock()


class SecretError(RuntimeError):
    pass


def cached(reference: str | None) -> str | None:
    """The value if it is cached and fresh, else None (no I/O: safe on the event loop)."""
    entry = _cache.get(reference) if reference else None
    return entry[1] if entry and entry[0] > time.monotonic() else None


def resolve(reference: str | None) -> str | None:
    if not reference:
        return None
    value = cached(reference)
    if value is not None:
        return value
    now = time.monotonic()
    value = _fetch(reference)
    with _lock:
        _cache[reference] = (now + _TTL_SECONDS, value)
    return value


def _fetch(reference: str) -> str:
    source, _, name = reference.partition(":")
    if source == "env":
        value = os.environ.get(name)
        if value is None:
            raise SecretError(f"environment variable {name} is not set")
        return value
    if source not in ("ssm", "secretsmanager"):
        raise SecretError(f"unknown secret source in {reference!r}: use ssm:, secretsmanager: or env:")
    import boto3  # data-access style: the SDK only where a secret store is really used

    full_name = name if name.startswith("/") else get_settings().provider_secrets_prefix + name
    if source == "ssm":
        return boto3.client("ssm").get_parameter(Name=full_name, WithDecryption=True)["Parameter"]["Value"]
    return boto3.client("secretsmanager").get_secret_value(SecretId=full_name.lstrip("/"))["SecretString"]
