"""local_stack.upstream over real HTTP (UpstreamServer = uvicorn in a thread): timing and broken connections."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import httpx
import pytest

from local_stack.upstream import CUTOFF_CHUNKS, UpstreamServer

COMPLETIONS = "/v1/chat/completions"
MESSAGES = [{"role": "user", "content": "tell me a story"}]


@pytest.fixture
def upstream(request: pytest.FixtureRequest) -> Iterator[UpstreamServer]:
    """An UpstreamServer; indirect parametrisation passes its keyword arguments."""
    with UpstreamServer(**getattr(request, "param", {})) as server:
        yield server


def content_of(line: str) -> str | None:
    """The content delta of an SSE line, or None for other lines."""
    if not line.startswith("data: {"):
        return None
    choices = json.loads(line.removeprefix("data: "))["choices"]
    return choices[0]["delta"].get("content") if choices else None


@pytest.mark.parametrize("upstream", [{"chunk_delay": 0.05}], indirect=True)
def test_story_stream_arrives_incrementally(upstream: UpstreamServer) -> None:
    # Given a slow model (50 ms per chunk) / When 8 words are streamed over HTTP
    words, delay = 8, 0.05
    arrivals: list[tuple[float, str]] = []
    lines: list[str] = []
    body = {"model": "test/story", "messages": MESSAGES, "max_tokens": words, "stream": True}
    with httpx.Client(base_url=upstream.url, timeout=10) as http, http.stream("POST", COMPLETIONS, json=body) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        for line in filter(None, r.iter_lines()):
            lines.append(line)
            content = content_of(line)
            if content:
                arrivals.append((time.monotonic(), content))
    # Then every word came in its own chunk, spread in time: flushed one by one, not buffered to the end
    assert [c for _, c in arrivals] == ["word1"] + [f" word{i}" for i in range(2, words + 1)]
    first, last = arrivals[0][0], arrivals[-1][0]
    assert last - first >= (words - 1) * delay * 0.5
    assert lines[-1] == "data: [DONE]"


@pytest.mark.parametrize("upstream", [{"chunk_delay": 0.01}], indirect=True)
def test_cutoff_stream_ends_without_done(upstream: UpstreamServer) -> None:
    # Given test/cutoff / When it is streamed
    lines: list[str] = []
    body = {"model": "test/cutoff", "messages": MESSAGES, "stream": True}
    with httpx.Client(base_url=upstream.url, timeout=10) as http:
        # Then the chunked body stops short: the client sees a protocol error after a few chunks, never [DONE]
        with (
            pytest.raises(httpx.RemoteProtocolError, match="incomplete chunked read"),
            http.stream("POST", COMPLETIONS, json=body) as r,
        ):
            assert r.status_code == 200
            lines.extend(r.iter_lines())
        assert [content_of(line) for line in lines if content_of(line)] == ["word1", " word2", " word3"][:CUTOFF_CHUNKS]
        assert "data: [DONE]" not in lines
        # And a non-stream request gets half of its declared body
        with pytest.raises(httpx.RemoteProtocolError, match="complete message body"):
            http.post(COMPLETIONS, json={"model": "test/cutoff", "messages": MESSAGES})
        # And the server is still fine for the next request
        assert http.get("/v1/models").status_code == 200


@pytest.mark.parametrize("upstream", [{"fail_mode": "drop"}], indirect=True)
def test_drop_closes_the_connection_without_a_response(upstream: UpstreamServer) -> None:
    with httpx.Client(base_url=upstream.url, timeout=10) as http:
        with pytest.raises(httpx.RemoteProtocolError, match="without sending a response"):
            http.post(COMPLETIONS, json={"model": "test/echo", "messages": MESSAGES})
        assert http.get("/v1/models").status_code == 200


@pytest.mark.parametrize("upstream", [{"fail_mode": "hang"}], indirect=True)
def test_hang_makes_the_client_timeout_fire(upstream: UpstreamServer) -> None:
    with httpx.Client(base_url=upstream.url) as http:
        started = time.monotonic()
        with pytest.raises(httpx.ReadTimeout):
            http.post(COMPLETIONS, json={"model": "test/echo", "messages": MESSAGES}, timeout=0.3)
        assert time.monotonic() - started < 5
        # The hung request does not block others
        assert http.get("/v1/models", timeout=5).status_code == 200


@pytest.mark.parametrize("upstream", [{"api_key": "sk-up", "fail_mode": "429"}], indirect=True)
def test_errors_and_auth_over_http(upstream: UpstreamServer) -> None:
    body = {"model": "test/echo", "messages": MESSAGES}
    with httpx.Client(base_url=upstream.url, timeout=10) as http:
        unauthorized = http.post(COMPLETIONS, json=body)
        limited = http.post(COMPLETIONS, json=body, headers={"Authorization": "Bearer sk-up"})
    assert unauthorized.status_code == 401
    assert unauthorized.json()["error"]["code"] == "invalid_api_key"
    assert limited.status_code == 429
    assert limited.headers["retry-after"] == "1"
    assert limited.json()["error"]["code"] == "rate_limit_exceeded"


def test_stop_ends_open_streams_promptly() -> None:
    # Given a stream that would take 100 s, with its first chunk received
    server = UpstreamServer(chunk_delay=1.0).start()
    body = {"model": "test/story", "messages": MESSAGES, "max_tokens": 100, "stream": True}
    try:
        with httpx.Client(base_url=server.url, timeout=10) as http, http.stream("POST", COMPLETIONS, json=body) as r:
            lines = r.iter_lines()
            assert next(lines).startswith("data: {")
            # When the server is stopped
            started = time.monotonic()
            server.stop()
            # Then stop() does not wait for the stream, and the client sees the stream cut short
            assert time.monotonic() - started < 3
            with pytest.raises(httpx.RemoteProtocolError):
                list(lines)
    finally:
        server.stop()  # idempotent
