"""The optional parameters of OpenAI's current Chat Completions reference (openai-python's
``completion_create_params.py``), each with a value a provider would take: the proxy must accept every one."""

from __future__ import annotations

REFERENCE_VALUES: dict[str, object] = {
    "audio": {"voice": "alloy", "format": "wav"},
    "frequency_penalty": 0.5,
    "function_call": "auto",
    "functions": [{"name": "f", "parameters": {"type": "object", "properties": {}}}],
    "logit_bias": {"50256": -100},
    "logprobs": True,
    "metadata": {"team": "a"},
    "modalities": ["text", "audio"],
    "moderation": {"model": "omni-moderation-latest"},
    "n": 1,
    "parallel_tool_calls": True,
    "prediction": {"type": "content", "content": "hello"},
    "presence_penalty": 0.1,
    "prompt_cache_key": "k-1",
    "prompt_cache_options": {"mode": "implicit"},
    "prompt_cache_retention": "24h",
    "reasoning_effort": "low",
    "response_format": {"type": "text"},
    "safety_identifier": "user-hash",
    "seed": 7,
    "service_tier": "auto",
    "stop": ["\n\n"],
    "store": False,
    "temperature": 0.2,
    "tool_choice": "none",
    "tools": [{"type": "function", "function": {"name": "t", "parameters": {"type": "object", "properties": {}}}}],
    "top_logprobs": 2,
    "top_p": 0.9,
    "user": "end-user-1",
    "verbosity": "low",
    "web_search_options": {"search_context_size": "low"},
}
