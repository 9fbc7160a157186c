"""POST /api/auth/logout: end the dashboard session server-side and clear its cookie."""

from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from llm_platform.api.app import build_app, cleared_session_cookie, ok
from llm_platform.api.openapi import responses
from llm_platform.domain import sessions
from llm_platform.observability import logger, metrics, tracer

app = build_app(public=True)


@app.post(
    "/api/auth/logout",
    summary="Sign out",
    description=(
        "Ends the session of the cookie sent, server-side: that cookie no longer works anywhere (401). "
        "Clears the cookie. Answers the same without a session (nothing to end)."
    ),
    tags=["Sign-in"],
    operation_id="signOut",
    security=[],
    responses=responses(
        200,
        "SignedOut",
        "Signed out; the cookie is cleared (`Set-Cookie` with `Max-Age=0`).",
        errors={403: "`origin_not_allowed` / `origin_required`: a cookie sent without the dashboard's `Origin`."},
        headers={"Set-Cookie": "The session cookie, cleared (`Max-Age=0`)."},
    ),
)
def logout():
    browser = app.browser
    if browser.session_token is not None:
        sessions.require_own_origin(browser)  # another website cannot sign the visitor out
        sessions.end(browser.session_token)
    return ok({"signedOut": True}, cookies=[cleared_session_cookie()])


# log_event=False: the event carries the session cookie.
@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST, log_event=False, clear_state=True)
@metrics.log_metrics
@tracer.capture_lambda_handler(capture_response=False)
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    return app.resolve(event, context)
