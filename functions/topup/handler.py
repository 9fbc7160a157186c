"""POST /api/billing/topup: add credit by card (a Stripe Checkout Session) or USDC (the deposit address on Base)."""

from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from llm_platform.api.app import build_app, dashboard_url, header, ok
from llm_platform.api.openapi import responses
from llm_platform.api.schemas import TopupRequest
from llm_platform.domain import stripe_payments, usdc
from llm_platform.observability import logger, metrics, tracer

app = build_app()


@app.post(
    "/api/billing/topup",
    summary="Top up the credit balance",
    description=(
        "`stripe`: a Stripe Checkout Session for exactly `amount` USD (at least $10, whole cents); "
        "`usdc`: where to send `amount` USDC, then bind the wallet and `POST /api/billing/verify-topup`. "
        "A card top-up retried with the same "
        "`Idempotency-Key` header (or, without one, of the same amount within 60 seconds) returns the same session."
    ),
    tags=["Billing"],
    operation_id="topup",
    responses=responses(
        200,
        ("CheckoutSession", "UsdcInstructions"),
        "stripe: `{sessionUrl}`; usdc: `{address, chain, amount}`.",
        errors={
            400: (
                "`amount_below_minimum`, `amount_too_large`, `invalid_amount`, `invalid_idempotency_key` "
                "(card top-ups)."
            ),
            503: "`stripe_not_configured`, `stripe_unavailable`, `usdc_not_configured`.",
        },
    ),
)
def topup(body: TopupRequest):
    if body.method == "stripe":
        return ok(
            {
                "sessionUrl": stripe_payments.start_topup(
                    app.caller,
                    body.amount,
                    dashboard_url(app.current_event.raw_event),
                    header(app.current_event.raw_event, "idempotency-key"),
                )
            }
        )
    return ok(usdc.topup_instructions(body.amount))


# log_event=False even if POWERTOOLS_LOGGER_LOG_EVENT is set: the event carries the Authorization header.
@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST, log_event=False, clear_state=True)
@metrics.log_metrics
@tracer.capture_lambda_handler(capture_response=False)
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    return app.resolve(event, context)
