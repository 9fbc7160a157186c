"""The proxy's HTTP/1.1 client for the provider call (proxy/http1.py), against real sockets: servers
that answer exactly the bytes each case needs (Content-Length, chunked with trailers, close-delimited,
gzip, stalls, drops, TLS). Against the built-in upstream under uvicorn: tests/integration/test_proxy*.py."""

from __future__ import annotations

import asyncio
import datetime
import gzip
import ipaddress
import ssl
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from llm_platform.proxy import http1

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def read_request(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    length = next(
        int(line.split(b":", 1)[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")
    )
    return head, await reader.readexactly(length)


class Server:
    """A TCP (or TLS) server running ``answer`` for each request on each connection it accepts."""

    def __init__(self, answer: Callable[[bytes, bytes], bytes | None], tls: ssl.SSLContext | None = None) -> None:
        self.answer, self.tls = answer, tls
        self.connections = 0
        self.close_after_answer = False
        self.requests: list[tuple[bytes, bytes]] = []

    async def __aenter__(self) -> Server:
        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self.connections += 1
            try:
                while True:
                    try:
                        request = await read_request(reader)
                    except (asyncio.IncompleteReadError, ConnectionError):
                        return
                    self.requests.append(request)
                    reply = self.answer(*request)
                    if reply is None:  # hang up without an answer
                        return
                    writer.write(reply)
                    await writer.drain()
                    if self.close_after_answer or b"connection: close" in reply.lower().split(b"\r\n\r\n", 1)[0]:
                        return
            finally:
                writer.close()

        self.server = await asyncio.start_server(serve, "127.0.0.1", 0, ssl=self.tls)
        port = self.server.sockets[0].getsockname()[1]
        self.url = f"{'https' if self.tls else 'http'}://127.0.0.1:{port}/v1/chat/completions"
        return self

    async def __aexit__(self, *_: object) -> None:
        self.server.close()


def sized(body: bytes, status: str = "200 OK", extra: str = "") -> bytes:
    return (
        f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\n{extra}Content-Length: {len(body)}\r\n\r\n".encode()
        + body
    )


def chunked(*pieces: bytes) -> bytes:
    out = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
    for piece in pieces:
        out += f"{len(piece):x};ext=1\r\n".encode() + piece + b"\r\n"
    return out + b"0\r\nX-Trailer: yes\r\n\r\n"


async def post(client: http1.Client, url: str, body: bytes = b'{"a":1}', timeout: float = 2.0) -> http1.Response:
    return await client.post(url, body, {"Content-Type": "application/json"}, timeout=timeout, connect_timeout=1.0)


def test_a_sized_body_is_read_and_the_connection_reused() -> None:
    async def scenario() -> None:
        async with Server(lambda head, body: sized(b'{"echo":' + body + b"}")) as server:
            client = http1.Client()
            for n in range(3):
                response = await post(client, server.url, f'{{"n":{n}}}'.encode())
                # Then status, headers (any case) and the body come through
                assert response.status_code == 200 and response.headers.get("content-type") == "application/json"
                assert (await response.aread()) == f'{{"echo":{{"n":{n}}}}}'.encode()
                assert response.json() == {"echo": {"n": n}}
                await response.aclose()
            # And the three requests went over one kept-alive connection, each with Host and Content-Length
            assert server.connections == 1 and len(server.requests) == 3
            head = server.requests[0][0].decode()
            assert head.startswith("POST /v1/chat/completions HTTP/1.1\r\n")
            assert f"Host: 127.0.0.1:{server.url.split(':')[2].split('/')[0]}\r\n" in head
            assert "Content-Length: 7\r\n" in head
            await client.aclose()

    asyncio.run(scenario())


def test_a_chunked_event_stream_comes_line_by_line_whatever_the_chunk_boundaries() -> None:
    # Given SSE lines split across chunks anywhere, \r\n endings included, then trailers
    stream = chunked(b'data: {"x":1}\n', b"\ndata: {", b'"x":2}\r', b"\n\r\ndata: [DO", b"NE]\n\n")

    async def scenario() -> None:
        async with Server(lambda head, body: stream) as server:
            client = http1.Client()
            for _ in range(2):
                response = await post(client, server.url)
                lines = [line async for line in response.aiter_lines()]
                await response.aclose()
                # Then the lines are exactly the stream's, and the connection is reused after the last chunk
                assert lines == ['data: {"x":1}', "", 'data: {"x":2}', "", "data: [DONE]", ""]
            assert server.connections == 1
            await client.aclose()

    asyncio.run(scenario())


def test_a_body_that_ends_with_the_connection_and_a_gzipped_one() -> None:
    async def scenario() -> None:
        answers = iter(
            [
                b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nall of it until the end",
                sized(gzip.compress(b'{"zipped":true}'), extra="Content-Encoding: gzip\r\n"),
                sized(b"not gzip at all", extra="Content-Encoding: gzip\r\n"),
            ]
        )
        async with Server(lambda head, body: next(answers)) as server:
            client = http1.Client()
            response = await post(client, server.url)
            assert (await response.aread()) == b"all of it until the end"
            await response.aclose()
            response = await post(client, server.url)
            await response.aread()
            assert response.json() == {"zipped": True}
            await response.aclose()
            response = await post(client, server.url)
            with pytest.raises(http1.RequestError):
                await response.aread()
            await response.aclose()
            assert server.connections == 2  # the close-delimited answer took its connection with it
            await client.aclose()

    asyncio.run(scenario())


def test_stalls_drops_and_refusals_are_request_errors() -> None:
    async def scenario() -> None:
        client = http1.Client()
        # A server that never answers: a ReadTimeout after the timeout
        async with Server(lambda head, body: b"") as server:  # accepts, reads, answers nothing
            started = asyncio.get_running_loop().time()
            with pytest.raises(http1.ReadTimeout):
                await post(client, server.url, timeout=0.2)
            assert 0.2 <= asyncio.get_running_loop().time() - started < 1.5
        # A body cut short: RemoteProtocolError, once what came was read
        async with Server(lambda head, body: sized(b"0123456789")[:-4]) as server:
            response = await post(client, server.url, timeout=0.3)
            with pytest.raises(http1.RequestError):
                await response.aread()
            await response.aclose()
        # A server that hangs up without answering
        async with Server(lambda head, body: None) as server:
            with pytest.raises(http1.RemoteProtocolError):
                await post(client, server.url)
        # Nobody listening
        async with Server(lambda head, body: None) as server:
            url = server.url
        with pytest.raises(http1.ConnectError):
            await post(client, url)
        await client.aclose()

    asyncio.run(scenario())


def test_an_idle_connection_the_server_closed_is_not_reused() -> None:
    async def scenario() -> None:
        # Given a server that closes each connection after its answer, without saying so
        async with Server(lambda head, body: sized(b"{}")) as server:
            server.close_after_answer = True
            client = http1.Client()
            response = await post(client, server.url)
            await response.aread()
            await response.aclose()
            (idle,) = client._idle[(False, "127.0.0.1", server.server.sockets[0].getsockname()[1])]
            assert await idle.reader.read(1) == b""  # the server's FIN has arrived
            # When the next request goes out: it opens a new connection instead of failing on the old one
            response = await post(client, server.url)
            assert (await response.aread()) == b"{}"
            assert server.connections == 2
            await client.aclose()

    asyncio.run(scenario())


def self_signed(folder: Path) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


def test_tls_is_verified(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cert, key = self_signed(tmp_path)
    server_tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_tls.load_cert_chain(cert, key)

    async def scenario() -> None:
        async with Server(lambda head, body: sized(b'{"secure":true}'), tls=server_tls) as server:
            # Given the default trust store: a self-signed certificate is refused
            with pytest.raises(http1.ConnectError):
                await post(http1.Client(), server.url)
            # Given a trust store holding it: the request goes through, over TLS, and is kept alive
            monkeypatch.setattr(http1, "_tls", lambda: ssl.create_default_context(cafile=str(cert)))
            client = http1.Client()
            for _ in range(2):
                response = await post(client, server.url)
                await response.aread()
                assert response.json() == {"secure": True}
                await response.aclose()
            assert server.connections == 1  # one kept-alive connection (the refused handshake never was one)
            await client.aclose()

    asyncio.run(scenario())


@pytest.mark.parametrize(
    ("buffer", "spans"),
    [
        (b"5\r\nhello\r\n3;ext=1\r\nabc\r\n", [(3, 8), (19, 22)]),  # two whole chunks, an extension
        (b"5\r\nhello\r\n3\r\nab", [(3, 8)]),  # the second chunk's data not all in yet
        (b"5\r\nhello\r\n3\r\nabc", [(3, 8)]),  # nor its closing CRLF
        (b"5\r\nhello\r\n0\r\n\r\n", [(3, 8)]),  # the last chunk is left to the chunk-by-chunk reading
        (b"5\r\nhelloXY3\r\nabc\r\n", []),  # no CRLF after the data: left to it too (it raises)
        (b"zz\r\nhello\r\n", []),  # a size that is not hex: the same
        (b"5\r", []),
        (b"", []),
    ],
)
def test_the_chunks_already_buffered_are_found_whole(buffer: bytes, spans: list[tuple[int, int]]) -> None:
    # Given what a chunked body's reader holds so far
    # When the complete chunks at its start are looked for
    # Then exactly those whose size line, data and CRLF all arrived are taken, nothing unusual
    assert http1._complete_chunks(bytearray(buffer)) == spans


def test_a_malformed_chunk_after_whole_ones_is_a_protocol_error() -> None:
    # Given a chunked answer whose third chunk's size is not hex, all of it sent at once
    whole = chunked(b"data: {}\n\n", b"data: {}\n\n").removesuffix(b"0\r\nX-Trailer: yes\r\n\r\n")
    reply = whole + b"zz\r\nx\r\n0\r\n\r\n"

    async def scenario() -> None:
        async with Server(lambda head, body: reply) as server:
            client = http1.Client()
            response = await post(client, server.url)
            # When it is read line by line
            lines = []
            with pytest.raises(http1.RemoteProtocolError):
                async for line in response.aiter_lines():
                    lines.append(line)
            # Then the whole chunks came first, and the malformed one failed as before
            assert lines == ["data: {}", "", "data: {}", ""]
            await response.aclose()
            await client.aclose()

    asyncio.run(scenario())
