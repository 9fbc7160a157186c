"""POST /api/billing/checkout: a Stripe Checkout Session (subscription mode) for a plan."""

from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from llm_platform.api.app import build_app, dashboard_url, header, ok
from llm_platform.api.openapi import responses
from llm_platform.api.schemas import CheckoutRequest
from llm_platform.domain import stripe_payments
from llm_platform.observability import logger, metrics, tracer

app = build_app()


@app.post(
    "/api/billing/checkout",
    summary="Subscribe by card (Stripe Checkout)",
    description=(
        "A Stripe Checkout Session in subscription mode for the plan. Nothing is granted until Stripe "
        "says it is paid (the webhook)."
    ),
    tags=["Billing"],
    operation_id="createCheckoutSession",
    responses=responses(
        200,
        "CheckoutSession",
        "Send the customer to `sessionUrl`.",
        errors={
            400: "`unknown_plan`, `invalid_idempotency_key`.",
            503: "`stripe_not_configured`, `stripe_unavailable`, `plan_misconfigured`.",
        },
    ),
)
def checkout(body: CheckoutRequest):
    return ok(
        {
            "sessionUrl": stripe_payments.start_checkout(
                app.caller,
                body.plan_slug,
                dashboard_url(app.current_event.raw_event),
                header(app.current_event.raw_event, "idempotency-key"),
            )
        }
    )


# log_event=False even if POWERTOOLS_LOGGER_LOG_EVENT is set: the event carries the Authorization header.
@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST, log_event=False, clear_state=True)
@metrics.log_metrics
@tracer.capture_lambda_handler(capture_response=False)
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    return app.resolve(event, context)
