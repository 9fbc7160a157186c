"""An ASGI app served by uvicorn from a daemon thread: the local stack's servers (the gateway, the
outbox, the Stripe simulator, the built-in upstream) and the tests' own. A module of its own so that
the servers the stack starts import it without importing the stack."""

from __future__ import annotations

import socket
import threading
import time

import uvicorn
from starlette.types import ASGIApp


class ServerThread:
    """uvicorn serving an ASGI app from a daemon thread on a socket we bind first (port 0 = free port)."""

    def __init__(
        self,
        app: ASGIApp,
        host: str = "127.0.0.1",
        port: int = 0,
        log_level: str = "warning",
        listener: socket.socket | None = None,
    ) -> None:
        # `listener`: a socket bound earlier, when the URL had to be known before the app was built.
        self.socket = listener or socket.create_server((host, port))
        # Accepted connections inherit this. Without it, a response written as headers + body stalls
        # ~40 ms on keep-alive connections (Nagle meets delayed ACK); uvicorn's CLI sets it itself.
        self.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.host, self.port = host, int(self.socket.getsockname()[1])
        # proxy_headers off: sourceIp must be the peer address, as on API Gateway, not X-Forwarded-For.
        config = uvicorn.Config(
            app, host=host, port=self.port, log_level=log_level, lifespan="off", proxy_headers=False
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self.socket]}, name="local-stack-http", daemon=True
        )

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, timeout: float = 30.0) -> None:
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            # join() is the poll interval and notices a server thread that died during startup.
            self.thread.join(timeout=0.05)
            if not self.thread.is_alive():
                self.socket.close()
                raise RuntimeError("HTTP server exited during startup (see the log above)")
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError(f"HTTP server not started after {timeout}s")

    def stop(self, timeout: float = 10.0) -> None:
        self.server.should_exit = True
        if self.thread.is_alive():
            self.thread.join(timeout=timeout)
        self.socket.close()
