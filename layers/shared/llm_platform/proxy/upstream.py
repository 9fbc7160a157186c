"""Calls to OpenAI-compatible upstream providers: cheapest healthy provider first, failing over on
connection errors, timeouts, 5xx and 429, and on the provider's own refusals (401/402/403/404: a bad
provider key, an exhausted provider account or a wrong upstream model are the operator's problem, never
shown to the customer). Only 400/413/422, the client's own request errors, are passed through. A
provider that failed sits out for a while (per instance); while all are out, all are still tried."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass

from llm_platform import secrets
from llm_platform.proxy import http1
from llm_platform.proxy.catalog import Model, Provider

_COOL_DOWN_SECONDS = 30.0
_CONNECT_TIMEOUT = 5.0
CLIENT_ERRORS = frozenset({400, 413, 422})


class NoProviderAvailable(Exception):
    def __init__(self, failures: list[str]) -> None:
        super().__init__("; ".join(failures))
        self.failures = failures


@dataclass
class Opened:
    provider: Provider
    response: http1.Response  # not yet read: the caller streams or reads it, then closes it


class Upstreams:
    def __init__(self) -> None:
        self._client: http1.Client | None = None
        self._resting_until: dict[str, float] = {}

    def client(self) -> http1.Client:
        if self._client is None:
            self._client = http1.Client()
        return self._client

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    def order(self, model: Model) -> list[Provider]:
        now = time.monotonic()
        healthy = [p for p in model.providers if self._resting_until.get(_id(p), 0) <= now]
        resting = [p for p in model.providers if p not in healthy]
        return healthy + resting  # model.providers is sorted by cost already

    def _rest(self, provider: Provider) -> None:
        self._resting_until[_id(provider)] = time.monotonic() + _COOL_DOWN_SECONDS

    async def open(
        self,
        model: Model,
        payload: Callable[[Provider], dict | None],
        *,
        read_body: bool = False,
        path: str = "/chat/completions",
    ) -> Opened:
        """The first provider that answers 2xx or a client error. ``payload`` makes each provider's body (what
        it takes of the request, its model name, the output cap in the field it honours, so the reserved cost
        holds), or None for a provider that cannot serve this request. Chat completions are read by the
        caller as a stream: once a provider has accepted one (2xx) there is no failover, it may be generating
        already. With ``read_body`` (embeddings: nothing is generated piecemeal) the body is read here too, so
        a provider that stalls or garbles mid-body is failed over."""
        failures: list[str] = []
        for provider in self.order(model):
            body = payload(provider)
            if body is None:
                continue
            headers = {"Content-Type": "application/json", "Accept": "*/*", "User-Agent": "llm-platform-proxy"}
            try:
                api_key = secrets.cached(provider.api_key_secret)
                if api_key is None and provider.api_key_secret:  # the SDK call must not block the event loop
                    api_key = await asyncio.get_running_loop().run_in_executor(
                        None, secrets.resolve, provider.api_key_secret
                    )
            except Exception as error:  # a missing secret takes that provider out, not the request
                failures.append(f"{provider.name}: secret unavailable ({error})")
                self._rest(provider)
                continue
            if api_key:
                headers["Authorization"] = f"Bearer {api_key}"
            try:
                response = await self.client().post(
                    f"{provider.base_url}{path}",
                    _encode(body),
                    headers,
                    timeout=provider.timeout_seconds,
                    connect_timeout=_CONNECT_TIMEOUT,
                )
            except http1.RequestError as error:  # connect errors, timeouts, protocol errors
                failures.append(f"{provider.name}: {type(error).__name__}")
                self._rest(provider)
                continue
            if response.status_code >= 300 and response.status_code not in CLIENT_ERRORS:
                failures.append(f"{provider.name}: HTTP {response.status_code}")
                await response.aclose()
                self._rest(provider)
                continue
            if read_body:
                try:
                    await response.aread()
                except http1.RequestError as error:  # includes undecodable (e.g. corrupt gzip) bodies
                    failures.append(f"{provider.name}: {type(error).__name__} reading body")
                    await response.aclose()
                    self._rest(provider)
                    continue
            return Opened(provider, response)
        raise NoProviderAvailable(failures)


def _encode(body: dict) -> bytes:
    """The body as httpx's ``json=`` encodes it (compact, UTF-8, no NaN)."""
    return json.dumps(body, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()


def _id(provider: Provider) -> str:
    return f"{provider.name}|{provider.base_url}|{provider.model}"
