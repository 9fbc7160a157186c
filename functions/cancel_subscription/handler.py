"""POST /api/billing/cancel: the subscription stays active to its period end, then its keys are revoked."""

from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from llm_platform.api.app import build_app, ok
from llm_platform.api.openapi import responses
from llm_platform.api.schemas import CancelSubscriptionRequest
from llm_platform.domain import subscriptions
from llm_platform.observability import logger, metrics, tracer

app = build_app()


@app.post(
    "/api/billing/cancel",
    summary="Cancel a subscription",
    description=(
        "The subscription stays active until its period end, then expires and its keys are revoked. A "
        "Stripe-paid one is cancelled in Stripe too (also when past due, so Stripe stops retrying)."
    ),
    tags=["Billing"],
    operation_id="cancelSubscription",
    responses=responses(
        200,
        "CancelledSubscription",
        "Cancelled at its period end.",
        errors={
            404: "`not_found`: no such subscription, or another account's.",
            409: "`subscription_not_active`, `already_cancelled`; `conflict`: it changed meanwhile, retry.",
            503: "`stripe_unavailable`, `stripe_not_configured` (Stripe-paid subscriptions).",
        },
    ),
)
def cancel_subscription(body: CancelSubscriptionRequest):
    subscription = subscriptions.cancel(app.caller, body.subscription_id)
    metrics.add_metric(name="SubscriptionsCancelled", unit=MetricUnit.Count, value=1)
    return ok(
        {
            "id": subscription.subscription_id,
            "cancelAtPeriodEnd": subscription.cancel_at_period_end,
            "currentPeriodEnd": subscription.current_period_end,
        }
    )


# log_event=False even if POWERTOOLS_LOGGER_LOG_EVENT is set: the event carries the Authorization header.
@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST, log_event=False, clear_state=True)
@metrics.log_metrics
@tracer.capture_lambda_handler(capture_response=False)
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    return app.resolve(event, context)
