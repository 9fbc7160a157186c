"""DELETE /api/management-keys/{id}: revoke a management key (never the account's last one)."""

from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from llm_platform.api.app import build_app, ok
from llm_platform.api.openapi import responses
from llm_platform.domain import management_keys
from llm_platform.observability import logger, metrics, tracer

app = build_app()


@app.delete(
    "/api/management-keys/<key_id>",
    summary="Delete a management key",
    description="Never the account's last one.",
    tags=["Management keys"],
    operation_id="deleteManagementKey",
    responses=responses(
        200,
        "DeletedManagementKey",
        "Deleted.",
        errors={
            404: "`not_found`: no such management key, or another account's.",
            409: "`last_management_key`: the account's last one.",
        },
    ),
)
def delete_management_key(key_id: str):
    management_keys.delete(app.caller, key_id)
    return ok({"id": key_id, "deleted": True})


# log_event=False even if POWERTOOLS_LOGGER_LOG_EVENT is set: the event carries the Authorization header.
@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST, log_event=False, clear_state=True)
@metrics.log_metrics
@tracer.capture_lambda_handler(capture_response=False)
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    return app.resolve(event, context)
