"""The inference proxy's entry point: an ASGI app, run by uvicorn under the Lambda Web Adapter
(``run.sh``) on AWS and mounted by the local gateway. The logic lives in the shared layer."""

from llm_platform.proxy.asgi import create_app
from llm_platform.proxy.telemetry import configure_logging

# JSON lines on stdout (the function's log group), whatever logging config uvicorn applies.
configure_logging()
app = create_app()
