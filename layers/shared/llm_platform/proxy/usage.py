"""``usage`` as the client sees it: the provider's counts plus ``cost`` (USD, a JSON number), on every answer,
and in a stream only when the client asked for it (``stream_options.include_usage``). The proxy always asks
the provider for usage, to bill exactly; a client that did not ask must not get the extra chunk whose
``choices`` is empty (it breaks the common ``chunk.choices[0]`` pattern)."""

from __future__ import annotations

from typing import Any


def cost_usd(cost_micros: int) -> float:
    """USD as a JSON number (OpenRouter's ``usage.cost``); the exact figure is the ``x-request-cost`` header."""
    return cost_micros / 1_000_000


def with_cost(usage: Any, input_tokens: int, output_tokens: int, cost_micros: int) -> dict:
    """The provider's usage (details kept) with ``cost``; built from the billed counts when it sent none."""
    shown = dict(usage) if isinstance(usage, dict) else {}
    if not isinstance(shown.get("prompt_tokens"), int) or not isinstance(shown.get("completion_tokens"), int):
        shown.update(prompt_tokens=input_tokens, completion_tokens=output_tokens)
    shown.setdefault("total_tokens", shown["prompt_tokens"] + shown["completion_tokens"])
    shown["cost"] = cost_usd(cost_micros)
    return shown


class StreamUsage:
    """Shapes a relayed stream's chunks: the usage the provider sent is kept (with its cost) only when the
    client asked for it, and a usage chunk is made up at the end when it asked but the provider sent none."""

    def __init__(self, wants_usage: bool) -> None:
        self.wants_usage = wants_usage
        self.sent = False  # a chunk with usage went to the client
        self._last: dict | None = None  # id, created, model of the stream, for a made-up usage chunk

    def shape(self, chunk: dict, cost_micros: int | None) -> dict | None:
        """The chunk to relay (None: nothing to relay). ``cost_micros``: the cost of the usage it carries."""
        self._last = {k: chunk[k] for k in ("id", "created", "model", "system_fingerprint") if k in chunk}
        usage = chunk.get("usage")
        if not self.wants_usage:
            if isinstance(usage, dict) and not chunk.get("choices"):
                return None  # the provider's usage-only chunk, asked for by the proxy, not by the client
            chunk.pop("usage", None)
            return chunk
        if isinstance(usage, dict) and cost_micros is not None:
            chunk["usage"] = {**usage, "cost": cost_usd(cost_micros)}
            self.sent = True
        return chunk

    def closing_chunk(self, input_tokens: int, output_tokens: int, cost_micros: int) -> dict | None:
        """The usage chunk owed to a client that asked for it when the provider sent none (billed counts)."""
        if not self.wants_usage or self.sent:
            return None
        self.sent = True
        return {
            **(self._last or {}),
            "object": "chat.completion.chunk",
            "choices": [],
            "usage": with_cost(None, input_tokens, output_tokens, cost_micros),
        }
