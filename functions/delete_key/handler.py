"""DELETE /api/keys/{id}: revoke a key at once."""

from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from llm_platform.api.app import build_app, ok
from llm_platform.api.openapi import responses
from llm_platform.domain import api_keys
from llm_platform.observability import logger, metrics, tracer

app = build_app()


@app.delete(
    "/api/keys/<key_id>",
    summary="Revoke a key",
    description="Revoked at once: the proxy refuses it from the next request.",
    tags=["Keys"],
    operation_id="revokeKey",
    responses=responses(
        200,
        "RevokedApiKey",
        "Revoked.",
        errors={404: "`not_found`: no such key (or already revoked), or another account's."},
    ),
)
def delete_key(key_id: str):
    key = api_keys.revoke_key(app.caller, key_id)
    metrics.add_metric(name="ApiKeysRevoked", unit=MetricUnit.Count, value=1)
    return ok({"id": key.key_id, "revoked": True})


# log_event=False even if POWERTOOLS_LOGGER_LOG_EVENT is set: the event carries the Authorization header.
@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST, log_event=False, clear_state=True)
@metrics.log_metrics
@tracer.capture_lambda_handler(capture_response=False)
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    return app.resolve(event, context)
