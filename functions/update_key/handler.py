"""PATCH /api/keys/{id}: rename, disable or re-enable a key, change its limits, budget reset or expiry;
the proxy applies it on the key's next request."""

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
    summary="Change a key",
    description=(
        "Rename, disable or enable a key, or change its limits: `rpm`, `tpm`, and for credit keys `maxBudget` "
        "and `budgetReset` (daily, weekly or monthly, calendar-aligned UTC: the maxBudget spend restarts at "
        "each boundary), and `expiresAt`. Only the fields sent change; `null` removes a limit (a subscription "
        "key's `rpm`/`tpm` go back to its plan's, which they can never exceed). Takes effect on the key's "
        "next request, on every proxy instance."
    ),
    tags=["Keys"],
    operation_id="updateKey",
    responses=responses(
        200,
        "ApiKeyView",
        "The key as listed.",
        errors={
            404: "`not_found`: no such key (or revoked), or another account's.",
            422: "`validation_error`: e.g. a subscription key's `rpm` above its plan's, `maxBudget` on a "
            "subscription key, `expiresAt` in the past.",
        },
    ),
)
def update_key(key_id: str, body: UpdateKeyRequest):
    key = api_keys.update_key(app.caller, key_id, name=body.name, disabled=body.disabled, limits=body.limit_changes())
    return ok(views.api_key(key))


# log_event=False even if POWERTOOLS_LOGGER_LOG_EVENT is set: the event carries the Authorization header.
@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST, log_event=False, clear_state=True)
@metrics.log_metrics
@tracer.capture_lambda_handler(capture_response=False)
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    return app.resolve(event, context)
