"""More management keys for the same account; an account always keeps at least one."""

from __future__ import annotations

from llm_platform.core.entities import ManagementKey
from llm_platform.data import management_keys as management_keys_table
from llm_platform.data.dynamo import WriteRefused
from llm_platform.domain import listing
from llm_platform.domain.accounts import Caller, new_management_key
from llm_platform.domain.credentials import is_id
from llm_platform.domain.errors import Conflict, NotFound
from llm_platform.domain.plans import catalog


def create(caller: Caller, name: str) -> tuple[ManagementKey, str]:
    key, plaintext = new_management_key(caller.account_id, name)
    cap = catalog().account_limits.max_management_keys
    try:
        management_keys_table.add(key, cap)
    except WriteRefused as refused:
        if refused.reasons[-1] == "ConditionalCheckFailed":
            raise Conflict(
                f"This account already has {cap} management keys, the most it may have; delete one first.",
                code="key_limit_reached",
            ) from refused
        raise
    return key, plaintext


def list_keys(
    caller: Caller, limit: int = listing.DEFAULT_LIMIT, cursor: str | None = None
) -> listing.Listing[ManagementKey]:
    """A page of the account's management keys: pages follow key ids, each page in creation order."""
    after = listing.after(caller.account_id, "management-keys", cursor)
    keys, next_after = management_keys_table.page_for_account(caller.account_id, after, limit)
    return listing.Listing(
        sorted(keys, key=lambda k: k.created_at), listing.cursor(caller.account_id, "management-keys", next_after)
    )


def delete(caller: Caller, key_id: str) -> None:
    key = management_keys_table.find_for_account(caller.account_id, key_id) if is_id(key_id, "mkey") else None
    if key is None:
        raise NotFound(f"Management key {key_id} not found.")
    try:
        management_keys_table.remove_unless_last(key)
    except WriteRefused as refused:
        if refused.reasons[0] == "ConditionalCheckFailed":  # deleted concurrently
            raise NotFound(f"Management key {key_id} not found.") from refused
        raise Conflict(
            "This is the account's last management key; create another before deleting it.",
            code="last_management_key",
        ) from refused
