"""POST /api/billing/verify-topup: credit a confirmed USDC transfer once (the only function with web3)."""

from http import HTTPStatus

from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from llm_platform.api import views
from llm_platform.api.app import build_app, ok
from llm_platform.api.openapi import responses, success
from llm_platform.api.schemas import VerifyTopupRequest
from llm_platform.domain import usdc
from llm_platform.observability import logger, metrics, tracer

app = build_app()


@app.post(
    "/api/billing/verify-topup",
    summary="Claim a USDC top-up",
    description=(
        "Credits a confirmed USDC transfer to the deposit address from a wallet bound to the account, once "
        "across all accounts. `amount` must equal the transferred sum."
    ),
    tags=["Billing"],
    operation_id="verifyTopup",
    responses=responses(
        200,
        "TopupCredited",
        "Credited.",
        more={202: success("Not enough confirmations yet: nothing credited, ask again.", "TopupPending")},
        errors={
            400: "`invalid_tx_hash`, `transaction_failed`, `no_usdc_transfer`, `amount_mismatch`, "
            "`too_many_transfers`, `too_many_logs`.",
            403: "`wallet_not_bound`: no transfer from a wallet bound to this account.",
            404: "`transaction_not_found`.",
            409: "`already_credited`.",
            503: "`usdc_not_configured`, `wrong_chain`, `chain_unavailable`: nothing recorded, retry.",
        },
    ),
)
def verify_topup(body: VerifyTopupRequest):
    result = usdc.verify_topup(app.caller, body.tx_hash, body.amount)
    if result.pending:  # not enough confirmations yet: nothing credited, ask again later
        return ok(views.topup_result(result), HTTPStatus.ACCEPTED)
    metrics.add_metric(name="UsdcCreditedMicros", unit=MetricUnit.Count, value=result.credited_micros)
    return ok(views.topup_result(result))


# log_event=False even if POWERTOOLS_LOGGER_LOG_EVENT is set: the event carries the Authorization header.
@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST, log_event=False, clear_state=True)
@metrics.log_metrics
@tracer.capture_lambda_handler(capture_response=False)
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    return app.resolve(event, context)
