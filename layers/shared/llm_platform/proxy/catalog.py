"""The model catalog is data (``catalog/models.json``, or the file named by ``MODEL_CATALOG_FILE``):
public model id → customer price per 1M tokens (per service tier where it has tiers), its limits, and the
upstream providers with their own cost and the optional parameters each one takes."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from decimal import Decimal
from functools import cache
from pathlib import Path

from llm_platform.catalog import load
from llm_platform.proxy.parameters import CLASSIC, FORWARDABLE, STANDARD_TIERS, Prices
from llm_platform.proxy.pricing import per_million_micros

KINDS = ("chat", "embedding")
# What an embeddings provider takes when its catalog entry lists nothing (OpenAI's embeddings parameters).
EMBEDDING_PARAMETERS = frozenset({"encoding_format", "dimensions", "user"})


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
    # The optional request parameters it takes (forwarded); the others are dropped for it.
    parameters: frozenset[str] = CLASSIC
    service_tiers: frozenset[str] = frozenset()  # priced tiers (the model's serviceTiers) it offers

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
    kind: str = "chat"  # or "embedding" (POST /v1/embeddings)
    context_length: int | None = None  # prompt and output together, tokens
    service_tiers: dict[str, Prices] = field(default_factory=dict)  # tier -> the customer's price in it
    dimensions: int | None = None  # embeddings: the vector's length
    dimensions_adjustable: bool = False  # embeddings: the request may ask for fewer `dimensions`

    def pricing(self) -> dict[str, str]:
        """USD per token, as decimal strings (``/v1/models``)."""
        return {"prompt": _per_token(self.input_price), "completion": _per_token(self.output_price)}

    def supported_parameters(self) -> list[str]:
        """The optional parameters forwarded whichever of its providers serves the request."""
        return sorted(frozenset.intersection(*(p.parameters for p in self.providers)))

    def public(self) -> dict:
        """The model as ``GET /v1/models`` lists it."""
        item = {
            "id": self.id,
            "object": "model",
            "created": 0,
            "owned_by": self.owned_by,
            "type": self.kind,
            "pricing": self.pricing(),
            "context_length": self.context_length,
            "max_output_tokens": self.max_output_tokens if self.kind == "chat" else None,
            "supported_parameters": self.supported_parameters(),
        }
        if self.service_tiers:
            item["service_tiers"] = {
                tier: {"prompt": _per_token(p.input), "completion": _per_token(p.output)}
                for tier, p in sorted(self.service_tiers.items())
            }
        if self.kind == "embedding":
            item["dimensions"] = self.dimensions
        return item


def _per_token(micros_per_million: int) -> str:
    # micro-dollars per 1M tokens: USD per token is that number times 10^-12
    return format(Decimal(micros_per_million).scaleb(-12).normalize(), "f")


class CatalogError(ValueError):
    pass


def _provider(raw: dict, default_parameters: frozenset[str]) -> Provider:
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
        parameters=frozenset(raw["parameters"]) if "parameters" in raw else default_parameters,
        service_tiers=frozenset(raw.get("serviceTiers", ())),
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
        kind = str(raw.get("kind", "chat"))
        if kind not in KINDS:
            raise CatalogError(f"model {raw['id']}: kind is one of {KINDS}")
        default_parameters = CLASSIC if kind == "chat" else EMBEDDING_PARAMETERS
        providers = tuple(
            sorted(
                (_provider(p, default_parameters) for p in raw["providers"]),
                key=lambda p: p.cost_rank,
            )
        )
        if not providers:
            raise CatalogError(f"model {raw['id']} has no providers")
        tiers = {
            str(name): Prices(
                per_million_micros(Decimal(str(price["inputPerMTokUsd"]))),
                per_million_micros(Decimal(str(price["outputPerMTokUsd"]))),
            )
            for name, price in (raw.get("serviceTiers") or {}).items()
        }
        model = Model(
            id=str(raw["id"]),
            owned_by=str(raw.get("ownedBy", "platform")),
            input_price=per_million_micros(Decimal(str(raw["inputPerMTokUsd"]))),
            output_price=per_million_micros(Decimal(str(raw["outputPerMTokUsd"]))),
            # An embedding model generates no tokens: no output caps.
            max_output_tokens=int(raw["maxOutputTokens"]) if kind == "chat" else 0,
            default_max_output_tokens=int(raw.get("defaultMaxOutputTokens", min(4096, int(raw["maxOutputTokens"]))))
            if kind == "chat"
            else 0,
            providers=providers,
            media_part_tokens=int(raw["mediaPartTokens"]) if raw.get("mediaPartTokens") is not None else None,
            kind=kind,
            context_length=int(raw["contextLength"]) if raw.get("contextLength") is not None else None,
            service_tiers=tiers,
            dimensions=int(raw["dimensions"]) if raw.get("dimensions") is not None else None,
            dimensions_adjustable=bool(raw.get("dimensionsAdjustable", False)),
        )
        if model.id in models:
            raise CatalogError(f"model {model.id} is listed twice")
        if any(p.max_tokens_field not in ("max_tokens", "max_completion_tokens") for p in providers):
            raise CatalogError(f"model {model.id}: maxTokensField is max_tokens or max_completion_tokens")
        if kind == "chat" and not 1 <= model.default_max_output_tokens <= model.max_output_tokens:
            raise CatalogError(f"model {model.id}: need 1 <= defaultMaxOutputTokens <= maxOutputTokens")
        _check_parameters(model)
        models[model.id] = model
    return models


def _check_parameters(model: Model) -> None:
    """Only parameters the proxy knows may be forwarded (nothing unpriced: audio, web search, moderation), and a
    provider offers only tiers the model prices."""
    allowed = FORWARDABLE if model.kind == "chat" else EMBEDDING_PARAMETERS
    for provider in model.providers:
        unknown = sorted(provider.parameters - allowed)
        if unknown:
            raise CatalogError(f"model {model.id}, provider {provider.name}: cannot forward {unknown}")
        unpriced = sorted(provider.service_tiers - set(model.service_tiers))
        if unpriced:
            raise CatalogError(f"model {model.id}, provider {provider.name}: tiers {unpriced} have no price")
    standard = sorted(STANDARD_TIERS & set(model.service_tiers))
    if standard:
        raise CatalogError(f"model {model.id}: {standard} is the standard price, not a tier")
    for tier in model.service_tiers:
        if not any(tier in p.service_tiers for p in model.providers):
            raise CatalogError(f"model {model.id}: no provider offers the tier {tier}")
    if model.kind == "embedding" and not model.dimensions:
        raise CatalogError(f"model {model.id}: an embedding model declares its dimensions")


@cache
def models() -> dict[str, Model]:
    override = os.environ.get("MODEL_CATALOG_FILE")
    return parse_catalog(json.loads(Path(override).read_text()) if override else load("models.json"))
