"""The proxy's log lines as an operator reads them: the proxy started as Lambda starts it (functions/proxy/run.sh:
uvicorn with the Web Adapter's port and log level), on the local stack's tables and built-in upstream, its stdout
captured as the function's log group would get it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from llm_platform.domain import accounts
from tests.support.stacks import free_port

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def proxy_under_uvicorn(local_stack, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """(URL, stdout file) of run.sh serving the proxy; the environment is the local stack's (tables, catalog)."""
    port = free_port()
    output = tmp_path / "proxy.log"
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",  # run.sh's `python` is this interpreter
        "LAMBDA_TASK_ROOT": str(REPO / "functions/proxy"),
        "PYTHONPATH": str(REPO / "layers/shared"),  # Lambda's /opt/python
        "AWS_LWA_PORT": str(port),
        "POWERTOOLS_METRICS_NAMESPACE": "LlmPlatform",
    }
    with output.open("w") as sink:
        process = subprocess.Popen(["bash", str(REPO / "functions/proxy/run.sh")], env=env, stdout=sink, stderr=sink)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:  # the Web Adapter's readiness check: GET /healthz until it answers
            assert process.poll() is None, output.read_text()
            try:
                if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                assert time.monotonic() < deadline, output.read_text()
                time.sleep(0.1)
        yield url, output
    finally:
        process.terminate()
        process.wait(timeout=30)


def _lines(output: Path) -> list[dict]:
    lines = []
    for raw in output.read_text().splitlines():
        if raw.startswith("{"):
            lines.append(json.loads(raw))
    return lines


def test_each_request_is_one_json_line_with_its_fields_and_metrics(local_stack, proxy_under_uvicorn) -> None:
    # Given a credit key of a funded account, and the proxy as Lambda runs it
    url, output = proxy_under_uvicorn
    created = accounts.create_account("log-test")
    accounts.grant_credit(created.account_id, 5_000_000, "test")
    api = httpx.Client(base_url=local_stack.api_url, headers={"Authorization": f"Bearer {created.management_key}"})
    key = api.post("/api/keys/credit", json={"name": "logged"}, timeout=30).json()["data"]

    # When it makes one request, and a stranger presents a wrong key
    served = httpx.post(
        f"{url}/v1/chat/completions",
        headers={"Authorization": f"Bearer {key['apiKey']}"},
        json={"model": "test/echo", "messages": [{"role": "user", "content": "hello logs"}]},
        timeout=30,
    )
    refused = httpx.post(
        f"{url}/v1/chat/completions",
        headers={"Authorization": "Bearer sk_live_not-a-real-key-at-all"},
        json={"model": "test/echo", "messages": [{"role": "user", "content": "x"}]},
        timeout=30,
    )
    assert (served.status_code, refused.status_code) == (200, 401)

    # Then the served request's line names who, what, how much and how long, and is its metrics too
    lines = {line.get("requestId"): line for line in _lines(output) if line.get("message") == "request"}
    # (each line is written before its answer ends, so it is there once the client has the answer)
    line = lines[served.headers["x-request-id"]]
    usage = served.json()["usage"]
    assert line["keyId"] == key["id"] and line["accountId"] == created.account_id
    assert (line["model"], line["status"], line["stream"]) == ("test/echo", 200, False)
    assert line["provider"]
    assert (line["promptTokens"], line["completionTokens"]) == (usage["prompt_tokens"], usage["completion_tokens"])
    assert line["costMicros"] > 0 and line["SpendUsd"] == line["costMicros"] / 1_000_000
    assert line["latencyMs"] > 0 and line["Latency"] == line["latencyMs"]
    directive = line["_aws"]["CloudWatchMetrics"][0]
    assert directive["Namespace"] == "LlmPlatform" and directive["Dimensions"] == [["Service"]]
    assert {m["Name"] for m in directive["Metrics"]} == {
        "Requests",
        "Latency",
        "ServerErrors",
        "SpendUsd",
        "ReservationsOpen",
    }
    assert (line["Service"], line["Requests"], line["ServerErrors"], line["ReservationsOpen"]) == ("proxy", 1, 0, 0)

    # And the refused one's line counts an error by its code, without an account
    line = lines[refused.headers["x-request-id"]]
    assert (line["status"], line["code"], line["ErrorCode"], line["Errors"]) == (
        401,
        "invalid_api_key",
        "invalid_api_key",
        1,
    )
    assert line["keyId"] is None and line["_aws"]["CloudWatchMetrics"][1]["Dimensions"] == [["Service", "ErrorCode"]]

    # And no secret is anywhere in the output: neither the key nor the wrong one
    text = output.read_text()
    assert key["apiKey"] not in text and "sk_live_not-a-real-key-at-all" not in text
