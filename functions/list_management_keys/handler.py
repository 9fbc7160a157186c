"""GET /api/management-keys: the account's management keys, never their secrets."""

from typing import Annotated

from aws_lambda_powertools.event_handler.openapi.params import Query
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from llm_platform.api import views
from llm_platform.api.app import build_app, page
from llm_platform.api.openapi import responses
from llm_platform.domain import management_keys
from llm_platform.observability import logger, metrics, tracer

app = build_app()


@app.get(
    "/api/management-keys",
    summary="List management keys",
    description=(
        "The account's management keys, never their secrets; `current` marks the one used. Paginated: `limit` "
        "(1-100, default 100) keys a page, each page in creation order; `nextCursor` fetches the next."
    ),
    tags=["Management keys"],
    operation_id="listManagementKeys",
    responses=responses(
        200, "ManagementKeyView", "A page of the management keys.", paged=True, errors={400: "`invalid_cursor`."}
    ),
)
def list_management_keys(
    limit: Annotated[int, Query(ge=1, le=100)] = 100,
    cursor: Annotated[str | None, Query(max_length=1000)] = None,
):
    caller = app.caller
    found = management_keys.list_keys(caller, limit, cursor)
    return page([views.management_key(key, caller.management_key_id) for key in found.items], found.cursor)


# log_event=False even if POWERTOOLS_LOGGER_LOG_EVENT is set: the event carries the Authorization header.
@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST, log_event=False, clear_state=True)
@metrics.log_metrics
@tracer.capture_lambda_handler(capture_response=False)
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    return app.resolve(event, context)
