"""What a provider generated, read from its stream: the proxy always asks for a stream (also when the
client did not), so whatever arrived before a provider stalls or drops can be counted and billed.

``Generation`` merges the chunks' deltas per choice (content, reasoning, refusals, tool and function
calls, logprobs), keeps the provider's ``usage`` when it sends one, and rebuilds the non-streamed
``chat.completion`` for clients that did not ask for a stream."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

# Text-bearing delta fields a model generates besides ``content`` (reasoning models name it either way).
_TEXT_FIELDS = ("content", "reasoning_content", "reasoning", "refusal")


class Generation:
    def __init__(self) -> None:
        self.usage: dict[str, Any] | None = None
        self.done = False  # the provider said it finished: a finish_reason on every choice, or [DONE]
        self._meta: dict[str, Any] = {}
        self._choices: dict[int, dict[str, Any]] = {}

    # ------------------------------------------------------------------ reading
    def add(self, chunk: dict[str, Any]) -> None:
        """Merge one ``chat.completion.chunk``."""
        for field in ("id", "created", "system_fingerprint", "service_tier"):
            if chunk.get(field) is not None:
                self._meta.setdefault(field, chunk[field])
        if isinstance(chunk.get("usage"), dict):
            self.usage = chunk["usage"]
        for choice in chunk.get("choices") or []:
            if isinstance(choice, dict):
                self._merge(choice)

    def _merge(self, choice: dict[str, Any]) -> None:
        index = choice.get("index", 0) if isinstance(choice.get("index"), int) else 0
        merged = self._choices.setdefault(index, {"message": {"role": "assistant"}, "finish_reason": None})
        message = merged["message"]
        delta = choice.get("delta")
        if isinstance(delta, dict):
            if isinstance(delta.get("role"), str):
                message["role"] = delta["role"]
            for field in _TEXT_FIELDS:
                if isinstance(delta.get(field), str):
                    message[field] = message.get(field, "") + delta[field]
            for call in delta.get("tool_calls") or []:
                if isinstance(call, dict):
                    self._merge_tool_call(message, call)
            if isinstance(delta.get("function_call"), dict):
                target = message.setdefault("function_call", {"name": "", "arguments": ""})
                for part in ("name", "arguments"):
                    if isinstance(delta["function_call"].get(part), str):
                        target[part] += delta["function_call"][part]
        logprobs = choice.get("logprobs")
        if isinstance(logprobs, dict):
            into = merged.setdefault("logprobs", {"content": []})
            into["content"].extend(item for item in logprobs.get("content") or [] if isinstance(item, dict))
        if choice.get("finish_reason") is not None:
            merged["finish_reason"] = choice["finish_reason"]

    @staticmethod
    def _merge_tool_call(message: dict[str, Any], call: dict[str, Any]) -> None:
        calls = message.setdefault("tool_calls", [])
        index = call.get("index", len(calls)) if isinstance(call.get("index"), int) else len(calls)
        while len(calls) <= index:
            calls.append({"id": None, "type": "function", "function": {"name": "", "arguments": ""}})
        target = calls[index]
        if isinstance(call.get("id"), str):
            target["id"] = call["id"]
        if isinstance(call.get("type"), str):
            target["type"] = call["type"]
        function = call.get("function")
        if isinstance(function, dict):
            for part in ("name", "arguments"):
                if isinstance(function.get(part), str):
                    target["function"][part] += function[part]

    def from_completion(self, completion: dict[str, Any]) -> None:
        """A provider that answered with a whole completion although a stream was asked for."""
        for field in ("id", "created", "system_fingerprint", "service_tier"):
            if completion.get(field) is not None:
                self._meta[field] = completion[field]
        if isinstance(completion.get("usage"), dict):
            self.usage = completion["usage"]
        for position, choice in enumerate(completion["choices"]):
            index = choice.get("index", position) if isinstance(choice.get("index"), int) else position
            self._choices[index] = {
                "message": choice.get("message") if isinstance(choice.get("message"), dict) else {},
                "finish_reason": choice.get("finish_reason"),
                **({"logprobs": choice["logprobs"]} if choice.get("logprobs") is not None else {}),
            }
        self.done = True

    # ------------------------------------------------------------------ what it amounts to
    @property
    def finished(self) -> bool:
        return self.done or (bool(self._choices) and all(c["finish_reason"] for c in self._choices.values()))

    def generated_text(self) -> str:
        """Everything the model generated, for a local token count when no usage came: text, reasoning,
        refusals and the names and arguments of tool and function calls, of every choice."""
        parts: list[str] = []
        for choice in self._choices.values():
            message = choice["message"]
            parts.extend(message[field] for field in _TEXT_FIELDS if isinstance(message.get(field), str))
            for call in message.get("tool_calls") or []:
                function = call.get("function") if isinstance(call, dict) else None
                if isinstance(function, dict):
                    parts.extend(str(function.get(part) or "") for part in ("name", "arguments"))
            if isinstance(message.get("function_call"), dict):
                parts.extend(str(message["function_call"].get(part) or "") for part in ("name", "arguments"))
        return " ".join(part for part in parts if part)

    def completion(self, model_id: str) -> dict[str, Any]:
        """The non-streamed ``chat.completion`` these chunks amount to."""
        choices = []
        for index in sorted(self._choices):
            choice = self._choices[index]
            message = dict(choice["message"])
            message.setdefault("content", None)
            if not message.get("tool_calls"):
                message.pop("tool_calls", None)
            choices.append(
                {
                    "index": index,
                    "message": message,
                    "logprobs": choice.get("logprobs"),
                    "finish_reason": choice["finish_reason"],
                }
            )
        return {
            "id": self._meta.get("id", ""),
            "object": "chat.completion",
            "created": self._meta.get("created", 0),
            "model": model_id,
            **{k: self._meta[k] for k in ("system_fingerprint", "service_tier") if k in self._meta},
            "choices": choices,
            **({"usage": self.usage} if self.usage is not None else {}),
        }


async def sse_chunks(lines: AsyncIterator[str], generation: Generation) -> AsyncIterator[dict[str, Any]]:
    """The JSON chunks of a server-sent event stream, each merged into ``generation`` as it passes;
    ``[DONE]`` marks the generation done. Lines that are not JSON objects are skipped."""

    async for line in lines:
        if not line.startswith("data:"):
            continue
        data = line[5:].strip()
        if data == "[DONE]":
            generation.done = True
            continue
        try:
            chunk = json.loads(data)
        except ValueError:
            continue
        if isinstance(chunk, dict):
            generation.add(chunk)
            yield chunk
