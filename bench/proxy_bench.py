"""Proxy benchmark: prints figures, asserts nothing. `make bench` (ours) or `make bench-peers` (ours and
LiteLLM's proxy side by side), or `python bench/proxy_bench.py --help`.

Every part runs in a process of its own, as on AWS where API Gateway, the proxy's Lambda and DynamoDB
are apart: DynamoDB Local (a JVM), the built-in test upstream (bench/upstream_server.py), each proxy (ours:
uvicorn serving functions/proxy/app.py as run.sh does under the Lambda Web Adapter; LiteLLM's: its CLI),
the load generator (bench/loadgen.py, a bare asyncio HTTP client) and the floor (bench/floor.py). This
script only starts them, sets up an account and keys, and reads the results. The load generator calls
each proxy directly: API Gateway's work is not the proxy's.

Figures, on this machine:
  1. the proxy's cold import time, and that no openai / stripe / web3 / pydantic / Powertools module is imported
  2. DynamoDB calls per request on a warm proxy (plain and streamed; subscription and credit keys), counted
     on the wire by a forwarder in front of DynamoDB Local (bench/dynamodb_counter.py)
  3. after a warm-up (DynamoDB Local's JVM included), per target and repeat, targets interleaved:
     p50/p90/p99 latency added over the upstream alone at 1 and 16 clients, requests/s at 16 clients,
     the streamed first-byte overhead, and the proxy process's CPU milliseconds per request (its own
     user + system time over the requests, from /proc)
  4. the floor, measured in the same run: the admission and settle transactions a proxy sent, replayed
     serially by a stock boto3 client; ratios of the above to it (and ours / LiteLLM's with --peers)
  5. embeddings: DynamoDB calls, items, write units, the latency added
  6. the cold import time of every function's handler (a fresh interpreter each)
  7. a cost model: US dollars per million proxied requests on Lambda arm64 + REST API + DynamoDB on demand
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.dynamodb_counter import DynamoDBCounter, DynamoDBUse, write_units  # noqa: E402
from bench.stats import cpu_ms_per_request, process_tree_cpu_seconds, summary, value_range  # noqa: E402
from local_stack.dynamodb_local import DynamoDBLocal, create_tables, free_port  # noqa: E402
from local_stack.server_thread import ServerThread  # noqa: E402
from local_stack.stack import stack_environment  # noqa: E402
from local_stack.template import function_environment, load_template  # noqa: E402

HEAVY = ("openai", "stripe", "web3", "pydantic", "aws_lambda_powertools", "starlette")
BODY = {"model": "test/echo", "messages": [{"role": "user", "content": "benchmark the proxy overhead please"}]}
STREAM_BODY = {**BODY, "stream": True}
CHAT = "/v1/chat/completions"
EMBEDDINGS = "/v1/embeddings"
EMBED_BODY = {"model": "test/embed", "input": ["benchmark the proxy overhead please", "and a second input"]}
LITELLM_MASTER_KEY = "sk-bench-litellm-master"
UPSTREAM = "upstream"  # the target name of the upstream called directly
FLOOR_SECONDS = 900  # one floor.py run; its longest, 1,000 pairs at one client, takes well under a minute here


def cold_import(runs: int, repo: Path) -> tuple[float, float, list[str]]:
    code = (
        "import sys, time; sys.path.insert(0, 'functions/proxy'); t = time.perf_counter(); import app; "
        "elapsed = time.perf_counter() - t; import json; "
        f"print(json.dumps([elapsed, sorted({{m.split('.')[0] for m in sys.modules}} & set({list(HEAVY)!r}))]))"
    )
    env = {**os.environ, "PYTHONPATH": str(repo / "layers" / "shared")}
    timings, heavy = [], []
    for _ in range(runs):
        out = subprocess.run(
            [sys.executable, "-c", code], cwd=repo, env=env, capture_output=True, text=True, check=True
        )
        elapsed, heavy = json.loads(out.stdout)
        timings.append(elapsed * 1000)
    return statistics.median(timings), min(timings), heavy


def function_cold_imports(runs: int) -> dict[str, tuple[float, float]]:
    """Median milliseconds (wall, CPU) to import each function's handler in a fresh interpreter (the proxy:
    its app), in Lambda's environment; bench/import_profile.py says where the time goes."""
    from bench.import_profile import lambda_environment
    from local_stack.template import runs_under_web_adapter

    template = load_template(REPO / "template.yaml")
    results = {}
    for logical_id, resource in sorted(template["Resources"].items()):
        if resource["Type"] != "AWS::Serverless::Function":
            continue
        folder = REPO / resource["Properties"]["CodeUri"]
        module = "app" if runs_under_web_adapter(template, logical_id) else "handler"
        code = (
            "import time; c = time.process_time(); t = time.perf_counter(); "
            f"import {module}; print(time.perf_counter() - t, time.process_time() - c)"
        )
        env = {**lambda_environment(template, logical_id), "PYTHONPATH": f"{REPO / 'layers' / 'shared'}:{folder}"}
        timings, cpu = [], []
        for _ in range(runs):
            out = subprocess.run([sys.executable, "-c", code], cwd=folder, env=env, capture_output=True, text=True)
            if out.returncode != 0:
                raise RuntimeError(f"{logical_id}: {out.stderr.strip().splitlines()[-1]}")
            wall, used = (float(x) * 1000 for x in out.stdout.split())
            timings.append(wall)
            cpu.append(used)
        results[logical_id] = (statistics.median(timings), statistics.median(cpu))
    return results


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


# --- processes -------------------------------------------------------------------------------------


@dataclass
class Target:
    """Something the load generator calls: the upstream alone, or a proxy in front of it."""

    name: str
    url: str
    key: str | None
    process: subprocess.Popen | None = None
    supports_embeddings: bool = False

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"} if self.key else {}


def wait_ready(url: str, process: subprocess.Popen, what: str, log: Path, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with {process.returncode}; its log: {log}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 - a local URL we built
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)  # polling a child process's readiness: no event to wait on
    raise TimeoutError(f"{what} not ready after {timeout:.0f} s; its log: {log}")


class Processes:
    """Child processes started by the bench, each logging to a file; all stopped on exit."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.started: list[subprocess.Popen] = []

    def start(self, name: str, command: list[str], env: dict[str, str], cwd: Path) -> tuple[subprocess.Popen, Path]:
        log = self.folder / f"{name}.log"
        process = subprocess.Popen(  # fixed argv, no shell
            command, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=log.open("wb"), stderr=subprocess.STDOUT
        )
        self.started.append(process)
        return process, log

    def stop(self, process: subprocess.Popen) -> None:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def stop_all(self) -> None:
        for process in reversed(self.started):
            self.stop(process)


def base_environment() -> dict[str, str]:
    """The parent's environment minus anything that would point a child at another DynamoDB or catalog."""
    return {name: value for name, value in os.environ.items() if not name.startswith(("DYNAMODB_", "AWS_"))}


def start_upstream(processes: Processes) -> Target:
    port = free_port("127.0.0.1")
    process, log = processes.start(
        "upstream", [sys.executable, str(REPO / "bench" / "upstream_server.py"), str(port)], base_environment(), REPO
    )
    url = f"http://127.0.0.1:{port}"
    wait_ready(f"{url}/v1/models", process, "the upstream", log)
    return Target(UPSTREAM, url, None, process, supports_embeddings=True)


def server_options(code: Path) -> list[str]:
    """uvicorn's HTTP parser and event loop as that checkout's run.sh picks them. Without ``--http`` and
    ``--loop`` there, Lambda runs h11 and asyncio's loop (only the proxy's requirements are installed), even
    where this venv has httptools and uvloop, which uvicorn's ``auto`` would pick."""
    script = (code / "functions" / "proxy" / "run.sh").read_text()
    http = re.search(r"--http\s+(\S+)", script)
    loop = re.search(r"--loop\s+(\S+)", script)
    return ["--http", http.group(1) if http else "h11", "--loop", loop.group(1) if loop else "asyncio"]


def start_our_proxy(
    processes: Processes, name: str, code: Path, env: dict[str, str], dynamodb_url: str, key: str
) -> Target:
    """functions/proxy/app.py under uvicorn, as run.sh starts it on Lambda (no access log, one process)."""
    port = free_port("127.0.0.1")
    proxy_env = {
        **base_environment(),
        **env,
        "DYNAMODB_ENDPOINT_URL": dynamodb_url,
        "PYTHONPATH": f"{code / 'functions' / 'proxy'}:{code / 'layers' / 'shared'}",
    }
    command = [sys.executable, "-m", "uvicorn", "app:app", "--host", "127.0.0.1", "--port", str(port)]
    command += ["--no-access-log", "--log-level", "warning", *server_options(code)]
    process, log = processes.start(name, command, proxy_env, code / "functions" / "proxy")
    url = f"http://127.0.0.1:{port}"
    wait_ready(f"{url}/healthz", process, name, log)
    return Target(name, url, key, process, supports_embeddings=True)


def start_litellm(processes: Processes, venv: Path, upstream_url: str) -> Target:
    """LiteLLM's proxy with a master key only (no database, so no per-key accounting), one worker."""
    config = processes.folder / "litellm.yaml"
    config.write_text(
        json.dumps(  # JSON is YAML
            {
                "model_list": [
                    {
                        "model_name": BODY["model"],
                        "litellm_params": {
                            "model": f"openai/{BODY['model']}",
                            "api_base": f"{upstream_url}/v1",
                            "api_key": "bench",
                        },
                    }
                ],
                "general_settings": {"master_key": LITELLM_MASTER_KEY},
                "litellm_settings": {"telemetry": False},
            }
        )
    )
    port = free_port("127.0.0.1")
    env = {
        **base_environment(),
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",  # no download of the price list at start
        "LITELLM_LOG": "ERROR",
        "LITELLM_TELEMETRY": "False",
        "DISABLE_SCHEMA_UPDATE": "True",
    }
    command = [str(venv / "bin" / "litellm"), "--config", str(config), "--host", "127.0.0.1", "--port", str(port)]
    command += ["--num_workers", "1"]
    process, log = processes.start("litellm", command, env, processes.folder)
    url = f"http://127.0.0.1:{port}"
    wait_ready(f"{url}/health/liveliness", process, "LiteLLM", log, timeout=240)
    return Target("litellm", url, LITELLM_MASTER_KEY, process)


# --- measurements ----------------------------------------------------------------------------------


@dataclass
class BenchStack:
    """What the bench scripts run against: DynamoDB Local with the template's tables, the test upstream
    in a process of its own, a model catalog pointing at it, and an account with credit to make keys in."""

    folder: Path
    template: dict
    processes: Processes
    dynamodb: DynamoDBLocal
    table_names: dict[str, str]
    upstream: Target
    caller: Any  # the account's management key, as the domain takes it

    def proxy_environment(self) -> dict[str, str]:
        """ProxyFunction's settings from the template, pointed at this stack (start_our_proxy adds the rest)."""
        return {
            **function_environment(self.template, "ProxyFunction", self.table_names),
            **{name: value for name, value in os.environ.items() if name.startswith(("AWS_", "POWERTOOLS_"))},
            "MODEL_CATALOG_FILE": str(self.folder / "models.json"),
        }


@contextlib.contextmanager
def bench_stack(label: str) -> Iterator[BenchStack]:
    """Starts a BenchStack and, on the way out, stops DynamoDB Local and every process in its ``processes``
    (the upstream's, and whatever its user started or registered there). The folder of
    logs is removed after a clean exit and kept after an error, for the logs an error message names."""
    folder = Path(tempfile.mkdtemp(prefix=f"{label}-"))
    template = load_template(REPO / "template.yaml")
    processes = Processes(folder)
    dynamodb = DynamoDBLocal(log_path=folder / "dynamodb-local.log")
    try:
        dynamodb.start()
        table_names = create_tables(dynamodb.endpoint_url, template)
        upstream = start_upstream(processes)
        from local_stack.upstream import local_model_catalog

        (folder / "models.json").write_text(json.dumps(local_model_catalog(upstream.url)))
        # This process sets up the account and keys with the shared code, so it needs the functions' settings.
        os.environ.update(stack_environment(template, table_names, dynamodb.endpoint_url))
        os.environ["MODEL_CATALOG_FILE"] = str(folder / "models.json")
        from llm_platform.domain import accounts
        from llm_platform.domain.accounts import Caller

        created = accounts.create_account(label)
        accounts.grant_credit(created.account_id, 1_000_000_000, label)
        caller = Caller(created.account_id, created.management_key_id)
        yield BenchStack(folder, template, processes, dynamodb, table_names, upstream, caller)
    finally:
        processes.stop_all()
        dynamodb.stop()
    shutil.rmtree(folder, ignore_errors=True)


@dataclass
class Series:
    latencies_ms: list[float]
    first_byte_ms: list[float]
    requests_per_second: float
    cpu_ms_per_request: float | None  # the target process's (tree's) CPU over every request it served here
    failures: int
    statuses: dict[str, int]
    request_ids: list[str] = field(default_factory=list)
    calls_before_first_byte: int = 0
    dynamodb_cpu_ms_per_request: float | None = None  # DynamoDB Local's, over the same requests


def load(
    target: Target,
    path: str,
    body: dict,
    requests: int,
    concurrency: int = 1,
    warmup: int = 5,
    count_url: str | None = None,
    request_ids: bool = False,
    dynamodb_pid: int | None = None,
) -> Series:
    """One series from the load generator, in its own process; the target's CPU time read around it (and
    DynamoDB Local's, given its ``dynamodb_pid``)."""
    config = {
        "url": target.url,
        "path": path,
        "headers": target.headers,
        "body": body,
        "requests": requests,
        "concurrency": concurrency,
        "warmup": warmup,
        "count_url": count_url,
        "request_ids": request_ids,
    }
    pid = target.process.pid if target.process else None
    cpu_before = process_tree_cpu_seconds(pid) if pid else None
    store_before = process_tree_cpu_seconds(dynamodb_pid) if dynamodb_pid else None
    out = subprocess.run(
        [sys.executable, str(REPO / "bench" / "loadgen.py"), json.dumps(config)], capture_output=True, text=True
    )
    cpu_after = process_tree_cpu_seconds(pid) if pid else None
    store_after = process_tree_cpu_seconds(dynamodb_pid) if dynamodb_pid else None
    if out.returncode != 0:
        raise RuntimeError(f"load generator failed against {target.name}: {out.stderr.strip()[-2000:]}")
    result = json.loads(out.stdout)
    served = requests + warmup * concurrency
    return Series(
        latencies_ms=result["latencies_ms"],
        first_byte_ms=result["first_byte_ms"],
        requests_per_second=requests / result["elapsed_s"],
        cpu_ms_per_request=cpu_ms_per_request(cpu_before, cpu_after, served) if pid else None,
        failures=result["failures"],
        statuses=result["statuses"],
        request_ids=result["request_ids"],
        calls_before_first_byte=result["calls_before_first_byte"],
        dynamodb_cpu_ms_per_request=(
            cpu_ms_per_request(store_before, store_after, served) if store_before is not None else None
        ),
    )


def floor(
    dynamodb_url: str,
    transactions: dict,
    requests: int,
    warmup: int,
    concurrency: int = 1,
    dynamodb_pid: int | None = None,
) -> dict:
    """The captured pairs replayed by floor.py (serially, or from ``concurrency`` threads at once); given
    ``dynamodb_pid``, also DynamoDB Local's CPU per pair (``dynamodb_cpu_ms``)."""
    config = {
        **transactions,
        "endpoint": dynamodb_url,
        "requests": requests,
        "warmup": warmup,
        "concurrency": concurrency,
    }
    store_before = process_tree_cpu_seconds(dynamodb_pid) if dynamodb_pid else None
    out = subprocess.run(
        [sys.executable, str(REPO / "bench" / "floor.py"), json.dumps(config)],
        capture_output=True,
        text=True,
        env={**os.environ},
        timeout=FLOOR_SECONDS,
    )
    if out.returncode != 0:
        raise RuntimeError(f"floor failed: {out.stderr.strip()[-2000:]}")
    result = json.loads(out.stdout)
    if store_before is not None and dynamodb_pid:
        # Warm-up pairs included: DynamoDB Local did their work too.
        pairs = len(result["pair_ms"]) + (warmup if concurrency == 1 else concurrency)
        result["dynamodb_cpu_ms"] = cpu_ms_per_request(store_before, process_tree_cpu_seconds(dynamodb_pid), pairs)
    if result["failures"]:
        print(f"  (floor: {result['failures']} replays failed: {result['error']})", file=sys.stderr)
    return result


def settled(counter: DynamoDBCounter, quiet_seconds: float = 0.3, limit_seconds: float = 5.0) -> list:
    """The forwarder's calls once none has arrived for `quiet_seconds`: a streamed request settles after
    its last byte, so the load generator may finish before the proxy's last call."""
    deadline = time.monotonic() + limit_seconds
    seen = len(counter.snapshot())
    while time.monotonic() < deadline:
        time.sleep(quiet_seconds)
        now = len(counter.snapshot())
        if now == seen:
            break
        seen = now
    return counter.snapshot()


def count_dynamodb_calls(
    proxy: Target, counter: DynamoDBCounter, counter_url: str, requests: int, path: str, body: dict
) -> tuple[DynamoDBUse, Series, list]:
    """What DynamoDB does per request on a warm proxy, counted on the wire."""
    from llm_platform.config import get_settings

    load(proxy, path, body, 3, warmup=0)  # warm: the key cached, connections open
    settled(counter)
    counter.reset()
    series = load(proxy, path, body, requests, warmup=0, count_url=f"{counter_url}/__bench/calls", request_ids=True)
    if series.failures:
        raise RuntimeError(f"{series.failures} of {requests} counted requests failed: {series.statuses}")
    calls = [call for call in settled(counter) if call.operation]
    settings = get_settings()
    items, units = write_units(calls, settings.request_log_table, settings.reservations_table)
    use = DynamoDBUse(
        calls=len(calls) / requests,
        milliseconds=sum(call.milliseconds for call in calls) / requests,
        items=items / requests,
        write_units=units / requests,
        calls_before_first_byte=series.calls_before_first_byte / requests,
    )
    return use, series, calls


def captured_transactions(series: Series, calls: list) -> dict:
    """The admission and settle transactions of the last counted request, found by its request id."""
    request_id = series.request_ids[-1]
    mine = [c for c in calls if c.operation == "TransactWriteItems" and request_id in json.dumps(c.body)]
    if len(mine) != 2:
        raise RuntimeError(f"expected an admission and a settle transaction for {request_id}, found {len(mine)}")
    return {"admission": mine[0].body, "settle": mine[1].body, "request_id": request_id}


# --- report ----------------------------------------------------------------------------------------


def added(series: Series, direct: Series, q: str = "p50") -> float:
    """Latency added at quantile q: the target's q-quantile minus the upstream's, from the same repeat."""
    return summary(series.latencies_ms)[q] - summary(direct.latencies_ms)[q]


def first_byte_added(series: Series, direct: Series, q: str = "p50") -> float:
    return summary(series.first_byte_ms)[q] - summary(direct.first_byte_ms)[q]


def ratios(numerators: list[float], denominators: list[float]) -> list[float]:
    return [n / d for n, d in zip(numerators, denominators, strict=True) if d]


def print_report(args, results: list[dict], floors: list[dict], names: list[str], loads: tuple) -> None:
    """Per target, each figure as a range over the repeats; ratios are taken per repeat, then ranged."""
    print(f"\nLatency, throughput and CPU ({len(results)} repeats, targets interleaved; ranges over the repeats):")
    print(
        f"  series: {args.requests} sequential plain requests (1 client), {args.streams} sequential streamed, "
        f"{args.load} plain from {args.concurrency} concurrent clients"
    )
    print(f"  load average (1, 5, 15 min): {loads[0]} before, {loads[1]} after")
    direct = [r[UPSTREAM] for r in results]
    one_client = [summary(d["plain1"].latencies_ms) for d in direct]
    print(
        f"  {UPSTREAM} alone: 1 client p50 {value_range((s['p50'] for s in one_client), 2)} ms, "
        f"p99 {value_range((s['p99'] for s in one_client), 2)} ms; {args.concurrency} clients p50 "
        f"{value_range((summary(d['plainN'].latencies_ms)['p50'] for d in direct), 2)} ms, "
        f"{value_range((d['plainN'].requests_per_second for d in direct), 0)} requests/s; streamed first byte "
        f"p50 {value_range((summary(d['stream1'].first_byte_ms)['p50'] for d in direct), 2)} ms"
    )
    two = [summary(f["pair_ms"])["p50"] for f in floors]
    one = [summary(f["admission_ms"])["p50"] for f in floors]
    print(
        f"  floor (the admission and settle transactions replayed serially by boto3, p50): two transactions "
        f"{value_range(two, 2)} ms; admission {value_range(one, 2)} ms, "
        f"settle {value_range((summary(f['settle_ms'])['p50'] for f in floors), 2)} ms; boto3's CPU for the two "
        f"{value_range((sum(f['cpu_ms']) / len(f['cpu_ms']) for f in floors), 2)} ms (mean)"
    )
    crowds = [f["crowd"] for f in floors]
    crowd_p99 = [summary(c["pair_ms"])["p99"] for c in crowds]
    print(
        f"  floor at {args.concurrency} clients (the same pairs from {args.concurrency} threads with a boto3 client "
        f"each, {args.load} pairs): p50 {value_range((summary(c['pair_ms'])['p50'] for c in crowds), 2)} ms, "
        f"p99 {value_range(crowd_p99, 2)} ms, {value_range((c['pairs_per_second'] for c in crowds), 0)} pairs/s; "
        f"DynamoDB Local's CPU per pair {value_range((c['dynamodb_cpu_ms'] for c in crowds), 2)} ms"
    )
    for name in names:
        if name == UPSTREAM:
            continue
        rows = [r[name] for r in results]
        print(f"  {name}:")
        for label, kind in (("1 client", "plain1"), (f"{args.concurrency} clients", "plainN")):
            parts = [
                f"{q} +{value_range((added(row[kind], d[kind], q) for row, d in zip(rows, direct, strict=True)), 2)}"
                for q in ("p50", "p90", "p99")
            ]
            through = value_range((summary(row[kind].latencies_ms)["p50"] for row in rows), 2)
            rps = value_range((row[kind].requests_per_second for row in rows), 0)
            print(f"    added latency, {label}: {', '.join(parts)} ms (p50 through it {through} ms; {rps} requests/s)")
        ttfb = [first_byte_added(row["stream1"], d["stream1"]) for row, d in zip(rows, direct, strict=True)]
        ttfb99 = [first_byte_added(row["stream1"], d["stream1"], "p99") for row, d in zip(rows, direct, strict=True)]
        print(f"    streamed first-byte overhead: p50 +{value_range(ttfb, 2)} ms, p99 +{value_range(ttfb99, 2)} ms")
        cpu = {kind: [row[kind].cpu_ms_per_request for row in rows] for kind in ("plain1", "plainN", "stream1")}
        print(
            f"    proxy process CPU per request: plain {value_range(cpu['plain1'], 2)} ms (1 client), "
            f"{value_range(cpu['plainN'], 2)} ms ({args.concurrency} clients); "
            f"streamed {value_range(cpu['stream1'], 2)} ms"
        )
        if name != "litellm":  # LiteLLM here keeps no accounts: DynamoDB Local idles through its series
            store = [row["plainN"].dynamodb_cpu_ms_per_request for row in rows]
            p99 = [summary(row["plainN"].latencies_ms)["p99"] for row in rows]
            print(
                f"    at {args.concurrency} clients: DynamoDB Local's CPU per request {value_range(store, 2)} ms "
                f"(the proxy's {value_range(cpu['plainN'], 2)} ms); p99 / the floor's p99 at {args.concurrency} "
                f"clients {value_range(ratios(p99, crowd_p99), 2)}x"
            )
        failures = sum(row[kind].failures for row in rows for kind in ("plain1", "plainN", "stream1"))
        if failures:
            print(f"    FAILED requests: {failures} ({[row[kind].statuses for row in rows for kind in row]})")
        added_p50 = [added(row["plain1"], d["plain1"]) for row, d in zip(rows, direct, strict=True)]
        print(
            f"    ratios: added p50 (1 client) / two-transaction floor {value_range(ratios(added_p50, two), 2)}x; "
            f"streamed first-byte overhead p50 / one transaction {value_range(ratios(ttfb, one), 2)}x"
        )
    # Each other build of ours (--compare) against ours, then ours against LiteLLM's.
    pairs = [(name, "ours") for name in names if name not in (UPSTREAM, "ours", "litellm")]
    pairs += [("ours", "litellm")] if "litellm" in names else []
    for mine, theirs in pairs:
        print_ratios(args, mine, theirs, [r[mine] for r in results], [r[theirs] for r in results], direct)


def print_ratios(args, name: str, other: str, ours: list[dict], peer: list[dict], direct: list[dict]) -> None:
    def each(figure) -> list[float]:
        return ratios(
            [figure(o, d) for o, d in zip(ours, direct, strict=True)],
            [figure(p, d) for p, d in zip(peer, direct, strict=True)],
        )

    print(f"  {name} / {other} (per repeat, then ranged):")
    figures = {
        "added p50, 1 client": lambda t, d: added(t["plain1"], d["plain1"]),
        "added p99, 1 client": lambda t, d: added(t["plain1"], d["plain1"], "p99"),
        f"added p50, {args.concurrency} clients": lambda t, d: added(t["plainN"], d["plainN"]),
        f"p99, {args.concurrency} clients": lambda t, d: summary(t["plainN"].latencies_ms)["p99"],
        "requests/s": lambda t, d: t["plainN"].requests_per_second,
        "streamed first-byte overhead": lambda t, d: first_byte_added(t["stream1"], d["stream1"]),
        "CPU per plain request": lambda t, d: t["plain1"].cpu_ms_per_request,
        "CPU per streamed request": lambda t, d: t["stream1"].cpu_ms_per_request,
    }
    for label, figure in figures.items():
        print(f"    {label:30} {value_range(each(figure), 2)}x")


def series_json(series: Series) -> dict:
    return {
        **summary(series.latencies_ms),
        "first_byte": summary(series.first_byte_ms) if series.first_byte_ms else None,
        "requests_per_second": series.requests_per_second,
        "cpu_ms_per_request": series.cpu_ms_per_request,
        "dynamodb_cpu_ms_per_request": series.dynamodb_cpu_ms_per_request,
        "failures": series.failures,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=300, help="sequential plain requests per series")
    parser.add_argument("--streams", type=int, default=100, help="sequential streamed requests per series")
    parser.add_argument("--load", type=int, default=1000, help="requests in the concurrent series")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--floor-requests", type=int, default=200, help="admission + settle pairs per floor")
    parser.add_argument("--peers", action="store_true", help="also LiteLLM's proxy (from --litellm-venv)")
    parser.add_argument("--litellm-venv", type=Path, default=REPO / ".venv-litellm")
    parser.add_argument(
        "--compare",
        action="append",
        default=[],
        metavar="NAME=CHECKOUT",
        help="also our proxy from another checkout of this repo (e.g. base=/work/main), same tables and keys",
    )
    parser.add_argument("--quick", action="store_true", help="small series and one repeat: for trying changes")
    parser.add_argument("--skip-imports", action="store_true", help="leave out the cold-import figures")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args()
    args.litellm_venv = args.litellm_venv.resolve()  # its CLI is started from a scratch folder
    if args.quick:
        args.requests, args.streams, args.load, args.repeats, args.floor_requests = 100, 40, 300, 1, 100

    loads_before = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"Proxy benchmark (this machine: {os.cpu_count()} cores; load average {loads_before})", flush=True)
    if not args.skip_imports:
        median_ms, best_ms, heavy = cold_import(5, REPO)
        print(
            f"  cold import of functions/proxy/app.py: median {median_ms:.0f} ms, best {best_ms:.0f} ms "
            f"(heavy modules imported: {', '.join(heavy) or 'none'})",
            flush=True,
        )

    with bench_stack("bench") as stack, contextlib.ExitStack() as cleanup:
        dynamodb, processes, upstream, caller = stack.dynamodb, stack.processes, stack.upstream, stack.caller
        from llm_platform.domain import api_keys, billing

        _, credit_key = api_keys.create_credit_key(caller, "bench-credit", None, 100_000, 100_000_000)
        subscription = billing.grant_subscription(caller.account_id, "pro")
        _, subscription_key = api_keys.create_subscription_key(caller, "bench-sub", subscription.subscription_id)
        proxy_env = stack.proxy_environment()

        # DynamoDB calls per request, counted on the wire by a forwarder in front of DynamoDB Local.
        counter = DynamoDBCounter(dynamodb.endpoint_url)
        counter_server = ServerThread(counter)
        counter_server.start()
        cleanup.callback(counter_server.stop)
        counting = start_our_proxy(processes, "ours-counted", REPO, proxy_env, counter_server.url, credit_key)
        counted = {}
        for label, key in (("credit key", credit_key), ("subscription key", subscription_key)):
            for kind, body in (("plain", BODY), ("streamed", STREAM_BODY)):
                counting.key = key
                counted[f"{label}, {kind}"] = count_dynamodb_calls(
                    counting, counter, counter_server.url, 50, CHAT, body
                )
        counting.key = credit_key
        embeddings = count_dynamodb_calls(counting, counter, counter_server.url, 50, EMBEDDINGS, EMBED_BODY)[0]
        _, plain_series, plain_calls = counted["credit key, plain"]
        transactions = captured_transactions(plain_series, plain_calls)
        processes.stop(counting.process)
        counter_server.stop()
        for name, (use, _, _) in counted.items():
            print(
                f"  DynamoDB per request, warm, {name}: {use.calls:.2f} calls "
                f"({use.calls_before_first_byte:.2f} before the first byte), {use.items:.1f} transaction items, "
                f"{use.write_units:.1f} write units; {use.milliseconds:.1f} ms at DynamoDB Local through the "
                "counting forwarder, before the warm-up (not a latency figure: see the floor below)",
                flush=True,
            )

        targets = [upstream, start_our_proxy(processes, "ours", REPO, proxy_env, dynamodb.endpoint_url, credit_key)]
        for spec in args.compare:
            name, _, checkout = spec.partition("=")
            targets.append(
                start_our_proxy(processes, name, Path(checkout).resolve(), proxy_env, dynamodb.endpoint_url, credit_key)
            )
        if args.peers:
            if not (args.litellm_venv / "bin" / "litellm").exists():
                raise SystemExit(f"no LiteLLM in {args.litellm_venv}: run `make bench-peers`")
            targets.append(start_litellm(processes, args.litellm_venv, upstream.url))
        names = [target.name for target in targets]

        # Warm-up: every target, and DynamoDB Local's JVM (the floor's transactions and the proxies' own).
        floor(dynamodb.endpoint_url, transactions, 0, 300)
        for target in targets:
            load(target, CHAT, BODY, 200, concurrency=4)
            load(target, CHAT, STREAM_BODY, 50)
        print("  warmed: 300 floor transaction pairs, 200 plain and 50 streamed requests per target", flush=True)

        results: list[dict] = []
        floors: list[dict] = []
        embed: list[tuple[Series, Series]] = []
        for repeat in range(args.repeats):
            # The floor is measured on either side of the repeat's series, so drift in the host's speed
            # weighs on it as on the targets.
            before = floor(dynamodb.endpoint_url, transactions, args.floor_requests // 2, 10)
            order = targets[repeat % len(targets) :] + targets[: repeat % len(targets)]
            row: dict = {target.name: {} for target in targets}
            for kind, body, requests, concurrency in (
                ("plain1", BODY, args.requests, 1),
                ("stream1", STREAM_BODY, args.streams, 1),
                ("plainN", BODY, args.load, args.concurrency),
            ):
                for target in order:
                    row[target.name][kind] = load(target, CHAT, body, requests, concurrency, dynamodb_pid=dynamodb.pid)
            # The same pairs from as many threads as the concurrent series has clients, straight to DynamoDB
            # Local: what its own queueing and CPU add at that load, with no proxy in the way.
            crowd = floor(dynamodb.endpoint_url, transactions, args.load, 0, args.concurrency, dynamodb.pid)
            embed.append(
                (
                    load(targets[0], EMBEDDINGS, EMBED_BODY, args.requests // 2),
                    load(targets[1], EMBEDDINGS, EMBED_BODY, args.requests // 2),
                )
            )
            after = floor(dynamodb.endpoint_url, transactions, args.floor_requests - args.floor_requests // 2, 10)
            floors.append(
                {name: before[name] + after[name] for name in ("admission_ms", "settle_ms", "pair_ms", "cpu_ms")}
                | {"crowd": crowd}
            )
            results.append(row)
            print(f"  repeat {repeat + 1} of {args.repeats} done", flush=True)
        loads_after = " ".join(f"{x:.2f}" for x in os.getloadavg())

    print_report(args, results, floors, names, (loads_before, loads_after))
    e_added = [summary(p.latencies_ms)["p50"] - summary(d.latencies_ms)["p50"] for d, p in embed]
    print(
        f"  embeddings ({EMBED_BODY['model']}, 2 inputs), credit key, warm: {embeddings.calls:.2f} DynamoDB calls, "
        f"{embeddings.items:.1f} transaction items, {embeddings.write_units:.1f} write units, "
        f"added p50 +{value_range(e_added, 2)} ms"
    )

    if not args.skip_imports:
        per_function = function_cold_imports(3)
        print("  cold import of each function's handler (median of 3 fresh interpreters; this venv, so bytecode")
        print("  as the venv has it: bench/import_profile.py --lambda-like for Lambda's; wall / CPU):")
        for logical_id, (wall, used) in per_function.items():
            print(f"    {logical_id:32} {wall:6.0f} / {used:4.0f} ms")

    proxy_memory = int(stack.template["Resources"]["ProxyFunction"]["Properties"]["MemorySize"])
    worst_units = max(use.write_units for use, _, _ in counted.values())
    ours_added = statistics.median(added(r["ours"]["plain1"], r[UPSTREAM]["plain1"], "p50") for r in results)
    print(
        f"  cost per million proxied requests, us-east-1 list prices, {worst_units:.0f} write units per request "
        f"(the most of the four kinds above), {proxy_memory} MB arm64, +{ours_added:.0f} ms added (median p50 here):"
    )
    for upstream_seconds in (0.0, 1.0, 10.0):
        parts = cost_per_million(worst_units, ours_added, proxy_memory, upstream_seconds)
        detail = ", ".join(f"{name} ${value:.2f}" for name, value in parts.items())
        label = "proxy alone" if upstream_seconds == 0 else f"model answers in {upstream_seconds:.0f} s"
        print(f"    {label:24} ${sum(parts.values()):8.2f}  ({detail})")
    parts = cost_per_million(embeddings.write_units, statistics.median(e_added), proxy_memory, 0.0)
    detail = ", ".join(f"{name} ${value:.2f}" for name, value in parts.items())
    print(f"  cost per million embeddings requests, the proxy alone: ${sum(parts.values()):.2f}  ({detail})")

    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "load_average": [loads_before, loads_after],
                    "floors": [{k: summary(v) for k, v in f.items() if k.endswith("_ms")} for f in floors],
                    "floors_at_concurrency": [
                        {
                            "pair_ms": summary(f["crowd"]["pair_ms"]),
                            "pairs_per_second": f["crowd"]["pairs_per_second"],
                            "dynamodb_cpu_ms": f["crowd"].get("dynamodb_cpu_ms"),
                        }
                        for f in floors
                    ],
                    "repeats": [{n: {k: series_json(s) for k, s in row[n].items()} for n in names} for row in results],
                    "dynamodb": {name: use.__dict__ for name, (use, _, _) in counted.items()},
                },
                indent=2,
            )
        )


if __name__ == "__main__":
    main()
