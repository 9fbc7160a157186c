"""The design's floor, in a process of its own: `python bench/floor.py '<json config>'`.

Replays the admission and settle transactions a proxy sent for one plain request (captured on the wire
by bench/dynamodb_counter.py) against the same DynamoDB Local, one after the other, with a stock boto3
low-level client: the time of those two serial round trips (boto3's own CPU included) is the least
a proxy doing exact accounting can add. Each replay gets a fresh request id (so the reservation put,
its delete and the log record are new items, as for a new request) and a fresh ClientRequestToken.

Config: {"endpoint": url, "admission": params, "settle": params, "request_id": the captured request's id,
"requests": 200, "warmup": 20}. Prints {"admission_ms": [...], "settle_ms": [...], "pair_ms": [...],
"cpu_ms": [...] (this process's CPU per pair: boto3's own work), "failures": n, "error": first failure}.
"""

from __future__ import annotations

import json
import sys
import time
import uuid

import boto3
from botocore.exceptions import ClientError


def fresh(params_text: str, request_id: str, new_id: str) -> dict:
    """The captured transaction as if for the request `new_id`, with a ClientRequestToken of its own."""
    params = json.loads(params_text.replace(request_id, new_id))
    if "ClientRequestToken" in params and new_id not in params["ClientRequestToken"]:
        params["ClientRequestToken"] = str(uuid.uuid4())
    return params


def main() -> None:
    config = json.loads(sys.argv[1])
    ddb = boto3.client("dynamodb", endpoint_url=config["endpoint"])
    request_id = config["request_id"]
    admission_text, settle_text = json.dumps(config["admission"]), json.dumps(config["settle"])
    admission_ms, settle_ms, pair_ms, cpu_ms = [], [], [], []
    failures, error = 0, None
    for index in range(int(config.get("warmup", 20)) + int(config["requests"])):
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
            failures += 1
            error = error or str(exc)
            continue
        if index >= int(config.get("warmup", 20)):
            admission_ms.append((middle - start) * 1000)
            settle_ms.append((end - middle) * 1000)
            pair_ms.append((end - start) * 1000)
            cpu_ms.append((cpu_end - cpu_start) * 1000)
    print(
        json.dumps(
            {
                "admission_ms": admission_ms,
                "settle_ms": settle_ms,
                "pair_ms": pair_ms,
                "cpu_ms": cpu_ms,
                "failures": failures,
                "error": error,
            }
        )
    )


if __name__ == "__main__":
    main()
