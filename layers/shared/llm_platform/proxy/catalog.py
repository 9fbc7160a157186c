"""The model catalog is data (``catalog/models.json``, or the file named by ``MODEL_CATALOG_FILE``):
public model id → customer price per 1M tokens and the upstream providers with their own cost."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from decimal import Decimal
from functools import cache
from pathlib import Path

from llm_platform.catalog import load
from llm_platform.proxy.pricing import per_million_micros


@dataclass(frozen=True, slots=True)
class Provider:
    name: str
    base_url: str
    model: str
    api_key_secret: str | None
    input_cost: int  # micro-dollars per 1M tokens
    output_cost: int
    timeout_seconds: float
    # The body field this provider honours as the output cap (reasoning models want max_completion_tokens).
    max_tokens_field: str = "max_tokens"

    @property
    def cost_rank(self) -> int:
        return self.input_cost + self.output_cost


@dataclass(frozen=True, slots=True)
class Model:
    id: str
    owned_by: str
    input_price: int  # micro-dollars per 1M tokens, what the customer pays
    output_price: int
    max_output_tokens: int
    # Sent upstream as the output cap when the client gives none, so a request's cost is always bounded.
    default_max_output_tokens: int
    providers: tuple[Provider, ...]
    # Most prompt tokens one image/audio part can cost; None: the model takes text only.
    media_part_tokens: int | None = None


class CatalogError(ValueError):
    pass


def _provider(raw: dict) -> Provider:
    base_url = str(raw["baseUrl"]).rstrip("/")
    if not base_url.startswith(("https://", "http://")):
        raise CatalogError(f"provider {raw.get('name')}: baseUrl must be http(s)")
    return Provider(
        name=str(raw["name"]),
        base_url=base_url,
        model=str(raw["model"]),
        api_key_secret=raw.get("apiKeySecret"),
        input_cost=per_million_micros(Decimal(str(raw["inputCostPerMTokUsd"]))),
        output_cost=per_million_micros(Decimal(str(raw["outputCostPerMTokUsd"]))),
        timeout_seconds=float(raw.get("timeoutSeconds", 60)),
        max_tokens_field=str(raw.get("maxTokensField", "max_tokens")),
    )


def parse_catalog(document: dict) -> dict[str, Model]:
    try:
        return _parse(document)
    except (KeyError, TypeError, ValueError, ArithmeticError) as error:
        if isinstance(error, CatalogError):
            raise
        raise CatalogError(f"invalid model catalog: {type(error).__name__}: {error}") from error


def _parse(document: dict) -> dict[str, Model]:
    models: dict[str, Model] = {}
    for raw in document["models"]:
        providers = tuple(sorted((_provider(p) for p in raw["providers"]), key=lambda p: p.cost_rank))
        if not providers:
            raise CatalogError(f"model {raw['id']} has no providers")
        model = Model(
            id=str(raw["id"]),
            owned_by=str(raw.get("ownedBy", "platform")),
            input_price=per_million_micros(Decimal(str(raw["inputPerMTokUsd"]))),
            output_price=per_million_micros(Decimal(str(raw["outputPerMTokUsd"]))),
            max_output_tokens=int(raw["maxOutputTokens"]),
            default_max_output_tokens=int(raw.get("defaultMaxOutputTokens", min(4096, int(raw["maxOutputTokens"])))),
            providers=providers,
            media_part_tokens=int(raw["mediaPartTokens"]) if raw.get("mediaPartTokens") is not None else None,
        )
        if model.id in models:
            raise CatalogError(f"model {model.id} is listed twice")
        if any(p.max_tokens_field not in ("max_tokens", "max_completion_tokens") for p in providers):
            raise CatalogError(f"model {model.id}: maxTokensField is max_tokens or max_completion_tokens")
        if not 1 <= model.default_max_output_tokens <= model.max_output_tokens:
            raise CatalogError(f"model {model.id}: need 1 <= defaultMaxOutputTokens <= maxOutputTokens")
        models[model.id] = model
    return models


@cache
def models() -> dict[str, Model]:
    override = os.environ.get("MODEL_CATALOG_FILE")
    return parse_catalog(json.loads(Path(override).read_text()) if override else load("models.json"))
