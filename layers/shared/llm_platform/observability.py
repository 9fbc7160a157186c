"""Powertools logger, tracer and metrics shared by every function (configured by POWERTOOLS_* env)."""

from aws_lambda_powertools import Logger, Metrics, Tracer

logger = Logger()
# Only botocore is patched: patching requests/httpx too would record the chain's RPC URL, which carries an
# API key, and other outbound URLs in X-Ray.
tracer = Tracer(patch_modules=["botocore"])
metrics = Metrics()
