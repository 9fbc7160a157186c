#!/bin/bash
# Lambda handler of ProxyFunction. The Lambda Web Adapter's wrapper (AWS_LAMBDA_EXEC_WRAPPER=/opt/bootstrap)
# starts this script instead of the Python runtime, waits until AWS_LWA_READINESS_CHECK_PATH answers on
# AWS_LWA_PORT, then forwards every API Gateway request to it as plain HTTP and streams the response back.
# The runtime's own bootstrap is bypassed, so the function code (with its requirements) and the shared
# layer (/opt/python) are put on the import path here.
set -euo pipefail
export PYTHONPATH="${LAMBDA_TASK_ROOT:-$(dirname "$0")}:/opt/python${PYTHONPATH:+:$PYTHONPATH}"
# httptools and uvloop, named so a build without them fails its readiness check instead of quietly
# running on h11 and asyncio's loop: they take 0.3-0.6 ms of CPU off every request (README, Measured).
exec python -m uvicorn app:app \
  --http httptools \
  --loop uvloop \
  --host 127.0.0.1 \
  --port "${AWS_LWA_PORT:-8080}" \
  --no-access-log \
  --log-level warning
