"""POST /api/keys/{id}/rotate: a new secret for the same key, the old one kept for a grace period."""

from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from llm_platform.api import views
from llm_platform.api.app import build_app, ok
from llm_platform.api.openapi import responses
from llm_platform.api.schemas import RotateKeyRequest
from llm_platform.domain import api_keys
from llm_platform.observability import logger, metrics, tracer

app = build_app()


@app.post(
    "/api/keys/<key_id>/rotate",
    summary="Rotate a key's secret",
    description=(
        "The same key (id, limits, usage history) with a new secret, shown only here. The old secret keeps "
        "working for `gracePeriodSeconds` (0-86,400, default 0: it stops at once), then gets 401."
    ),
    tags=["Keys"],
    operation_id="rotateKey",
    responses=responses(
        200,
        "RotatedApiKey",
        "The new secret; `previousKeyExpiresAt` is when the old one stops working.",
        errors={
            404: "`not_found`: no such key (or revoked), or another account's.",
            409: "`key_changed`: rotated or revoked by another request meanwhile; try again.",
        },
    ),
)
def rotate_key(key_id: str, body: RotateKeyRequest | None = None):
    # No body at all is as `{}`: every field of it is optional.
    grace_period_seconds = body.grace_period_seconds if body is not None else 0
    key, plaintext, previous_expires_at = api_keys.rotate_key(app.caller, key_id, grace_period_seconds)
    metrics.add_metric(name="ApiKeysRotated", unit=MetricUnit.Count, value=1)
    return ok(views.rotated_api_key(key, plaintext, previous_expires_at))


# log_event=False even if POWERTOOLS_LOGGER_LOG_EVENT is set: the event carries the Authorization header.
@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST, log_event=False, clear_state=True)
@metrics.log_metrics
@tracer.capture_lambda_handler(capture_response=False)
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    return app.resolve(event, context)
