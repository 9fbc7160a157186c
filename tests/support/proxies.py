"""The proxy served over real HTTP on a model catalog of the test's own (real upstream servers behind it)."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from local_stack.server_thread import ServerThread


def catalog_model(
    model_id: str,
    upstream_model: str,
    providers: list[tuple[str, float]],
    *,
    price: tuple[float, float] = (1, 2),
    max_out: int = 256,
    timeout: float = 2,
) -> dict[str, Any]:
    """A chat model of the catalog, in USD per 1M tokens (= micro-dollars per token, for easy sums), served
    by ``providers`` ((upstream URL, cost) each, named p0, p1… in that order)."""
    return {
        "id": model_id,
        "ownedBy": "test",
        "inputPerMTokUsd": str(price[0]),
        "outputPerMTokUsd": str(price[1]),
        "maxOutputTokens": max_out,
        "providers": [
            {
                "name": f"p{i}",
                "baseUrl": f"{url}/v1",
                "model": upstream_model,
                "inputCostPerMTokUsd": str(cost),
                "outputCostPerMTokUsd": str(cost),
                "timeoutSeconds": timeout,
            }
            for i, (url, cost) in enumerate(providers)
        ],
    }


@contextlib.contextmanager
def proxy_on_catalog(catalog: dict[str, Any], folder: Path) -> Iterator[tuple[str, Any]]:
    """(URL, app) of a fresh proxy app reading ``catalog`` (MODEL_CATALOG_FILE), restored afterwards."""
    path = folder / "models.json"
    path.write_text(json.dumps(catalog))
    patch = pytest.MonkeyPatch()
    patch.setenv("MODEL_CATALOG_FILE", str(path))
    from llm_platform.proxy import catalog as catalog_module
    from llm_platform.proxy.asgi import create_app

    catalog_module.models.cache_clear()
    app = create_app()
    server = ServerThread(app)
    server.start()
    try:
        yield server.url, app
    finally:
        server.stop()
        patch.undo()
        catalog_module.models.cache_clear()
