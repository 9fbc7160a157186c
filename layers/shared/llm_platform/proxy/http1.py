"""A small asyncio HTTP/1.1 client for the provider call, the one request the proxy makes per chat
completion: httpx spent 2-3 ms of CPU per request in its layers (request and response models,
anyio, httpcore's pool and h11's state machine), this spends a fraction of that.

What it does, and all it needs to: POST a body; read the status and headers, then the body as it comes
(Content-Length, chunked, or until the connection closes; gzip/deflate should a provider compress
without being asked); a connect timeout and a per-read timeout (a provider that stalls longer than that
between two reads fails, as with httpx); TLS with the default CA store and hostname check; and kept-alive
connections reused per host once a response was read to its end."""

from __future__ import annotations

import asyncio
import json
import ssl
import zlib
from collections.abc import AsyncIterator
from functools import cache
from typing import Any
from urllib.parse import urlsplit

_MAX_HEAD_BYTES = 64 * 1024
_READ_SIZE = 64 * 1024
_IDLE_PER_HOST = 50


class HTTPError(Exception):
    """Anything that went wrong talking to the provider."""


class RequestError(HTTPError):
    """Connect errors, timeouts, a connection dropped, a malformed or undecodable response."""


class ConnectError(RequestError):
    pass


class ReadTimeout(RequestError):
    pass


class RemoteProtocolError(RequestError):
    pass


@cache
def _tls() -> ssl.SSLContext:
    return ssl.create_default_context()


_Key = tuple[bool, str, int]


class _Connection:
    __slots__ = ("reader", "writer")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    def usable(self) -> bool:
        """Still open: not closed by the server while it sat idle (it would have no answer for us)."""
        return not self.writer.is_closing() and not self.reader.at_eof() and not _buffered(self.reader)

    def close(self) -> None:
        self.writer.close()


class Response:
    """A response whose body is not read yet: read it (``aread``) or stream it (``aiter_lines``), then
    ``aclose`` it, which gives a fully read connection back to the pool."""

    def __init__(
        self, client: Client, key: _Key, connection: _Connection, status: int, headers: dict[str, str], timeout: float
    ) -> None:
        self.status_code, self.headers = status, headers
        self._client, self._key, self._connection, self._timeout = client, key, connection, timeout
        self._content: bytes | None = None
        self._complete = False  # the body was read to its end: the connection can be reused
        self._closed = False
        encoding = headers.get("content-encoding", "").strip().lower()
        self._decoder = (
            zlib.decompressobj(zlib.MAX_WBITS | 16)
            if encoding == "gzip"
            else zlib.decompressobj()
            if encoding == "deflate"
            else None
        )
        if encoding not in ("", "identity", "gzip", "deflate"):
            raise RemoteProtocolError(f"unsupported content-encoding {encoding!r}")

    @property
    def content(self) -> bytes:
        if self._content is None:
            raise RuntimeError("the body was not read")
        return self._content

    def json(self) -> Any:
        return json.loads(self.content)

    async def aread(self) -> bytes:
        if self._content is None:
            self._content = b"".join([chunk async for chunk in self.aiter_bytes()])
        return self._content

    async def aiter_bytes(self) -> AsyncIterator[bytes]:
        async for chunk in self._raw():
            if self._decoder is not None:
                try:
                    chunk = self._decoder.decompress(chunk)
                except zlib.error as error:
                    raise RemoteProtocolError(f"undecodable body: {error}") from error
            if chunk:
                yield chunk

    async def aiter_lines(self) -> AsyncIterator[str]:
        """The body's lines as text, without their ending (``\\n``, ``\\r\\n`` or ``\\r``), as httpx splits them."""
        pending = ""
        async for chunk in self.aiter_bytes():
            text = pending + chunk.decode("utf-8", errors="replace") if pending else chunk.decode("utf-8", "replace")
            lines = text.splitlines(keepends=True)
            # The last piece may be a line still in progress (or a \r whose \n is in the next chunk).
            pending = lines.pop() if lines and not lines[-1].endswith("\n") else ""
            for line in lines:
                yield line.rstrip("\r\n")
        if pending:
            yield pending.rstrip("\r\n")

    async def _read(self, size: int) -> bytes:
        reader = self._connection.reader
        if _buffered(reader):  # what arrived already: no wait, so no timer (one per read was a tenth of the CPU)
            return await reader.read(size)
        try:
            async with asyncio.timeout(self._timeout):
                data = await reader.read(size)
        except TimeoutError as error:
            raise ReadTimeout("the provider sent nothing within its timeout") from error
        except OSError as error:
            raise RemoteProtocolError(f"connection lost: {error}") from error
        return data

    async def _exactly(self, size: int) -> AsyncIterator[bytes]:
        while size > 0:
            data = await self._read(min(size, _READ_SIZE))
            if not data:
                raise RemoteProtocolError("the provider closed the connection in the middle of the body")
            size -= len(data)
            yield data

    async def _line(self) -> bytes:
        reader = self._connection.reader
        try:
            if b"\r\n" in _buffered(reader):  # the whole line arrived already: no wait, so no timer
                return await reader.readuntil(b"\r\n")
            async with asyncio.timeout(self._timeout):
                return await reader.readuntil(b"\r\n")
        except TimeoutError as error:
            raise ReadTimeout("the provider sent nothing within its timeout") from error
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, OSError) as error:
            raise RemoteProtocolError("the provider closed the connection in the middle of the body") from error

    async def _raw(self) -> AsyncIterator[bytes]:
        if self._closed or self._complete:
            return
        headers = self.headers
        if "chunked" in headers.get("transfer-encoding", "").lower():
            while True:
                # Every chunk the buffer holds already, taken in one read and yielded as one piece: a
                # provider's stream arrives a few chunks at a time, and each await through the layers
                # above (lines, events) costs more than the bytes it carries.
                whole = _complete_chunks(_buffered(self._connection.reader))
                if whole:
                    data = await self._connection.reader.readexactly(whole[-1][1] + 2)  # buffered: no wait
                    yield b"".join(data[start:end] for start, end in whole)
                    continue
                size_line = (await self._line()).split(b";", 1)[0].strip()
                try:
                    size = int(size_line, 16)
                except ValueError as error:
                    raise RemoteProtocolError("malformed chunked encoding") from error
                if size == 0:
                    while (await self._line()) != b"\r\n":  # trailers, then the blank line
                        pass
                    break
                async for data in self._exactly(size):
                    yield data
                if await self._line() != b"\r\n":
                    raise RemoteProtocolError("malformed chunked encoding")
            self._complete = True
        elif "content-length" in headers:
            try:
                length = int(headers["content-length"])
            except ValueError as error:
                raise RemoteProtocolError("malformed content-length") from error
            async for data in self._exactly(length):
                yield data
            self._complete = True
        elif self.status_code in (204, 304):
            self._complete = True
        else:  # the body ends with the connection
            while data := await self._read(_READ_SIZE):
                yield data
            self._closed = True
            self._connection.close()

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._complete and "close" not in self.headers.get("connection", "").lower():
            self._client._release(self._key, self._connection)
        else:
            self._connection.close()


class Client:
    """Kept-alive connections per (scheme, host, port); one request at a time on each."""

    def __init__(self) -> None:
        self._idle: dict[_Key, list[_Connection]] = {}

    async def post(
        self, url: str, body: bytes, headers: dict[str, str], *, timeout: float, connect_timeout: float
    ) -> Response:
        """Send the request and read the response's status and headers; the body is left to the caller."""
        parts = urlsplit(url)
        secure = parts.scheme == "https"
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConnectError(f"not an http(s) URL: {url}")
        port = parts.port or (443 if secure else 80)
        key = (secure, parts.hostname, port)
        name = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname  # an IPv6 literal
        host = name if port == (443 if secure else 80) else f"{name}:{port}"
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        head = [f"POST {target} HTTP/1.1", f"Host: {host}", f"Content-Length: {len(body)}"]
        head += [f"{name}: {value}" for name, value in headers.items()]
        request = ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body
        connection = await self._connect(key, timeout, connect_timeout)
        try:
            async with asyncio.timeout(timeout):
                connection.writer.write(request)
                await connection.writer.drain()
                status, response_headers = await self._read_head(connection.reader)
            return Response(self, key, connection, status, response_headers, timeout)
        except BaseException as error:
            connection.close()
            if isinstance(error, TimeoutError):
                raise ReadTimeout("the provider did not answer within its timeout") from error
            if isinstance(error, OSError | asyncio.IncompleteReadError | asyncio.LimitOverrunError | ValueError):
                raise RemoteProtocolError(f"no valid response: {error!r}") from error
            raise

    async def _connect(self, key: _Key, timeout: float, connect_timeout: float) -> _Connection:
        idle = self._idle.get(key)
        while idle:
            connection = idle.pop()
            if connection.usable():
                return connection
            connection.close()
        secure, hostname, port = key
        try:
            async with asyncio.timeout(connect_timeout):
                reader, writer = await asyncio.open_connection(
                    hostname, port, ssl=_tls() if secure else None, limit=_MAX_HEAD_BYTES
                )
        except TimeoutError as error:
            raise ConnectError(f"connect to {hostname}:{port} timed out") from error
        except OSError as error:  # refused, unreachable, TLS verification failed
            raise ConnectError(f"connect to {hostname}:{port} failed: {error}") from error
        return _Connection(reader, writer)

    @staticmethod
    async def _read_head(reader: asyncio.StreamReader) -> tuple[int, dict[str, str]]:
        raw = await reader.readuntil(b"\r\n\r\n")
        lines = raw.decode("latin-1").split("\r\n")
        version, _, rest = lines[0].partition(" ")
        if not version.startswith("HTTP/1."):
            raise ValueError(f"not an HTTP/1.x response: {lines[0][:80]!r}")
        status = int(rest[:3])
        headers: dict[str, str] = {}
        for line in lines[1:]:
            if not line:
                continue
            name, sep, value = line.partition(":")
            if not sep:
                raise ValueError(f"malformed header line {line[:80]!r}")
            name = name.strip().lower()
            value = value.strip()
            # Repeated headers joined, as HTTP allows for every header the proxy reads.
            headers[name] = f"{headers[name]}, {value}" if name in headers else value
        if 100 <= status < 200:  # an interim answer (100 Continue): the real one follows
            return await Client._read_head(reader)
        return status, headers

    def _release(self, key: _Key, connection: _Connection) -> None:
        idle = self._idle.setdefault(key, [])
        if len(idle) < _IDLE_PER_HOST and connection.usable():
            idle.append(connection)
        else:
            connection.close()

    async def aclose(self) -> None:
        for idle in self._idle.values():
            for connection in idle:
                connection.close()
        self._idle.clear()


def _complete_chunks(buffer: bytearray) -> list[tuple[int, int]]:
    """Where the data of each complete chunk at the start of ``buffer`` lies (start, end): those whose size
    line, data and closing CRLF have all arrived. Stops at the last chunk (size 0), at anything unusual
    and at an incomplete chunk: the chunk-by-chunk reading handles those, with its checks and errors."""
    spans: list[tuple[int, int]] = []
    position = 0
    while (line_end := buffer.find(b"\r\n", position)) >= 0:
        try:
            size = int(bytes(buffer[position:line_end]).split(b";", 1)[0].strip(), 16)
        except ValueError:
            break
        start = line_end + 2
        end = start + size
        if size <= 0 or len(buffer) < end + 2 or buffer[end : end + 2] != b"\r\n":
            break
        spans.append((start, end))
        position = end + 2
    return spans


def _buffered(reader: asyncio.StreamReader) -> bytearray:
    """What the reader holds already. asyncio has no public accessor; ``_buffer`` has been the same
    bytearray since Python 3.4, and tests/unit/test_http1.py reads through it on every run."""
    return reader._buffer  # type: ignore[attr-defined]
