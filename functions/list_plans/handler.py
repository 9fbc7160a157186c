"""GET /api/plans: the plans on sale (price, per-key RPM and TPM, 5-hour budget), from catalog/plans.json."""

from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from llm_platform.api import views
from llm_platform.api.app import build_app, ok
from llm_platform.api.openapi import responses
from llm_platform.domain import plans
from llm_platform.observability import logger, metrics, tracer

app = build_app()


@app.get(
    "/api/plans",
    summary="List plans",
    description=(
        "The plans on sale: price per interval, RPM and TPM per key, and the budget each subscription may "
        "spend per 5-hour window. Subscribe with `POST /api/billing/checkout` (card) or `/api/billing/subscribe` "
        "(credit balance)."
    ),
    tags=["Billing"],
    operation_id="listPlans",
    responses=responses(200, "PlanView", "The plans.", many=True),
)
def list_plans():
    return ok([views.plan(plan) for plan in plans.catalog().plans])


# log_event=False even if POWERTOOLS_LOGGER_LOG_EVENT is set: the event carries the Authorization header.
@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST, log_event=False, clear_state=True)
@metrics.log_metrics
@tracer.capture_lambda_handler(capture_response=False)
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    return app.resolve(event, context)
