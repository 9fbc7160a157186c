"""Where the proxy process's CPU goes per request: `python bench/profile_proxy.py [--requests N] [--kind plain|stream]`.

Starts what `proxy_bench.py` starts (DynamoDB Local, the test upstream, our proxy as run.sh serves it, each
in its own process), warms the proxy, then samples it with py-spy (`pip install py-spy` into the venv: a
tool for this script only, not a dependency) while the load generator sends sequential requests. Prints
the CPU per request (/proc) and, from the samples, the share of each part: the innermost frame that
belongs to one of the groups below (our modules, uvicorn, asyncio, the json module, ...), then the
functions that hold the most samples, self and total. Asserts nothing."""

from __future__ import annotations

import argparse
import collections
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.proxy_bench import (  # noqa: E402
    BODY,
    CHAT,
    STREAM_BODY,
    bench_stack,
    load,
    start_our_proxy,
)

# A sample is charged to the innermost frame whose file matches one of these, in this order of precedence.
GROUPS = (
    ("proxy/telemetry.py", "ours: telemetry (the request line)"),
    ("data/dynamo_wire.py", "ours: dynamo_wire (sign, serialise, exchange)"),
    ("proxy/http1.py", "ours: http1 (the provider call)"),
    ("data/metering.py", "ours: data/metering (transaction items)"),
    ("proxy/metering.py", "ours: proxy/metering (admit, settle)"),
    ("proxy/generation.py", "ours: generation (SSE parse, merge)"),
    ("proxy/asgi.py", "ours: asgi (routing, validation, relay)"),
    ("llm_platform/", "ours: other shared modules"),
    ("uvicorn/protocols", "uvicorn protocol (httptools callbacks, ASGI send/receive)"),
    ("uvicorn/", "uvicorn other"),
    ("concurrent/futures", "thread pool hand-off"),
    ("threading.py", "thread pool hand-off"),
    ("asyncio/", "asyncio (tasks, streams, timeouts)"),
    ("json/", "json encode/decode"),
    ("hmac.py", "hashlib/hmac"),
    ("uuid.py", "uuid"),
    ("socket.py", "socket"),
    ("", "other"),
)


# A sample is charged to the first of these phases that a frame of its stack matches (the whole stack).
PHASES = (
    (("dynamo_wire.py",), "DynamoDB transactions: JSON, SigV4 signing, socket exchange (dynamo_wire)"),
    (
        ("proxy/metering.py", "data/metering.py", "data/leases.py", "proxy/leases.py", "data/dynamo.py"),
        "metering logic: transaction items, windows, leases (metering, leases, dynamo)",
    ),
    (("concurrent/futures", "_chain_future", "wrap_future", "_blocking", "threading.py"), "thread pool hand-off"),
    (("telemetry.py",), "telemetry: the request's log line"),
    (("proxy/http1.py", "proxy/upstream.py", "generation.py"), "provider call: request, answer read, SSE parse"),
    (
        ("_send_json", "_send_raw", "RequestResponseCycle.send", "cors.py"),
        "answer: JSON encode, ASGI send, uvicorn write",
    ),
    (("llm_platform/",), "ours: request parse, validation, key check, pricing (asgi and the rest)"),
    (("uvicorn/",), "uvicorn: httptools parse, ASGI scope, task start"),
    (("",), "event loop (uvloop, task steps) and other"),
)


def phase_of(frames: list[str]) -> str:
    for needles, name in PHASES:
        if any(needle in frame for frame in frames for needle in needles):
            return name
    return PHASES[-1][1]


def group_of(frame: str) -> str | None:
    for needle, name in GROUPS:
        if needle and needle in frame:
            return name
    return None


def analyse(raw: Path, top: int, cpu_ms: float) -> None:
    """py-spy's raw (collapsed) output: 'frame;frame;... count' per line, outermost first."""
    by_group: collections.Counter[str] = collections.Counter()
    by_phase: collections.Counter[str] = collections.Counter()
    self_time: collections.Counter[str] = collections.Counter()
    total_time: collections.Counter[str] = collections.Counter()
    samples = 0
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack:
            continue
        count = int(count_text)
        samples += count
        frames = stack.split(";")
        self_time[frames[-1]] += count
        by_phase[phase_of(frames)] += count
        for frame in set(frames):
            total_time[frame] += count
        for frame in reversed(frames):
            group = group_of(frame)
            if group is not None:
                by_group[group] += count
                break
        else:
            by_group["other"] += count
    print(
        f"\n{samples} samples; by phase (ms: the share of the samples times the {cpu_ms:.2f} ms of CPU per "
        "request measured without py-spy, so the time outside the GIL is spread over them):"
    )
    for name, count in by_phase.most_common():
        print(f"  {100 * count / samples:5.1f}%  {cpu_ms * count / samples:5.2f} ms  {name}")
    print("\nby the innermost frame in each group:")
    for name, count in by_group.most_common():
        print(f"  {100 * count / samples:5.1f}%  {name}")
    print(f"\ntop {top} by self samples:")
    for frame, count in self_time.most_common(top):
        print(f"  {100 * count / samples:5.1f}%  {frame[:150]}")
    print(f"\ntop {top} by total samples (the frame anywhere on the stack):")
    for frame, count in total_time.most_common(top):
        print(f"  {100 * count / samples:5.1f}%  {frame[:150]}")


def user_system_seconds(pid: int) -> tuple[float, float]:
    """A process's user and system CPU seconds (all its threads), from /proc/<pid>/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / ticks, int(fields[12]) / ticks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=1500)
    parser.add_argument("--kind", choices=("plain", "stream"), default="plain")
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--rate", type=int, default=500, help="py-spy samples per second")
    parser.add_argument("--top", type=int, default=40)
    parser.add_argument("--native", action="store_true", help="py-spy --native (C frames too)")
    parser.add_argument(
        "--all-threads",
        action="store_true",
        help="every thread py-spy sees as busy (its idle detection misses blocking reads here), not only the "
        "one holding the GIL",
    )
    parser.add_argument("--checkout", type=Path, default=REPO, help="the checkout whose proxy is profiled")
    parser.add_argument(
        "--perf",
        action="store_true",
        help="sample with Linux perf (on-CPU time only, kernel and C included; Python frames are opaque) instead",
    )
    parser.add_argument("--keep", type=Path, help="also copy py-spy's raw samples here")
    args = parser.parse_args()
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(py_spy).exists():
        raise SystemExit("no py-spy: `.venv/bin/pip install py-spy`")

    with bench_stack("profile") as stack:
        processes, dynamodb, folder = stack.processes, stack.dynamodb, stack.folder
        from llm_platform.domain import api_keys

        _, key = api_keys.create_credit_key(stack.caller, "profile", None, 1_000_000, 1_000_000_000)
        proxy_env = stack.proxy_environment()
        proxy = start_our_proxy(processes, "ours", args.checkout.resolve(), proxy_env, dynamodb.endpoint_url, key)
        body = BODY if args.kind == "plain" else STREAM_BODY
        load(proxy, CHAT, body, 300, concurrency=args.concurrency)  # warm: key cached, connections open, JVM
        raw = folder / "samples.txt"
        command = [py_spy, "record", "--pid", str(proxy.process.pid), "--rate", str(args.rate), "--format", "raw"]
        command += ["--output", str(raw), "--nonblocking", *(["--native"] if args.native else [])]
        command += [] if args.all_threads else ["--gil"]
        pid = proxy.process.pid
        before = user_system_seconds(pid)
        load(proxy, CHAT, body, args.requests, concurrency=args.concurrency, warmup=0)
        user, system = (after - start for after, start in zip(user_system_seconds(pid), before, strict=True))
        print(
            f"without py-spy: {1000 * (user + system) / args.requests:.2f} ms of CPU per request, "
            f"{1000 * user / args.requests:.2f} user + {1000 * system / args.requests:.2f} system"
        )
        if args.perf:
            perf = shutil.which("perf") or "/usr/bin/perf"
            perf_data = folder / "perf.data"
            spy = subprocess.Popen(
                [perf, "record", "-e", "cpu-clock", "-F", "2000", "-g", "-p", str(pid), "-o", str(perf_data)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            processes.started.append(spy)  # stopped with the stack should the load fail
            load(proxy, CHAT, body, args.requests, concurrency=args.concurrency, warmup=0)
            spy.send_signal(signal.SIGINT)
            spy.wait(timeout=120)
            for sort in ("dso", "dso,sym"):
                report = subprocess.run(
                    [perf, "report", "-i", str(perf_data), "--no-children", "--sort", sort, "--stdio", "-g", "none"],
                    capture_output=True,
                    text=True,
                )
                lines = [line for line in report.stdout.splitlines() if line.strip() and not line.startswith("#")]
                print(f"\nperf, by {sort}:")
                print("\n".join(lines[: args.top]))
            return
        spy = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        processes.started.append(spy)
        series = load(proxy, CHAT, body, args.requests, concurrency=args.concurrency, warmup=0)
        spy.send_signal(signal.SIGINT)
        spy.wait(timeout=60)
        print(
            f"{args.requests} {args.kind} requests, {args.concurrency} client(s): CPU per request "
            f"{series.cpu_ms_per_request:.2f} ms (with py-spy attached), failures {series.failures}"
        )
        if args.keep:
            shutil.copy(raw, args.keep)
        analyse(raw, args.top, 1000 * (user + system) / args.requests)


if __name__ == "__main__":
    main()
