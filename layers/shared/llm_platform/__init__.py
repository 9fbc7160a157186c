"""Shared layer of the LLM inference platform: domain rules (``domain``), DynamoDB access (``data``)
and the HTTP edge of the management API (``api``). Handlers in ``functions/`` stay thin over it."""
