"""POST /api/billing/wallets/challenge: a one-time EIP-4361 message for a wallet to sign."""

from http import HTTPStatus

from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from llm_platform.api.app import build_app, ok
from llm_platform.api.openapi import responses
from llm_platform.api.schemas import WalletChallengeRequest
from llm_platform.domain import wallets
from llm_platform.observability import logger, metrics, tracer

app = build_app()


@app.post(
    "/api/billing/wallets/challenge",
    summary="Start binding a wallet",
    description="A one-time EIP-4361 message for the wallet to sign (`personal_sign`); valid 10 minutes.",
    tags=["Wallets"],
    operation_id="createWalletChallenge",
    responses=responses(
        201,
        "WalletChallenge",
        "The message to sign.",
        errors={
            400: "`invalid_address` (not 0x + 40 hex digits, or the deposit address).",
            409: "`wallet_already_bound`, `wallet_bound_elsewhere`.",
        },
    ),
)
def wallet_challenge(body: WalletChallengeRequest):
    host = app.current_event.headers.get("host") or "localhost"  # case-insensitive in Powertools v3
    challenge = wallets.challenge(app.caller, body.address, host)
    return ok({"message": challenge.message, "expiresAt": challenge.expires_at}, HTTPStatus.CREATED)


# log_event=False even if POWERTOOLS_LOGGER_LOG_EVENT is set: the event carries the Authorization header.
@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST, log_event=False, clear_state=True)
@metrics.log_metrics
@tracer.capture_lambda_handler(capture_response=False)
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    return app.resolve(event, context)
