"""The proxy's JSON log lines (proxy/telemetry.py): `extra` and the request's fields survive, secrets do not."""

from __future__ import annotations

import io
import json
import logging

from llm_platform.proxy import telemetry


def _capture() -> tuple[logging.Logger, io.StringIO]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(telemetry.JsonFormatter())
    logger = logging.getLogger("llm_platform.proxy.test-telemetry")
    logger.handlers, logger.propagate = [handler], False
    return logger, stream


def test_a_settle_failure_line_carries_the_request_and_its_extra_fields() -> None:
    # Given a request in progress whose key is known
    logger, stream = _capture()
    record = telemetry.begin("req-1", "POST", "/v1/chat/completions", [])
    record.key_id, record.account_id = "key_1", "acct_1"

    # When the settle fails and is logged with its figures
    try:
        raise RuntimeError("DynamoDB said no")
    except RuntimeError:
        logger.exception("settle failed", extra={"settle": {"reserveMicros": 900, "costMicros": 120}})

    # Then one JSON line holds the message, the request's fields, the extra fields and the traceback
    line = json.loads(stream.getvalue())
    assert (line["message"], line["level"], line["requestId"]) == ("settle failed", "ERROR", "req-1")
    assert (line["keyId"], line["accountId"]) == ("key_1", "acct_1")
    assert line["settle"] == {"reserveMicros": 900, "costMicros": 120}
    assert "DynamoDB said no" in line["exception"]


def test_anything_shaped_like_a_key_is_masked() -> None:
    logger, stream = _capture()
    logger.warning("odd header %s", "Bearer sk_live_abcdef123456", extra={"seen": "mk_secretsecret"})
    text = stream.getvalue()
    assert "abcdef123456" not in text and "secretsecret" not in text
    assert json.loads(text)["message"] == "odd header Bearer sk_live_***"


def test_api_gateways_request_id_is_read_from_the_web_adapters_header() -> None:
    context = json.dumps({"requestId": "apigw-1", "stage": "prod"}).encode()
    record = telemetry.begin("req-2", "GET", "/v1/models", [(b"x-amzn-request-context", context)])
    assert record.api_request_id == "apigw-1"
    assert telemetry.begin("req-3", "GET", "/v1/models", [(b"x-amzn-request-context", b"{nope")]).api_request_id is None
