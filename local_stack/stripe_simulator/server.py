"""The simulator served over HTTP: one Starlette app with the Stripe API (``api.py``) and the pages and test
controls (``pages.py``) over one ``StripeSimulator``, run by uvicorn in a thread."""

from __future__ import annotations

import secrets
from types import TracebackType

from starlette.applications import Starlette
from starlette.responses import RedirectResponse
from starlette.routing import Route

from local_stack.server_thread import ServerThread
from local_stack.stripe_simulator.api import StripeApi
from local_stack.stripe_simulator.pages import SimulatorPages
from local_stack.stripe_simulator.state import StripeSimulator


def build_app(simulator: StripeSimulator) -> Starlette:
    api, pages = StripeApi(simulator), SimulatorPages(simulator)
    routes = [
        Route("/v1/{path:path}", api.endpoint, methods=["GET", "POST", "DELETE"]),
        Route("/c/pay/{session_id}", pages.checkout_page, methods=["GET"]),
        Route("/c/pay/{session_id}", pages.checkout_pay, methods=["POST"]),
        Route("/done", pages.done_page, methods=["GET"]),
        Route("/cancelled", pages.cancelled_page, methods=["GET"]),
        Route("/", lambda request: RedirectResponse("/sim", status_code=303), methods=["GET"]),
        Route("/sim", pages.dashboard, methods=["GET"]),
        Route("/sim/events", pages.sim_events, methods=["GET"]),
        Route("/sim/events/{event_id}/resend", pages.sim_resend, methods=["POST"]),
        Route("/sim/drain", pages.sim_drain, methods=["POST"]),
        Route("/sim/sessions/{session_id}/pay", pages.sim_pay, methods=["POST"]),
        Route("/sim/sessions/{session_id}/{action}", pages.sim_chargeback, methods=["POST"]),
        Route("/sim/subscriptions/{subscription_id}/{action}", pages.sim_subscription, methods=["POST"]),
    ]
    return Starlette(routes=routes)


class StripeSimulatorServer:
    """A `StripeSimulator` served over HTTP on 127.0.0.1 (a free port unless given).

    `.url` is the Stripe API base (`base_addresses={"api": url}`), `.simulator` the state and controls.
    Keys are generated when not given (`.api_key`, `.webhook_secret`).
    """

    def __init__(
        self,
        api_key: str | None = None,
        webhook_secret: str | None = None,
        webhook_url: str | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        log_level: str = "warning",
    ) -> None:
        self.simulator = StripeSimulator(
            api_key or "sk_test_local_" + secrets.token_hex(12),
            webhook_secret or "whsec_" + secrets.token_hex(24),
            webhook_url,
        )
        self._server = ServerThread(build_app(self.simulator), host=host, port=port, log_level=log_level)
        self._server.thread.name = "stripe-simulator-http"
        self.simulator.base_url = self._server.url

    @property
    def url(self) -> str:
        return self._server.url

    @property
    def api_key(self) -> str:
        return self.simulator.api_key

    @property
    def webhook_secret(self) -> str:
        return self.simulator.webhook_secret

    def start(self) -> StripeSimulatorServer:
        try:
            self._server.start()
        except BaseException:
            self.simulator.close()
            raise
        return self

    def stop(self) -> None:
        self._server.stop()
        self.simulator.close()

    def __enter__(self) -> StripeSimulatorServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
