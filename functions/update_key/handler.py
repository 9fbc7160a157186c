"""PATCH /api/keys/{id}: rename, disable or re-enable a key; the proxy sees it on the next request."""

from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from llm_platform.api import views
from llm_platform.api.app import build_app, ok
from llm_platform.api.openapi import responses
from llm_platform.api.schemas import UpdateKeyRequest
from llm_platform.domain import api_keys
from llm_platform.observability import logger, metrics, tracer

app = build_app()


@app.patch(
    "/api/keys/<key_id>",
    summary="Rename, disable or enable a key",
    description="Takes effect on the key's next request.",
    tags=["Keys"],
    operation_id="updateKey",
    responses=responses(
        200,
        "ApiKeyView",
        "The key as listed.",
        errors={404: "`not_found`: no such key (or revoked), or another account's."},
    ),
)
def update_key(key_id: str, body: UpdateKeyRequest):
    key = api_keys.update_key(app.caller, key_id, name=body.name, disabled=body.disabled)
    return ok(views.api_key(key))


# log_event=False even if POWERTOOLS_LOGGER_LOG_EVENT is set: the event carries the Authorization header.
@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST, log_event=False, clear_state=True)
@metrics.log_metrics
@tracer.capture_lambda_handler(capture_response=False)
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    return app.resolve(event, context)
