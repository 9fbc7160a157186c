"""/v1 from a web page of another origin, in a real browser (headless Debian chromium through playwright-core)
against the real local stack (`python -m local_stack` as `make dev` runs it, with `CORS_ALLOWED_ORIGINS`
exported): the browser itself enforces CORS. A page on the allowed origin streams a completion with the
openai JS SDK's headers (so the browser preflights) and reads the exposed headers; a page on another origin
gets nothing. tests/e2e/browser/cors.mjs holds the page's part."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from local_stack.server_thread import ServerThread
from tests.support.stacks import local_stack_process

REPO = Path(__file__).resolve().parents[2]


async def _blank_page(scope, receive, send) -> None:
    """An empty HTML page: the origin a customer's web app would be served from."""
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/html")]})
    await send({"type": "http.response.body", "body": b"<!doctype html><title>app</title><p>app</p>"})


@pytest.fixture(scope="module")
def pages() -> Iterator[tuple[str, str]]:
    """(allowed, foreign): two page servers, two origins (same host, other ports)."""
    servers = [ServerThread(_blank_page), ServerThread(_blank_page)]
    for server in servers:
        server.start()
    yield servers[0].url, servers[1].url
    for server in servers:
        server.stop()


@pytest.fixture(scope="module")
def stack(pages, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    allowed, _ = pages
    with local_stack_process(tmp_path_factory.mktemp("cors-state"), CORS_ALLOWED_ORIGINS=allowed) as (_, info):
        yield info


def test_a_page_on_an_allowed_origin_streams_and_others_cannot_read(stack, pages) -> None:
    # Given an API key of the demo account, and the stack allowing the first page's origin only
    api = stack["apiUrl"]
    created = httpx.post(
        f"{api}/api/keys/credit",
        headers={"Authorization": f"Bearer {stack['demoManagementKey']}"},
        json={"name": "browser-app", "rpm": 100, "tpm": 100000},
        timeout=30,
    )
    assert created.status_code == 201, created.text
    key = created.json()["data"]["apiKey"]

    # When each page calls /v1 in the browser: a streamed chat completion, then the models
    result = subprocess.run(
        ["node", str(REPO / "tests" / "e2e" / "browser" / "cors.mjs"), api, *pages, key],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout.splitlines()[-1])

    # Then the allowed page got the whole stream and could read the request id and the limits
    chat = seen["allowed"]["chat"]
    assert chat.get("status") == 200, seen
    assert chat["done"] and chat["frames"] > 2
    assert chat["requestId"] and chat["remainingRequests"] is not None
    assert seen["allowed"]["models"]["status"] == 200 and seen["allowed"]["models"]["count"] > 0
    # And the foreign page's calls failed in the browser (refused preflight: the request was never sent)
    assert "Failed to fetch" in seen["foreign"]["chat"]["error"], seen
    assert "Failed to fetch" in seen["foreign"]["models"]["error"], seen
