"""The response shapes' literal types cover every member of the entities' enums, with the same values."""

from __future__ import annotations

from enum import StrEnum

import pytest

from llm_platform.api import views
from llm_platform.core.entities import BudgetReset, KeyKind, KeyStatus, SubscriptionStatus


@pytest.mark.parametrize(
    ("enum", "literals"),
    [
        (KeyKind, views.KEY_TYPES),
        (KeyStatus, views.KEY_STATUSES),
        (SubscriptionStatus, views.SUBSCRIPTION_STATUSES),
        (BudgetReset, views.BUDGET_RESETS),
    ],
)
def test_every_enum_member_has_its_literal(enum: type[StrEnum], literals: dict) -> None:
    assert set(literals) == set(enum)
    assert all(literals[member] == member.value for member in enum)
    # Records read back from DynamoDB hold plain strings: they find their literal too
    assert all(literals[member.value] == member.value for member in enum)
