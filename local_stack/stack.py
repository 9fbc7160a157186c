"""The whole local stack: DynamoDB Local + tables + the gateway served over HTTP by uvicorn in a thread."""

from __future__ import annotations

import os
import secrets
import socket
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from starlette.types import ASGIApp

from local_stack.dynamodb_local import LOCAL_CREDENTIALS, REGION, REPO_ROOT, DynamoDBLocal, create_tables
from local_stack.gateway import build_gateway
from local_stack.server_thread import ServerThread
from local_stack.template import function_environment, function_ids, load_template


def stack_environment(template: dict[str, Any], table_names: dict[str, str], dynamodb_url: str) -> dict[str, str]:
    """Environment for the in-process functions: the template's variables plus local endpoints."""
    env: dict[str, str] = {}
    # All functions share one process, so take the union (Globals are common to all of them anyway).
    for function_id in function_ids(template):
        env.update(function_environment(template, function_id, table_names))
    # A variable the template leaves empty is an optional setting (e.g. MODEL_CATALOG_FILE): a value the
    # developer exported wins, so `MODEL_CATALOG_FILE=my.json make dev` works without editing the template.
    env = {name: value for name, value in env.items() if value or not os.environ.get(name)}
    env.update(
        DYNAMODB_ENDPOINT_URL=dynamodb_url,
        AWS_DEFAULT_REGION=REGION,
        AWS_REGION=REGION,
        AWS_ACCESS_KEY_ID=LOCAL_CREDENTIALS["aws_access_key_id"],
        AWS_SECRET_ACCESS_KEY=LOCAL_CREDENTIALS["aws_secret_access_key"],
        POWERTOOLS_TRACE_DISABLED="true",
        POWERTOOLS_METRICS_DISABLED="true",
        POWERTOOLS_DEV="false",
    )
    return env


DEMO_CREDIT_MICROS = 25_000_000  # $25
DEMO_EMAIL = "demo@example.com"  # signs in to the demo account (the code arrives in the outbox)


@dataclass(frozen=True)
class StackInfo:
    api_url: str
    dynamodb_url: str
    table_names: dict[str, str]
    demo_account_id: str | None = None
    demo_management_key: str | None = None
    upstream_url: str | None = None  # the built-in model server, when no real catalog is configured
    chain: Any = None  # local_stack.chain.ChainInfo: the local EVM with test USDC, when started
    stripe_url: str | None = None  # the Stripe simulator's API base (its dashboard at /sim), when started
    stripe: Any = None  # local_stack.stripe_simulator.StripeSimulator: its state and test controls
    mail_url: str | None = None  # the outbox: GET {mail_url}/messages lists the mail sent, newest first
    demo_email: str | None = None  # signs in to the demo account
    outbox: Any = None  # local_stack.mail_outbox.Outbox: the messages, for tests in the same process


class LocalStack:
    """start() -> StackInfo, stop(); or use as a context manager.

    Pass `dynamodb` to reuse a running DynamoDBLocal (it is then left running on stop()).
    The process environment is changed while the stack runs (handlers read it) and restored on stop().
    """

    def __init__(
        self,
        template_path: str | Path = REPO_ROOT / "template.yaml",
        port: int = 0,
        host: str = "127.0.0.1",
        dynamodb: DynamoDBLocal | None = None,
        create_demo_account: bool = True,
        asgi_mounts: dict[str, ASGIApp] | None = None,
        log_dir: Path | None = None,
        log_level: str = "warning",
        builtin_upstream: bool = True,
        local_chain: bool = True,
        usdc_confirmations: int = 1,
        schedules: bool = False,
        stripe_simulator: bool = True,
        rate_limit_scale: float | None = None,
    ) -> None:
        self.template_path = Path(template_path)
        self.port, self.host = port, host
        self._dynamodb, self._owns_dynamodb = dynamodb, dynamodb is None
        self.create_demo_account = create_demo_account
        self.asgi_mounts = asgi_mounts
        self.log_dir = log_dir
        self.log_level = log_level
        self.builtin_upstream = builtin_upstream
        self.local_chain, self.usdc_confirmations = local_chain, usdc_confirmations
        self._chain: Any = None
        self.schedules = schedules
        self._scheduler: Any = None
        self._upstream: Any = None
        self.stripe_simulator = stripe_simulator
        self.rate_limit_scale = rate_limit_scale  # None: env LOCAL_RATE_LIMIT_SCALE, else the template's numbers
        self._stripe: Any = None
        self._outbox_server: ServerThread | None = None
        self._server: ServerThread | None = None
        self._listener: socket.socket | None = None
        self._saved_env: dict[str, str | None] = {}
        self.info: StackInfo | None = None

    def start(self) -> StackInfo:
        try:
            return self._start()
        except BaseException:
            self.stop()
            raise

    def _start(self) -> StackInfo:
        template = load_template(self.template_path)
        if self._dynamodb is None:
            log_path = self.log_dir / "dynamodb-local.log" if self.log_dir else None
            self._dynamodb = DynamoDBLocal(log_path=log_path)
        self._dynamodb.start()
        dynamodb_url = self._dynamodb.endpoint_url
        table_names = create_tables(dynamodb_url, template)

        env = stack_environment(template, table_names, dynamodb_url)
        # The gateway's port is bound now: Stripe Checkout must send customers back to the dashboard it serves.
        listener = socket.create_server((self.host, self.port))
        self._listener = listener
        gateway_url = f"http://{self.host}:{listener.getsockname()[1]}"
        upstream_url = None
        if self.builtin_upstream and not (env.get("MODEL_CATALOG_FILE") or os.environ.get("MODEL_CATALOG_FILE")):
            upstream_url, env["MODEL_CATALOG_FILE"] = self._start_builtin_upstream()
        chain_info = None
        if self.local_chain:
            chain_info = self._start_chain()
            env.update(
                USDC_CHAIN_ID=str(chain_info.chain_id),
                USDC_CONTRACT_ADDRESS=chain_info.usdc_address,
                USDC_DEPOSIT_ADDRESS=chain_info.deposit_address,
                USDC_CONFIRMATIONS=str(self.usdc_confirmations),
                # As on AWS the RPC URL is a secret reference; locally it points at this variable.
                USDC_RPC_URL_SECRET="env:USDC_RPC_URL",
                USDC_RPC_URL=chain_info.rpc_url,
            )
        if self.stripe_simulator:
            env.update(self._start_stripe_simulator(gateway_url))
        outbox = self._start_outbox()
        env.update(
            # Mail goes to the outbox instead of SES; the session cookie cannot be Secure over plain http.
            MAIL_OUTBOX_URL=self._outbox_server.url,
            SESSION_COOKIE_SECURE="false",
        )
        self._saved_env = {name: os.environ.get(name) for name in env}
        app = build_gateway(
            self.template_path, env, asgi_mounts=self.asgi_mounts, rate_limit_scale=self.rate_limit_scale
        )

        account_id = management_key = demo_email = None
        if self.create_demo_account:
            # Imported only now: the shared code reads its configuration from the environment set above.
            from llm_platform.domain.accounts import create_account, grant_credit

            # DEMO_EMAIL signs in to it, so the dashboard can be tried at once (the code is in the outbox).
            account = create_account(name="demo", email=DEMO_EMAIL)
            account_id, management_key, demo_email = account.account_id, account.management_key, DEMO_EMAIL
            # Enough to try credit keys and /v1 at once; an operator grant, so it is in the ledger too.
            grant_credit(account_id, DEMO_CREDIT_MICROS, "local demo credit")

        self._server = ServerThread(app, host=self.host, log_level=self.log_level, listener=listener)
        self._listener = None  # the server owns it now
        self._server.start()
        if self._stripe is not None:
            # The gateway's port is known only now: Stripe's webhooks go to the template's webhook route.
            self._stripe.simulator.webhook_url = self._server.url + "/api/billing/webhook"
        if self.schedules:
            # The scheduled functions (subscription expiry) on their template rate, or every
            # LOCAL_SCHEDULE_SECONDS to watch renewals and expiries happen quickly.
            from local_stack.scheduler import Scheduler

            every = float(os.environ["LOCAL_SCHEDULE_SECONDS"]) if os.environ.get("LOCAL_SCHEDULE_SECONDS") else None
            self._scheduler = Scheduler(template, self.template_path.resolve().parent, every).start()
        self.info = StackInfo(
            api_url=self._server.url,
            dynamodb_url=dynamodb_url,
            table_names=table_names,
            demo_account_id=account_id,
            demo_management_key=management_key,
            upstream_url=upstream_url,
            chain=chain_info,
            stripe_url=self._stripe.url if self._stripe else None,
            stripe=self._stripe.simulator if self._stripe else None,
            mail_url=self._outbox_server.url,
            demo_email=demo_email,
            outbox=outbox,
        )
        return self.info

    def _start_outbox(self) -> Any:
        """The outbox that keeps every message the functions send (instead of Amazon SES)."""
        from local_stack.mail_outbox import Outbox, outbox_app

        outbox = Outbox()
        self._outbox_server = ServerThread(outbox_app(outbox), host=self.host, log_level=self.log_level)
        self._outbox_server.start()
        return outbox

    def _start_stripe_simulator(self, gateway_url: str) -> dict[str, str]:
        """The Stripe simulator, and the functions' Stripe settings pointing at it. As on AWS the keys are
        secret references; locally they point at environment variables. Checkout returns to the dashboard
        (the template's CheckoutSuccessUrl/CheckoutCancelUrl on AWS), which reads ?checkout= on its billing page."""
        from local_stack.stripe_simulator import StripeSimulatorServer

        api_key = "sk_test_local_" + secrets.token_hex(12)
        webhook_secret = "whsec_" + secrets.token_hex(24)
        self._stripe = StripeSimulatorServer(api_key, webhook_secret, host=self.host, log_level=self.log_level).start()
        url = self._stripe.url
        return {
            "STRIPE_API_BASE": url,
            "STRIPE_SECRET_KEY_SECRET": "env:LOCAL_STRIPE_SECRET_KEY",
            "LOCAL_STRIPE_SECRET_KEY": api_key,
            "STRIPE_WEBHOOK_SECRET_SECRET": "env:LOCAL_STRIPE_WEBHOOK_SECRET",
            "LOCAL_STRIPE_WEBHOOK_SECRET": webhook_secret,
            "CHECKOUT_SUCCESS_URL": gateway_url + "/?checkout=success&session_id={CHECKOUT_SESSION_ID}#/billing",
            "CHECKOUT_CANCEL_URL": gateway_url + "/?checkout=cancelled#/billing",
        }

    def _start_chain(self) -> Any:
        """A real EVM JSON-RPC node with a 6-decimals test USDC and funded test wallets."""
        from local_stack.chain import LocalChain

        self._chain = LocalChain(log_dir=self.log_dir)
        return self._chain.start()

    def _start_builtin_upstream(self) -> tuple[str, str]:
        """No real providers configured: serve the models from the built-in deterministic upstream."""
        import json
        import tempfile

        from local_stack.upstream import UpstreamServer, local_model_catalog

        self._upstream = UpstreamServer(name="builtin").start()
        folder = self.log_dir or Path(tempfile.mkdtemp(prefix="local-stack-"))
        folder.mkdir(parents=True, exist_ok=True)
        catalog_path = folder / "models.json"
        catalog_path.write_text(json.dumps(local_model_catalog(self._upstream.url), indent=2))
        return self._upstream.url, str(catalog_path)

    def stop(self) -> None:
        if self._scheduler is not None:
            self._scheduler.stop()
            self._scheduler = None
        if self._stripe is not None:
            # Before the gateway: deliveries still queued go out while it can answer them.
            self._stripe.stop()
            self._stripe = None
        if self._server is not None:
            self._server.stop()
            self._server = None
        if self._listener is not None:  # bound, but the stack failed before serving on it
            self._listener.close()
            self._listener = None
        if self._outbox_server is not None:
            self._outbox_server.stop()
            self._outbox_server = None
        if self._upstream is not None:
            self._upstream.stop()
            self._upstream = None
        if self._chain is not None:
            self._chain.stop()
            self._chain = None
        if self._dynamodb is not None and self._owns_dynamodb:
            self._dynamodb.stop()
            self._dynamodb = None
        for name, value in self._saved_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        self._saved_env = {}

    def __enter__(self) -> StackInfo:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
