"""The design's floor, in a process of its own: `python bench/floor.py '<json config>'`.

Replays the admission and settle transactions a proxy sent for one plain request (captured on the wire
by bench/dynamodb_counter.py) against the same DynamoDB Local, one after the other, with a stock boto3
low-level client: the time of those two serial round trips (boto3's own CPU included) is the least
a proxy doing exact accounting can add. Each replay gets a fresh request id (so the reservation put,
its delete and the log record are new items, as for a new request) and a fresh ClientRequestToken.

With "concurrency": N, N threads (a client each) replay the pairs at once, each thread its share of
"requests": the same transactions on the same items as a proxy's N concurrent clients, so what DynamoDB
Local itself does with that load (its queueing, its CPU on this host) shows apart from any proxy.

Config: {"endpoint": url, "admission": params, "settle": params, "request_id": the captured request's id,
"requests": 200, "warmup": 20, "concurrency": 1}. Prints {"admission_ms": [...], "settle_ms": [...],
"pair_ms": [...], "cpu_ms": [...] (this process's CPU per pair: boto3's own work; with concurrency, the
process's CPU over the run spread evenly), "pairs_per_second": n, "failures": n, "error": first failure}.
"""

from __future__ import annotations

import contextlib
import json
import sys
import threading
import time
import uuid
from typing import Any

import boto3
from botocore.exceptions import ClientError


def fresh(params_text: str, request_id: str, new_id: str) -> dict:
    """The captured transaction as if for the request `new_id`, with a ClientRequestToken of its own."""
    params = json.loads(params_text.replace(request_id, new_id))
    if "ClientRequestToken" in params and new_id not in params["ClientRequestToken"]:
        params["ClientRequestToken"] = str(uuid.uuid4())
    return params


BARRIER_SECONDS = 120  # every thread's client made and warmed by then, or the run has failed


def empty_result() -> dict:
    return {"admission_ms": [], "settle_ms": [], "pair_ms": [], "cpu_ms": [], "failures": 0, "error": None}


def new_client(config: dict) -> Any:
    return boto3.session.Session().client("dynamodb", endpoint_url=config["endpoint"])  # a session per thread


def replay(ddb: Any, config: dict, requests: int, warmup: int, result: dict) -> None:
    """``warmup`` + ``requests`` admission and settle pairs, one after the other, into ``result``."""
    request_id = config["request_id"]
    admission_text, settle_text = json.dumps(config["admission"]), json.dumps(config["settle"])
    for index in range(warmup + requests):
        new_id = str(uuid.uuid4())
        admission = fresh(admission_text, request_id, new_id)
        settle = fresh(settle_text, request_id, new_id)
        try:
            cpu_start = time.process_time()
            start = time.perf_counter()
            ddb.transact_write_items(**admission)
            middle = time.perf_counter()
            ddb.transact_write_items(**settle)
            end = time.perf_counter()
            cpu_end = time.process_time()
        except ClientError as exc:
            result["failures"] += 1
            result["error"] = result["error"] or str(exc)
            continue
        if index >= warmup:
            result["admission_ms"].append((middle - start) * 1000)
            result["settle_ms"].append((end - middle) * 1000)
            result["pair_ms"].append((end - start) * 1000)
            result["cpu_ms"].append((cpu_end - cpu_start) * 1000)


def main() -> None:
    config = json.loads(sys.argv[1])
    requests, warmup = int(config["requests"]), int(config.get("warmup", 20))
    concurrency = int(config.get("concurrency", 1))
    result = empty_result()
    if concurrency == 1:
        replay(new_client(config), config, requests, warmup, result)
        result["pairs_per_second"] = 1000 * len(result["pair_ms"]) / max(sum(result["pair_ms"]), 1e-9)
    else:
        # Each thread makes its client and warms its connection with one pair, then all start at once. Each
        # fills a result of its own (merged after the join); a thread that fails breaks the barrier, so the
        # others and this one stop waiting, and the run exits non-zero with the error.
        shares = [requests // concurrency + (i < requests % concurrency) for i in range(concurrency)]
        barrier = threading.Barrier(concurrency + 1)
        parts = [empty_result() for _ in shares]
        crashed: list[BaseException] = []

        def worker(share: int, part: dict) -> None:
            try:
                ddb = new_client(config)
                replay(ddb, config, 0, 1, part)
                barrier.wait(timeout=BARRIER_SECONDS)
                replay(ddb, config, share, 0, part)
            except BaseException as exc:  # reported by the main thread; the barrier must not wait for it
                crashed.append(exc)
                barrier.abort()

        threads = [threading.Thread(target=worker, args=pair) for pair in zip(shares, parts, strict=True)]
        for thread in threads:
            thread.start()
        with contextlib.suppress(threading.BrokenBarrierError):  # a worker failed: joined and reported below
            barrier.wait(timeout=BARRIER_SECONDS)
        cpu_start, started = time.process_time(), time.perf_counter()
        for thread in threads:
            thread.join()
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_start
        if crashed:
            raise SystemExit(f"floor: {len(crashed)} of {concurrency} threads failed, the first: {crashed[0]!r}")
        for part in parts:
            for name in ("admission_ms", "settle_ms", "pair_ms"):
                result[name] += part[name]
            result["failures"] += part["failures"]
            result["error"] = result["error"] or part["error"]
        pairs = len(result["pair_ms"])
        result["pairs_per_second"] = pairs / elapsed
        result["cpu_ms"] = [cpu * 1000 / max(pairs, 1)] * pairs  # the per-pair figure under threads is the GIL's
    print(json.dumps(result))


if __name__ == "__main__":
    main()
