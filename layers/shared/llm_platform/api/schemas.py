"""Request bodies of the management API: strict, unknown fields refused (422), sizes capped."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StringConstraints,
    WithJsonSchema,
    model_validator,
)

from llm_platform.domain.money import usd_to_micros
from llm_platform.domain.plans import catalog

# Names are shown to people: no control characters (C0, DEL, C1), no zero-width or joiner characters,
# no byte-order mark, and no bidirectional overrides or isolates (which make "evil\u202etxt.exe" read as
# "evilexe.txt").
Name = Annotated[
    str,
    StringConstraints(
        strip_whitespace=True,
        min_length=1,
        max_length=64,
        pattern=r"^[^\x00-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2060-\u2069\ufeff]+$",
    ),
]
ResourceId = Annotated[str, StringConstraints(min_length=1, max_length=64)]


def _dollars_not_bool(value: Any) -> Any:
    if isinstance(value, bool):  # JSON true would otherwise be read as 1 dollar
        raise ValueError("must be a number of US dollars")
    return value


# US dollars as sent by clients (number or string), exact to the micro-dollar, never a float.
# WithJsonSchema only documents it (pydantic cannot express the constraints of a Decimal in JSON Schema).
Usd = Annotated[
    Decimal,
    BeforeValidator(_dollars_not_bool),
    Field(gt=0, decimal_places=6, allow_inf_nan=False),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "number", "exclusiveMinimum": 0},
                {"type": "string", "pattern": r"^[0-9]+(\.[0-9]{1,6})?$"},
            ],
            "description": "US dollars, a number or a decimal string, at most 6 decimals.",
        }
    ),
]


class RequestBody(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


BudgetResetField = Literal["daily", "weekly", "monthly"]
ExpiresAt = Annotated[AwareDatetime, Field(description="ISO 8601 time with a zone (e.g. Z), in the future.")]


class _CreditLimits(RequestBody):
    max_budget: Usd | None = Field(default=None, alias="maxBudget")
    rpm: StrictInt | None = Field(default=None, ge=1)
    tpm: StrictInt | None = Field(default=None, ge=1)
    budget_reset: BudgetResetField | None = Field(default=None, alias="budgetReset")
    expires_at: ExpiresAt | None = Field(default=None, alias="expiresAt")

    @model_validator(mode="after")
    def _within_policy(self) -> _CreditLimits:
        policy = catalog().credit_keys
        if self.rpm is not None and self.rpm > policy.max_rpm:
            raise ValueError(f"rpm must be at most {policy.max_rpm}")
        if self.tpm is not None and self.tpm > policy.max_tpm:
            raise ValueError(f"tpm must be at most {policy.max_tpm}")
        if self.max_budget is not None and self.max_budget > policy.max_budget_usd:
            raise ValueError(f"maxBudget must be at most {policy.max_budget_usd}")
        return self


class CreateCreditKeyRequest(_CreditLimits):
    name: Name


class CreateSubscriptionKeyRequest(RequestBody):
    name: Name
    subscription_id: ResourceId = Field(alias="subscriptionId")
    expires_at: ExpiresAt | None = Field(default=None, alias="expiresAt")


class UpdateKeyRequest(_CreditLimits):
    """Only the fields sent change; ``null`` removes ``maxBudget``, ``budgetReset`` or ``expiresAt`` (and
    puts a subscription key's ``rpm``/``tpm`` back to its plan's)."""

    name: Name | None = None
    disabled: StrictBool | None = None

    @model_validator(mode="after")
    def _something_to_change(self) -> UpdateKeyRequest:
        if not self.model_fields_set:
            raise ValueError(
                "send at least one of 'name', 'disabled', 'rpm', 'tpm', 'maxBudget', 'budgetReset', 'expiresAt'"
            )
        for field in ("name", "disabled"):
            if field in self.model_fields_set and getattr(self, field) is None:
                raise ValueError(f"'{field}' cannot be null")
        return self

    def limit_changes(self) -> dict[str, Any]:
        """The limits sent, by the key's field names (None: remove)."""
        fields = {"rpm": "rpm", "tpm": "tpm", "max_budget": "max_budget_micros", "budget_reset": "budget_reset",
                  "expires_at": "key_expires_at"}  # fmt: skip
        changes = {
            target: getattr(self, source) for source, target in fields.items() if source in self.model_fields_set
        }
        if changes.get("max_budget_micros") is not None:
            changes["max_budget_micros"] = usd_to_micros(changes["max_budget_micros"])
        return changes


class RotateKeyRequest(RequestBody):
    grace_period_seconds: StrictInt = Field(default=0, ge=0, le=86_400, alias="gracePeriodSeconds")


class CreateManagementKeyRequest(RequestBody):
    name: Name


class _Amount(RequestBody):
    amount: Usd = Field(le=1_000_000_000, json_schema_extra={"maximum": 1_000_000_000})


class TopupRequest(_Amount):
    method: Literal["stripe", "usdc"]


class VerifyTopupRequest(_Amount):
    # Any shape: a malformed hash is the domain's 400 invalid_tx_hash, not a schema 422.
    tx_hash: Annotated[Any, WithJsonSchema({"type": "string", "description": "0x + 64 hex digits"})] = Field(
        alias="txHash"
    )


class WalletChallengeRequest(RequestBody):
    address: str = Field(min_length=1, max_length=64)


class BindWalletRequest(RequestBody):
    address: str = Field(min_length=1, max_length=64)
    signature: str = Field(min_length=1, max_length=200)


class SubscribeRequest(RequestBody):
    plan_slug: str = Field(alias="planSlug", min_length=1, max_length=32)
    create_key: StrictBool = Field(default=False, alias="createKey")
    key_name: Name | None = Field(default=None, alias="keyName")


class CheckoutRequest(RequestBody):
    plan_slug: str = Field(alias="planSlug", min_length=1, max_length=32)


class CancelSubscriptionRequest(RequestBody):
    subscription_id: ResourceId = Field(alias="subscriptionId")


# Any string up to a size cap: the domain checks the address's shape (400 invalid_email) and the code.
class EmailSignInRequest(RequestBody):
    email: str = Field(min_length=1, max_length=320, description="Your email address.")


class EmailVerifyRequest(RequestBody):
    email: str = Field(min_length=1, max_length=320, description="The address the code was sent to.")
    code: str = Field(min_length=1, max_length=16, description="The 6-digit code from the message.")
