"""The benchmark's load generator, run in a process of its own: `python bench/loadgen.py '<json config>'`.

It shares no interpreter with what it measures (the upstream, the proxies, DynamoDB Local) and keeps its
own CPU per request small: a bare HTTP/1.1 client on asyncio streams, one keep-alive connection per
client, no HTTP library. It prints one JSON object: per request the latency and, for streams, the time to
the first body byte, all in milliseconds; the wall time of the measured requests; failures.

Config: {"url": "http://127.0.0.1:PORT", "path": "/v1/chat/completions", "headers": {...}, "body": {...},
"requests": 300, "concurrency": 1, "warmup": 10, "count_url": optional URL whose JSON {"calls": n} is read
before each request and at its first body byte (DynamoDB calls done before the client's first byte)}.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from urllib.parse import urlsplit


class Connection:
    """One keep-alive HTTP/1.1 connection; reopened when the server closes it."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(
        self, method: str, path: str, headers: dict[str, str], body: bytes, on_first_byte=None
    ) -> tuple[int, dict[str, str], float | None, bytes]:
        """(status, headers, monotonic time of the first body byte, body)."""
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        head = [f"{method} {path} HTTP/1.1", f"Host: {self.host}:{self.port}", f"Content-Length: {len(body)}"]
        head += [f"{name}: {value}" for name, value in headers.items()]
        self.writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + body)
        raw = await self.reader.readuntil(b"\r\n\r\n")
        lines = raw.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        response_headers = {}
        for line in lines[1:]:
            if line:
                name, _, value = line.partition(":")
                response_headers[name.strip().lower()] = value.strip()
        first_byte, parts = None, []
        if response_headers.get("transfer-encoding", "").lower() == "chunked":
            while True:
                size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16)
                if size == 0:
                    while await self.reader.readuntil(b"\r\n") != b"\r\n":  # trailers, then the blank line
                        pass
                    break
                parts.append((await self.reader.readexactly(size + 2))[:-2])
                if first_byte is None:
                    first_byte = time.perf_counter()
                    if on_first_byte is not None:
                        await on_first_byte()
        else:
            # A whole body: its first byte comes with the headers (the server answers once it has it all).
            first_byte = time.perf_counter()
            if on_first_byte is not None:
                await on_first_byte()
            if "content-length" in response_headers:
                length = int(response_headers["content-length"])
                parts.append(await self.reader.readexactly(length) if length else b"")
            else:
                parts.append(await self.reader.read())
                await self.close()
        if response_headers.get("connection", "").lower() == "close":
            await self.close()
        return status, response_headers, first_byte, b"".join(parts)

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.reader = self.writer = None


async def read_calls(connection: Connection, path: str) -> int:
    _, _, _, body = await connection.request("GET", path, {}, b"")
    return int(json.loads(body)["calls"])


async def run(config: dict) -> dict:
    target = urlsplit(config["url"])
    body = json.dumps(config["body"]).encode()
    headers = {"Content-Type": "application/json", **config.get("headers", {})}
    total, concurrency = int(config["requests"]), int(config.get("concurrency", 1))
    counter = None
    if config.get("count_url"):
        count = urlsplit(config["count_url"])
        counter = (Connection(count.hostname, count.port), count.path)
    latencies: list[float] = []
    first_bytes: list[float] = []
    statuses: dict[str, int] = {}
    request_ids: list[str] = []
    calls_before_first_byte = 0
    remaining = total

    async def one(connection: Connection, measured: bool) -> None:
        nonlocal calls_before_first_byte
        calls_at_start = await read_calls(*counter) if counter and measured else 0

        async def at_first_byte() -> None:
            nonlocal calls_before_first_byte
            if counter and measured:
                calls_before_first_byte += await read_calls(*counter) - calls_at_start

        start = time.perf_counter()
        status, response_headers, first_byte, _ = await connection.request(
            "POST", config["path"], headers, body, at_first_byte
        )
        end = time.perf_counter()
        if not measured:
            return
        statuses[str(status)] = statuses.get(str(status), 0) + 1
        latencies.append((end - start) * 1000)
        if first_byte is not None:
            first_bytes.append((first_byte - start) * 1000)
        if "x-request-id" in response_headers:
            request_ids.append(response_headers["x-request-id"])

    async def client(connection: Connection) -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            await one(connection, measured=True)

    connections = [Connection(target.hostname, target.port) for _ in range(concurrency)]
    # Warm every connection (opened, and the server's per-connection work done) before timing anything.
    for _ in range(int(config.get("warmup", 5))):
        await asyncio.gather(*(one(connection, measured=False) for connection in connections))
    started = time.perf_counter()
    await asyncio.gather(*(client(connection) for connection in connections))
    elapsed = time.perf_counter() - started
    for connection in connections:
        await connection.close()
    if counter:
        await counter[0].close()
    failures = sum(n for status, n in statuses.items() if status != "200")
    return {
        "latencies_ms": latencies,
        "first_byte_ms": first_bytes,
        "elapsed_s": elapsed,
        "statuses": statuses,
        "failures": failures,
        "request_ids": request_ids if config.get("request_ids") else [],
        "calls_before_first_byte": calls_before_first_byte,
    }


def main() -> None:
    config = json.loads(sys.argv[1])
    print(json.dumps(asyncio.run(run(config))))


if __name__ == "__main__":
    main()
