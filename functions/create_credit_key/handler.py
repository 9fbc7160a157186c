"""POST /api/keys/credit: a key that spends the prepaid balance, optionally capped by maxBudget."""

from http import HTTPStatus

from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from llm_platform.api import views
from llm_platform.api.app import build_app, ok
from llm_platform.api.openapi import responses
from llm_platform.api.schemas import CreateCreditKeyRequest
from llm_platform.core.entities import BudgetReset
from llm_platform.domain import api_keys
from llm_platform.domain.money import usd_to_micros
from llm_platform.observability import logger, metrics, tracer

app = build_app()


@app.post(
    "/api/keys/credit",
    summary="Create a credit key",
    description=(
        "An API key that spends the prepaid credit balance, capped by `maxBudget` (USD, up to 6 decimals). "
        "`rpm`/`tpm` default to and are capped by the platform's credit-key policy."
    ),
    tags=["Keys"],
    operation_id="createCreditKey",
    responses=responses(
        201,
        "CreatedApiKey",
        "The key; `apiKey` is shown only here.",
        errors={409: "`key_limit_reached`: the account has as many keys as it may (5,000 by default)."},
    ),
)
def create_credit_key(body: CreateCreditKeyRequest):
    max_budget = None if body.max_budget is None else usd_to_micros(body.max_budget)
    key, plaintext = api_keys.create_credit_key(
        app.caller,
        body.name,
        max_budget,
        body.rpm,
        body.tpm,
        BudgetReset(body.budget_reset) if body.budget_reset else None,
        body.expires_at,
    )
    metrics.add_metric(name="ApiKeysCreated", unit=MetricUnit.Count, value=1)
    return ok(views.created_api_key(key, plaintext), HTTPStatus.CREATED)


# log_event=False even if POWERTOOLS_LOGGER_LOG_EVENT is set: the event carries the Authorization header.
@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST, log_event=False, clear_state=True)
@metrics.log_metrics
@tracer.capture_lambda_handler(capture_response=False)
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    return app.resolve(event, context)
