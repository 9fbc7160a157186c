"""``bin/smoke``: after a deploy, prove the platform serves a customer end to end, as one would.

1. health: ``GET /`` answers the dashboard, and the management API refuses a request without a key (401);
2. an account: created with the operator's credentials as ``bin/admin create-account`` does, with a small credit
   grant (``--credit``, $1) so one request can be paid;
3. a key: ``POST /api/keys/credit`` with the account's management key (and ``GET /api/plans`` lists the plans);
4. one request: ``POST /v1/chat/completions`` with that key (``--model``; default: the first of ``GET /v1/models``),
   at most ``--max-tokens`` tokens;
5. usage: the request is in the log (``GET /api/requests/{x-request-id}``) with its cost, and the key's spend in
   ``GET /api/usage``;
then the key is revoked. The account stays (named ``smoke <time>``), with what is left of the grant.

Target: ``--stack NAME [--region R]`` (the API URL and table names from the stack's outputs, AWS credentials from
the environment), or ``--url URL`` for the local stack (tables from ``.local/stack.json``, as ``bin/admin``).
Prints one JSON line per step; exits 1 at the first step that fails, saying what came back."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime
from typing import Any

from local_stack.admin import AdminError, target_environment


class SmokeFailed(Exception):
    pass


class Api:
    def __init__(self, base_url: str, timeout: float) -> None:
        self.base_url, self.timeout = base_url.rstrip("/"), timeout

    def call(
        self, method: str, path: str, *, key: str | None = None, body: Any = None, expect: int = 200
    ) -> tuple[Any, dict[str, str]]:
        """(the JSON answer, its headers); anything but ``expect`` fails the step with what came back."""
        headers = {"Accept": "application/json", "User-Agent": "llm-platform-smoke"}
        data = None
        if key:
            headers["Authorization"] = f"Bearer {key}"
        if body is not None:
            headers["Content-Type"] = "application/json"
            data = json.dumps(body).encode()
        request = urllib.request.Request(self.base_url + path, data=data, headers=headers, method=method)  # noqa: S310
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310 - the operator's URL
                status, raw, answer_headers = response.status, response.read(), dict(response.headers)
        except urllib.error.HTTPError as error:
            status, raw, answer_headers = error.code, error.read(), dict(error.headers)
        except (urllib.error.URLError, TimeoutError, OSError) as error:
            raise SmokeFailed(f"{method} {path}: no answer from {self.base_url} ({error})") from error
        if status != expect:
            raise SmokeFailed(f"{method} {path}: expected {expect}, got {status}: {raw[:500].decode(errors='replace')}")
        lowered = {name.lower(): value for name, value in answer_headers.items()}
        if "json" not in lowered.get("content-type", ""):
            return raw.decode(errors="replace"), lowered
        return json.loads(raw), lowered


def _step(name: str, started: float, **facts: Any) -> None:
    print(json.dumps({"step": name, "ok": True, "ms": round((time.perf_counter() - started) * 1000), **facts}))
    sys.stdout.flush()


def run(api: Api, model: str | None, credit_usd: str, max_tokens: int) -> None:
    started = time.perf_counter()
    page, _ = api.call("GET", "/")
    if "<html" not in str(page).lower():
        raise SmokeFailed("GET /: the dashboard did not answer a page")
    refused, _ = api.call("GET", "/api/billing/status", expect=401)
    if refused.get("error", {}).get("code") != "missing_management_key":
        raise SmokeFailed(f"GET /api/billing/status without a key: not the documented 401: {refused}")
    _step("health", started, dashboard=True, managementApi=True)

    # Imported only now: the settings (table names, endpoint) are read once, from the environment set by main().
    from llm_platform.domain import accounts
    from llm_platform.domain.money import usd_to_micros

    started = time.perf_counter()
    created = accounts.create_account(f"smoke {datetime.now(UTC):%Y-%m-%dT%H:%M:%SZ}")
    accounts.grant_credit(created.account_id, usd_to_micros(credit_usd), "smoke test")
    _step("account", started, accountId=created.account_id, credit=credit_usd)
    management_key = created.management_key

    started = time.perf_counter()
    key, _ = api.call(
        "POST", "/api/keys/credit", key=management_key, body={"name": "smoke", "maxBudget": credit_usd}, expect=201
    )
    key_id, api_key = key["data"]["id"], key["data"]["apiKey"]
    plans, _ = api.call("GET", "/api/plans", key=management_key)
    _step("key", started, keyId=key_id, plans=[plan["slug"] for plan in plans["data"]])

    try:
        started = time.perf_counter()
        if model is None:
            models, _ = api.call("GET", "/v1/models", key=api_key)
            if not models["data"]:
                raise SmokeFailed("GET /v1/models: the catalog is empty")
            model = models["data"][0]["id"]
        answer, headers = api.call(
            "POST",
            "/v1/chat/completions",
            key=api_key,
            body={"model": model, "messages": [{"role": "user", "content": "Say OK."}], "max_tokens": max_tokens},
        )
        request_id = headers.get("x-request-id")
        if not request_id or not answer.get("choices"):
            raise SmokeFailed(f"POST /v1/chat/completions: no answer or no x-request-id: {answer}")
        _step("request", started, model=model, requestId=request_id, usage=answer.get("usage"))

        started = time.perf_counter()
        record, _ = api.call("GET", f"/api/requests/{request_id}", key=management_key)
        if record["data"]["keyId"] != key_id or record["data"]["status"] != 200:
            raise SmokeFailed(f"GET /api/requests/{request_id}: not this key's served request: {record}")
        usage, _ = api.call("GET", "/api/usage", key=management_key)
        (mine,) = [item for item in usage["data"] if item["id"] == key_id]
        if mine["usage"]["lifetime"]["requests"] < 1:
            raise SmokeFailed(f"GET /api/usage: the key's request is not counted: {mine}")
        _step("usage", started, cost=record["data"]["cost"], lifetime=mine["usage"]["lifetime"])
    finally:
        api.call("DELETE", f"/api/keys/{key_id}", key=management_key)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="bin/smoke", description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--stack", help="the deployed stack's name (its ApiUrl output and tables)")
    target.add_argument("--url", help="the API's base URL of the local stack, e.g. http://127.0.0.1:3000")
    parser.add_argument("--region", help="AWS region of --stack")
    parser.add_argument("--model", help="the model of the one request (default: the first of GET /v1/models)")
    parser.add_argument("--credit", default="1", help="USD granted to the smoke account (default 1)")
    parser.add_argument("--max-tokens", type=int, default=16, help="the request's max_tokens (default 16)")
    parser.add_argument("--timeout", type=float, default=60, help="seconds per HTTP call (default 60)")
    args = parser.parse_args(argv)
    try:
        os.environ.update(target_environment(args.stack, args.region))
        base_url = args.url or _api_url(args.stack, args.region)
        run(Api(base_url, args.timeout), args.model, args.credit, args.max_tokens)
    except (SmokeFailed, AdminError) as error:
        print(json.dumps({"ok": False, "error": str(error)}))
        print(f"bin/smoke: FAILED: {error}", file=sys.stderr)
        return 1
    print(json.dumps({"ok": True, "apiUrl": base_url}))
    return 0


def _api_url(stack: str, region: str | None) -> str:
    import boto3

    described = boto3.client("cloudformation", region_name=region).describe_stacks(StackName=stack)["Stacks"][0]
    outputs = {o["OutputKey"]: o["OutputValue"] for o in described.get("Outputs", [])}
    if "ApiUrl" not in outputs:
        raise SmokeFailed(f"stack {stack} has no ApiUrl output; is it this platform's stack?")
    return outputs["ApiUrl"]


if __name__ == "__main__":
    sys.exit(main())
