"""Proxy benchmark: prints figures, asserts nothing. Run with `make bench` (or `python bench/proxy_bench.py`).

Measures, on this machine, against the local stack (gateway → proxy → built-in upstream, DynamoDB Local):
  1. DynamoDB calls per request on a warm proxy (plain and streamed; subscription and credit keys)
  2. the proxy's cold import time (a fresh interpreter importing functions/proxy/app.py), and that no
     openai / stripe / web3 / pydantic / Powertools module is imported
  3. the latency the proxy adds over calling the same upstream directly (p50 / p99, ratio)
  4. requests per second through the local stack with concurrent clients
  5. the cold import time of every function's handler (a fresh interpreter each)
  6. a cost model: US dollars per million proxied requests on Lambda arm64 + REST API + DynamoDB on
     demand, from the measured DynamoDB writes per request and the proxy's added time
  7. the same for POST /v1/embeddings (the built-in test/embed model): DynamoDB calls, items and write
     units per request, the latency added, and the cost per million requests
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from local_stack.stack import LocalStack  # noqa: E402
from local_stack.upstream import UpstreamServer  # noqa: E402

HEAVY = ("openai", "stripe", "web3", "pydantic", "aws_lambda_powertools", "starlette")
BODY = {"model": "test/echo", "messages": [{"role": "user", "content": "benchmark the proxy overhead please"}]}
CHAT = "/v1/chat/completions"
EMBEDDINGS = "/v1/embeddings"
EMBED_BODY = {"model": "test/embed", "input": ["benchmark the proxy overhead please", "and a second input"]}


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def cold_import(runs: int) -> tuple[float, float, list[str]]:
    code = (
        "import sys, time; sys.path.insert(0, 'functions/proxy'); t = time.perf_counter(); import app; "
        "elapsed = time.perf_counter() - t; import json; "
        f"print(json.dumps([elapsed, sorted({{m.split('.')[0] for m in sys.modules}} & set({list(HEAVY)!r}))]))"
    )
    timings, heavy = [], []
    for _ in range(runs):
        out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
        elapsed, heavy = json.loads(out.stdout)
        timings.append(elapsed * 1000)
    return statistics.median(timings), min(timings), heavy


# us-east-1 list prices (November 2026): Lambda arm64, API Gateway REST API (first 333M requests a
# month), DynamoDB on demand (since the November 2024 price cut). Transactional writes cost 2 write
# request units per item of up to 1 KB; condition checks are counted the same, an upper bound.
PRICES = {
    "lambda_gb_second_arm64": 0.0000133334,
    "lambda_request": 0.20 / 1e6,
    "rest_api_request": 3.50 / 1e6,
    "dynamodb_write_unit": 0.625 / 1e6,
    "dynamodb_read_unit": 0.125 / 1e6,
}


@dataclass
class DynamoDBUse:
    calls: float  # per request
    milliseconds: float  # per request, inside those calls
    items: float  # transaction items per request
    write_units: float  # per request: 2 per transaction item per KB, plus index copies (request log, reservations)
    calls_before_first_byte: float  # round trips the client waits for before its first byte


def count_dynamodb_calls(
    api_url: str, key: str, requests: int, stream: bool, path: str = CHAT, request: dict = BODY
) -> DynamoDBUse:
    """What DynamoDB does per request on a warm proxy, counted on the proxy's own botocore client."""
    from llm_platform.config import get_settings
    from llm_platform.data.dynamo import client

    log_table, reservations_table = get_settings().request_log_table, get_settings().reservations_table
    calls, started, spent, items, units, before_first_byte = 0, {}, 0.0, 0, 0, 0

    def count_items(params: dict, **_: object) -> None:
        nonlocal items, units
        for item in params.get("TransactItems", []):
            items += 1
            kilobytes = math.ceil(len(json.dumps(item)) / 1024)
            units += 2 * kilobytes  # transactional: 2 write units per KB
            put = item.get("Put", {})
            if put.get("TableName") == log_table:
                units += 2 * kilobytes  # byAccount and byKey GSIs (all attributes), 1 unit per KB each
            if (put or item.get("Delete", {})).get("TableName") == reservations_table:
                units += kilobytes  # the reconciler's byDeadline GSI: the record enters it, then leaves

    def before(context: dict, **_: object) -> None:
        nonlocal calls
        calls += 1
        started[id(context)] = time.perf_counter()

    def after(context: dict, **_: object) -> None:
        nonlocal spent
        spent += time.perf_counter() - started.pop(id(context), time.perf_counter())

    events = client().meta.events
    body = {**request, "stream": stream} if path == CHAT else request
    headers = {"Authorization": f"Bearer {key}"}
    with httpx.Client(timeout=30) as http:
        http.post(f"{api_url}{path}", headers=headers, json=body)  # warm
        events.register("before-call.dynamodb", before)
        events.register("after-call.dynamodb", after)
        events.register("before-parameter-build.dynamodb.TransactWriteItems", count_items)
        try:
            for _ in range(requests):
                calls_at_start = calls
                with http.stream("POST", f"{api_url}{path}", headers=headers, json=body) as response:
                    response.raise_for_status()
                    chunks = response.iter_raw()
                    next(chunks)  # the first byte of the answer
                    before_first_byte += calls - calls_at_start
                    for _ in chunks:
                        pass
        finally:
            events.unregister("before-call.dynamodb", before)
            events.unregister("after-call.dynamodb", after)
            events.unregister("before-parameter-build.dynamodb.TransactWriteItems", count_items)
    return DynamoDBUse(
        calls / requests, spent * 1000 / requests, items / requests, units / requests, before_first_byte / requests
    )


def function_cold_imports(runs: int) -> dict[str, float]:
    """Median milliseconds to import each function's handler in a fresh interpreter (the proxy: its app)."""
    from local_stack.template import load_template, runs_under_web_adapter

    template = load_template(REPO / "template.yaml")
    results = {}
    for logical_id, resource in sorted(template["Resources"].items()):
        if resource["Type"] != "AWS::Serverless::Function":
            continue
        folder = REPO / resource["Properties"]["CodeUri"]
        module = "app" if runs_under_web_adapter(template, logical_id) else "handler"
        code = f"import time; t = time.perf_counter(); import {module}; print(time.perf_counter() - t)"
        env = {**os.environ, "PYTHONPATH": f"{REPO / 'layers' / 'shared'}:{folder}"}
        timings = []
        for _ in range(runs):
            out = subprocess.run([sys.executable, "-c", code], cwd=folder, env=env, capture_output=True, text=True)
            if out.returncode != 0:
                raise RuntimeError(f"{logical_id}: {out.stderr.strip().splitlines()[-1]}")
            timings.append(float(out.stdout) * 1000)
        results[logical_id] = statistics.median(timings)
    return results


def cost_per_million(write_units: float, added_ms: float, memory_mb: int, upstream_seconds: float) -> dict:
    """US dollars per million proxied requests. Lambda bills the whole request, so the time the model
    takes to answer (``upstream_seconds``) is part of it; the proxy adds ``added_ms`` on top."""
    seconds = upstream_seconds + added_ms / 1000
    lambda_compute = seconds * memory_mb / 1024 * PRICES["lambda_gb_second_arm64"] * 1e6
    return {
        "REST API": PRICES["rest_api_request"] * 1e6,
        "Lambda requests": PRICES["lambda_request"] * 1e6,
        "Lambda compute": lambda_compute,
        "DynamoDB": write_units * PRICES["dynamodb_write_unit"] * 1e6,
    }


def latencies(url: str, key: str | None, requests: int, body: dict = BODY) -> list[float]:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    samples = []
    with httpx.Client(timeout=30) as http:
        for _ in range(5):
            http.post(url, headers=headers, json=body)
        for _ in range(requests):
            start = time.perf_counter()
            http.post(url, headers=headers, json=body).raise_for_status()
            samples.append((time.perf_counter() - start) * 1000)
    return samples


async def throughput(url: str, key: str, total: int, concurrency: int) -> tuple[float, int]:
    done = failures = 0
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(total):
        queue.put_nowait(i)

    async def worker(http: httpx.AsyncClient) -> None:
        nonlocal done, failures
        while not queue.empty():
            queue.get_nowait()
            response = await http.post(url, headers={"Authorization": f"Bearer {key}"}, json=BODY)
            done += 1
            failures += response.status_code != 200

    async with httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=concurrency)) as http:
        start = time.perf_counter()
        await asyncio.gather(*[worker(http) for _ in range(concurrency)])
        elapsed = time.perf_counter() - start
    return done / elapsed, failures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=300, help="sequential requests per latency series")
    parser.add_argument("--load", type=int, default=1000, help="requests in the throughput run")
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()

    median_ms, best_ms, heavy = cold_import(5)
    per_function = function_cold_imports(3)
    upstream = UpstreamServer(name="bench", chunk_delay=0).start()
    folder = Path(tempfile.mkdtemp(prefix="bench-"))
    from local_stack.upstream import local_model_catalog

    (folder / "models.json").write_text(json.dumps(local_model_catalog(upstream.url)))
    os.environ["MODEL_CATALOG_FILE"] = str(folder / "models.json")
    with LocalStack(REPO / "template.yaml", builtin_upstream=False, log_dir=folder, rate_limit_scale=1000) as info:
        from llm_platform.domain import accounts, api_keys, billing
        from llm_platform.domain.accounts import Caller

        created = accounts.create_account("bench")
        caller = Caller(created.account_id, created.management_key_id)
        accounts.grant_credit(created.account_id, 1_000_000_000, "bench")
        _, credit_key = api_keys.create_credit_key(caller, "bench-credit", None, 100_000, 100_000_000)
        subscription = billing.grant_subscription(created.account_id, "pro")
        _, subscription_key = api_keys.create_subscription_key(caller, "bench-sub", subscription.subscription_id)

        calls = {
            "credit key, plain": count_dynamodb_calls(info.api_url, credit_key, 50, stream=False),
            "credit key, streamed": count_dynamodb_calls(info.api_url, credit_key, 50, stream=True),
            "subscription key, plain": count_dynamodb_calls(info.api_url, subscription_key, 50, stream=False),
            "subscription key, streamed": count_dynamodb_calls(info.api_url, subscription_key, 50, stream=True),
        }
        embeddings = count_dynamodb_calls(info.api_url, credit_key, 50, False, EMBEDDINGS, EMBED_BODY)
        embed_direct = latencies(f"{upstream.url}{EMBEDDINGS}", None, args.requests // 2, EMBED_BODY)
        embed_proxied = latencies(f"{info.api_url}{EMBEDDINGS}", credit_key, args.requests // 2, EMBED_BODY)
        direct = latencies(f"{upstream.url}/v1/chat/completions", None, args.requests)
        proxied = latencies(f"{info.api_url}/v1/chat/completions", credit_key, args.requests)
        rps, failures = asyncio.run(
            throughput(f"{info.api_url}/v1/chat/completions", credit_key, args.load, args.concurrency)
        )
    upstream.stop()

    d50, d99, p50, p99 = (
        percentile(direct, 0.5),
        percentile(direct, 0.99),
        percentile(proxied, 0.5),
        percentile(proxied, 0.99),
    )
    print("Proxy benchmark (local stack: DynamoDB Local + built-in upstream, one machine, 2 cores)")
    print(
        f"  cold import of functions/proxy/app.py: median {median_ms:.0f} ms, best {best_ms:.0f} ms "
        f"(heavy modules imported: {', '.join(heavy) or 'none'})"
    )
    for name, use in calls.items():
        print(
            f"  DynamoDB per request, warm, {name}: {use.calls:.2f} calls ({use.calls_before_first_byte:.2f} before "
            f"the first byte), {use.items:.1f} transaction items, {use.write_units:.1f} write units, "
            f"{use.milliseconds:.1f} ms in DynamoDB Local"
        )
    print(f"  direct upstream:  p50 {d50:.2f} ms   p99 {d99:.2f} ms   ({args.requests} sequential requests)")
    print(f"  through proxy:    p50 {p50:.2f} ms   p99 {p99:.2f} ms")
    print(
        f"  added by proxy:   p50 +{p50 - d50:.2f} ms   p99 +{p99 - d99:.2f} ms   "
        f"ratio p50 {p50 / d50:.1f}x  p99 {p99 / d99:.1f}x"
    )
    print(
        f"  throughput:       {rps:.0f} requests/s through the local stack "
        f"({args.load} requests, {args.concurrency} concurrent clients, {failures} failed)"
    )
    e50, ed50 = percentile(embed_proxied, 0.5), percentile(embed_direct, 0.5)
    print(
        f"  embeddings ({EMBED_BODY['model']}, 2 inputs), credit key, warm: {embeddings.calls:.2f} DynamoDB calls, "
        f"{embeddings.items:.1f} transaction items, {embeddings.write_units:.1f} write units, "
        f"{embeddings.milliseconds:.1f} ms in DynamoDB Local; p50 direct {ed50:.2f} ms, through the proxy "
        f"{e50:.2f} ms (+{e50 - ed50:.2f} ms)"
    )
    print("  cold import of each function's handler (median of 3 fresh interpreters):")
    for logical_id, milliseconds in per_function.items():
        print(f"    {logical_id:32} {milliseconds:6.0f} ms")

    from local_stack.template import load_template

    proxy_memory = int(load_template(REPO / "template.yaml")["Resources"]["ProxyFunction"]["Properties"]["MemorySize"])
    worst_units = max(use.write_units for use in calls.values())
    print(
        f"  cost per million proxied requests, us-east-1 list prices, {worst_units:.0f} write units per request "
        f"(the most of the four kinds above), {proxy_memory} MB arm64, +{p50 - d50:.0f} ms added (p50 here):"
    )
    for upstream_seconds in (0.0, 1.0, 10.0):
        parts = cost_per_million(worst_units, p50 - d50, proxy_memory, upstream_seconds)
        detail = ", ".join(f"{name} ${value:.2f}" for name, value in parts.items())
        label = "proxy alone" if upstream_seconds == 0 else f"model answers in {upstream_seconds:.0f} s"
        print(f"    {label:24} ${sum(parts.values()):8.2f}  ({detail})")
    parts = cost_per_million(embeddings.write_units, e50 - ed50, proxy_memory, 0.0)
    detail = ", ".join(f"{name} ${value:.2f}" for name, value in parts.items())
    print(f"  cost per million embeddings requests, the proxy alone: ${sum(parts.values()):.2f}  ({detail})")


if __name__ == "__main__":
    main()
