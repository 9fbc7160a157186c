"""Calls to OpenAI-compatible upstream providers: cheapest healthy provider first, failing over on
connection errors, timeouts, 5xx and 429. A provider that failed sits out for a while (per instance)
and is then tried again; while every provider is out, they are still tried in cost order."""

from __future__ import annotations

import time
from dataclasses import dataclass

import httpx

from llm_platform.proxy import secrets
from llm_platform.proxy.catalog import Model, Provider

_COOL_DOWN_SECONDS = 30.0
_CONNECT_TIMEOUT = 5.0


class NoProviderAvailable(Exception):
    def __init__(self, failures: list[str]) -> None:
        super().__init__("; ".join(failures))
        self.failures = failures


@dataclass
class Opened:
    provider: Provider
    response: httpx.Response  # not yet read: the caller streams or reads it, then closes it


class Upstreams:
    def __init__(self) -> None:
        self._client: httpx.AsyncClient | None = None
        self._resting_until: dict[str, float] = {}

    def client(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(limits=httpx.Limits(max_connections=200, max_keepalive_connections=50))
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

    async def open(self, model: Model, payload: dict, *, read_body: bool) -> Opened:
        """The first provider that answers with a non-retryable status. With ``read_body`` the body is
        read here too, so a provider that stalls mid-body is also failed over."""
        failures: list[str] = []
        for provider in self.order(model):
            headers = {"Content-Type": "application/json"}
            try:
                api_key = secrets.resolve(provider.api_key_secret)
            except Exception as error:  # a missing secret takes that provider out, not the request
                failures.append(f"{provider.name}: secret unavailable ({error})")
                self._rest(provider)
                continue
            if api_key:
                headers["Authorization"] = f"Bearer {api_key}"
            request = self.client().build_request(
                "POST",
                f"{provider.base_url}/chat/completions",
                json={**payload, "model": provider.model},
                headers=headers,
                timeout=httpx.Timeout(provider.timeout_seconds, connect=_CONNECT_TIMEOUT),
            )
            try:
                response = await self.client().send(request, stream=True)
            except httpx.TransportError as error:  # connect errors, timeouts, protocol errors
                failures.append(f"{provider.name}: {type(error).__name__}")
                self._rest(provider)
                continue
            if response.status_code >= 500 or response.status_code == 429:
                failures.append(f"{provider.name}: HTTP {response.status_code}")
                await response.aclose()
                self._rest(provider)
                continue
            if read_body:
                try:
                    await response.aread()
                except httpx.TransportError as error:
                    failures.append(f"{provider.name}: {type(error).__name__} reading body")
                    await response.aclose()
                    self._rest(provider)
                    continue
            return Opened(provider, response)
        raise NoProviderAvailable(failures)


def _id(provider: Provider) -> str:
    return f"{provider.name}|{provider.base_url}|{provider.model}"
