"""POST /api/keys/subscription: a key on one of the account's active subscriptions."""

from http import HTTPStatus

from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from llm_platform.api import views
from llm_platform.api.app import build_app, ok
from llm_platform.api.openapi import responses
from llm_platform.api.schemas import CreateSubscriptionKeyRequest
from llm_platform.domain import api_keys
from llm_platform.observability import logger, metrics, tracer

app = build_app()


@app.post(
    "/api/keys/subscription",
    summary="Create a subscription key",
    description="An API key on one of the account's active subscriptions: it shares the subscription's budget.",
    tags=["Keys"],
    operation_id="createSubscriptionKey",
    responses=responses(
        201,
        "CreatedApiKey",
        "The key; `apiKey` is shown only here.",
        errors={
            404: "`not_found`: no such subscription, or another account's.",
            409: "`subscription_not_active`; `key_limit_reached`: the subscription (its plan's `maxKeys`) or the "
            "account has as many keys as it may.",
        },
    ),
)
def create_subscription_key(body: CreateSubscriptionKeyRequest):
    key, plaintext = api_keys.create_subscription_key(app.caller, body.name, body.subscription_id, body.expires_at)
    metrics.add_metric(name="ApiKeysCreated", unit=MetricUnit.Count, value=1)
    return ok(views.created_api_key(key, plaintext), HTTPStatus.CREATED)


# log_event=False even if POWERTOOLS_LOGGER_LOG_EVENT is set: the event carries the Authorization header.
@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST, log_event=False, clear_state=True)
@metrics.log_metrics
@tracer.capture_lambda_handler(capture_response=False)
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    return app.resolve(event, context)
