"""GET /api/billing/ledger: every change of the credit balance, newest first, paginated."""

from typing import Annotated

from aws_lambda_powertools.event_handler.openapi.params import Query
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from llm_platform.api import views
from llm_platform.api.app import build_app, page
from llm_platform.api.openapi import responses
from llm_platform.data.pages import encode_cursor
from llm_platform.domain import history
from llm_platform.observability import logger, metrics, tracer

app = build_app()


@app.get(
    "/api/billing/ledger",
    summary="Ledger",
    description=(
        "Every change of the credit balance (grants, top-ups, subscriptions paid from credits, usage of credit "
        "keys), newest first, amounts signed. All entries sum to the credit balance (while no request is in "
        "flight: a running request holds a reservation until it is settled)."
    ),
    tags=["Billing"],
    operation_id="getLedger",
    responses=responses(200, "LedgerEntry", "A page of entries.", paged=True, errors={400: "`invalid_cursor`."}),
)
def ledger(
    limit: Annotated[int, Query(ge=1, le=100)] = 50,
    cursor: Annotated[str | None, Query(max_length=1000)] = None,
):
    found = history.ledger(app.caller, limit=limit, cursor=cursor)
    return page(
        [views.ledger_entry(entry) for entry in found.items], encode_cursor(found.cursor) if found.cursor else None
    )


# log_event=False even if POWERTOOLS_LOGGER_LOG_EVENT is set: the event carries the Authorization header.
@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST, log_event=False, clear_state=True)
@metrics.log_metrics
@tracer.capture_lambda_handler(capture_response=False)
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    return app.resolve(event, context)
