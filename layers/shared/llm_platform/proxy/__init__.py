"""The OpenAI-compatible inference proxy. Kept light for cold starts: no Powertools, no pydantic,
no openai/stripe/web3 imports; boto3 (data access) and its own HTTP/1.1 client (upstreams, proxy/http1.py) only."""
