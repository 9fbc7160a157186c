"""POST /api/billing/wallets: bind a wallet to the account with a signed challenge (EIP-191)."""

from http import HTTPStatus

from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from llm_platform.api import views
from llm_platform.api.app import build_app, ok
from llm_platform.api.openapi import responses
from llm_platform.api.schemas import BindWalletRequest
from llm_platform.domain import wallets
from llm_platform.observability import logger, metrics, tracer

app = build_app()


@app.post(
    "/api/billing/wallets",
    summary="Bind a wallet",
    description=(
        "Binds the wallet to the account with its EIP-191 `personal_sign` signature of the open challenge "
        "(`POST /api/billing/wallets/challenge`), once: a wallet belongs to one account, forever."
    ),
    tags=["Wallets"],
    operation_id="bindWallet",
    responses=responses(
        201,
        "WalletView",
        "The wallet is bound.",
        errors={
            400: "`invalid_address`, `invalid_signature` (not 0x + 130 hex digits, or not a signature); "
            "`challenge_required`: no open challenge for this wallet (expired, used or replaced).",
            403: "`signature_mismatch`: not signed by this wallet over the challenge.",
            409: "`wallet_already_bound` (to this account), `wallet_bound_elsewhere`.",
        },
    ),
)
def bind_wallet(body: BindWalletRequest):
    binding = wallets.bind(app.caller, body.address, body.signature)
    metrics.add_metric(name="WalletsBound", unit=MetricUnit.Count, value=1)
    return ok(views.wallet(binding), HTTPStatus.CREATED)


# log_event=False even if POWERTOOLS_LOGGER_LOG_EVENT is set: the event carries the Authorization header.
@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST, log_event=False, clear_state=True)
@metrics.log_metrics
@tracer.capture_lambda_handler(capture_response=False)
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    return app.resolve(event, context)
