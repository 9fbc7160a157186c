"""GET /api/keys: the account's consumption keys, never their secrets."""

from typing import Annotated

from aws_lambda_powertools.event_handler.openapi.params import Query
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from llm_platform.api import views
from llm_platform.api.app import build_app, page
from llm_platform.api.openapi import responses
from llm_platform.domain import api_keys
from llm_platform.observability import logger, metrics, tracer

app = build_app()


@app.get(
    "/api/keys",
    summary="List keys",
    description=(
        "The account's API keys, never their secrets; revoked keys are gone. Paginated: `limit` (1-100, default "
        "100) keys a page, each page in creation order; `nextCursor` fetches the next."
    ),
    tags=["Keys"],
    operation_id="listKeys",
    responses=responses(200, "ApiKeyView", "A page of the keys.", paged=True, errors={400: "`invalid_cursor`."}),
)
def list_keys(
    limit: Annotated[int, Query(ge=1, le=100)] = 100,
    cursor: Annotated[str | None, Query(max_length=1000)] = None,
):
    found = api_keys.list_keys(app.caller, limit, cursor)
    return page([views.api_key(key) for key in found.items], found.cursor)


# log_event=False even if POWERTOOLS_LOGGER_LOG_EVENT is set: the event carries the Authorization header.
@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST, log_event=False, clear_state=True)
@metrics.log_metrics
@tracer.capture_lambda_handler(capture_response=False)
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    return app.resolve(event, context)
