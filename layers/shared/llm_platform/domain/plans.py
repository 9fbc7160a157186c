"""Plans are data: ``catalog/plans.json`` (slug, price, per-key RPM/TPM, 5-hour budget, Stripe price).
Operators change plans by editing that file, not code."""

from __future__ import annotations

from decimal import Decimal
from functools import cache

from pydantic import BaseModel, ConfigDict, Field

from llm_platform.catalog import load
from llm_platform.domain.errors import BadRequest
from llm_platform.domain.money import usd_to_micros


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)


class Plan(_Model):
    slug: str
    name: str
    price_usd: Decimal = Field(alias="priceUsd")
    interval_months: int = Field(alias="intervalMonths", ge=1)
    rpm: int = Field(ge=1)
    tpm: int = Field(ge=1)
    budget_per_5h_usd: Decimal = Field(alias="budgetPer5hUsd")
    stripe_price_id: str | None = Field(alias="stripePriceId", default=None)
    max_keys: int = Field(alias="maxKeys", ge=1, default=1000)  # keys not revoked, per subscription

    @property
    def price_micros(self) -> int:
        return usd_to_micros(self.price_usd)

    @property
    def budget_per_window_micros(self) -> int:
        return usd_to_micros(self.budget_per_5h_usd)


class CreditKeyPolicy(_Model):
    default_rpm: int = Field(alias="defaultRpm", ge=1)
    default_tpm: int = Field(alias="defaultTpm", ge=1)
    max_rpm: int = Field(alias="maxRpm", ge=1)
    max_tpm: int = Field(alias="maxTpm", ge=1)
    max_budget_usd: Decimal = Field(alias="maxBudgetUsd")


class AccountLimits(_Model):
    max_api_keys: int = Field(alias="maxApiKeys", ge=1)  # keys not revoked, of every kind
    max_management_keys: int = Field(alias="maxManagementKeys", ge=1)


class Catalog(_Model):
    plans: tuple[Plan, ...]
    budget_window_hours: int = Field(alias="budgetWindowHours", ge=1)
    account_limits: AccountLimits = Field(alias="accountLimits")
    credit_keys: CreditKeyPolicy = Field(alias="creditKeys")

    def max_keys_of(self, plan_slug: str) -> int:
        """A subscription's key cap (a withdrawn plan keeps the default)."""
        return next((p.max_keys for p in self.plans if p.slug == plan_slug), Plan.model_fields["max_keys"].default)

    def plan(self, slug: str) -> Plan:
        for plan in self.plans:
            if plan.slug == slug:
                return plan
        known = ", ".join(p.slug for p in self.plans)
        raise BadRequest(f"Unknown plan '{slug}'. Known plans: {known}.", code="unknown_plan")


@cache
def catalog() -> Catalog:
    return Catalog.model_validate(load("plans.json"))
