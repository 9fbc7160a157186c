"""POST /api/billing/subscribe: pay one period of a plan from the credit balance (402 when short)."""

from http import HTTPStatus

from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from llm_platform.api import views
from llm_platform.api.app import build_app, ok
from llm_platform.api.openapi import responses
from llm_platform.api.schemas import SubscribeRequest
from llm_platform.domain import subscriptions
from llm_platform.observability import logger, metrics, tracer

app = build_app()


@app.post(
    "/api/billing/subscribe",
    summary="Subscribe from the credit balance",
    description=(
        "Pays one period of the plan from the credit balance; with `createKey`, a key on it in the same "
        "transaction. A short balance leaves nothing behind."
    ),
    tags=["Billing"],
    operation_id="subscribe",
    responses=responses(
        201,
        "Subscribed",
        "The subscription (and key).",
        errors={
            400: "`unknown_plan`.",
            402: "`insufficient_credit`: the balance does not cover one period.",
            409: "`key_limit_reached`: with `createKey`, the account has as many keys as it may (nothing charged).",
        },
    ),
)
def subscribe(body: SubscribeRequest):
    subscription, issued = subscriptions.subscribe_with_credit(
        app.caller, body.plan_slug, body.create_key, body.key_name
    )
    metrics.add_metric(name="SubscriptionsFromCredit", unit=MetricUnit.Count, value=1)
    data: views.Subscribed = {"subscription": views.subscription_summary(subscription)}
    if issued is not None:
        data["key"] = views.created_api_key(*issued)
    return ok(data, HTTPStatus.CREATED)


# log_event=False even if POWERTOOLS_LOGGER_LOG_EVENT is set: the event carries the Authorization header.
@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST, log_event=False, clear_state=True)
@metrics.log_metrics
@tracer.capture_lambda_handler(capture_response=False)
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    return app.resolve(event, context)
