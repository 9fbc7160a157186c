"""GET /api/billing/status: the account's subscriptions (with their keys) and credit balance."""

from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from llm_platform.api import views
from llm_platform.api.app import build_app, ok
from llm_platform.api.openapi import responses
from llm_platform.domain import billing
from llm_platform.observability import logger, metrics, tracer

app = build_app()


@app.get(
    "/api/billing/status",
    summary="Billing status",
    description=(
        "The account's subscriptions, each with its live keys (at most 100 listed; `keyCount` counts them all) "
        "and its current 5-hour budget window (`budgetWindow`: what its keys spent in it and when it resets; "
        "null once the subscription has expired), and the prepaid credit balance."
    ),
    tags=["Billing"],
    operation_id="getBillingStatus",
    responses=responses(200, "BillingStatusView", "Subscriptions and credit balance."),
)
def billing_status():
    return ok(views.billing_status(billing.status(app.caller)))


# log_event=False even if POWERTOOLS_LOGGER_LOG_EVENT is set: the event carries the Authorization header.
@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST, log_event=False, clear_state=True)
@metrics.log_metrics
@tracer.capture_lambda_handler(capture_response=False)
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    return app.resolve(event, context)
