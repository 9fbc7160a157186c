"""Auth table (pk ``pk``; TTL ``expiresAt``): sign-in by emailed code.

- ``code#<email>``: the one open code of an address: ``codeHash`` (SHA-256 of salt, address and code),
  ``salt``, ``tries`` (every try counts, right or wrong), ``expiresAt``. A new code replaces it.
- ``sent#<email>#<window>``: codes sent to an address in a 15-minute window (the rate limit).
- ``email#<email>``: the address's account (``accountId``), forever; written once, by a conditional put.
- ``session#<sha256 of the token>``: ``accountId``, ``email``, ``createdAt``, ``expiresAt``. Only the
  hash is stored; the management functions may read only these items (IAM ``dynamodb:LeadingKeys``).

Addresses are normalised (trimmed, lower case) before they reach this module. ``expiresAt`` is epoch
seconds: DynamoDB deletes expired items within days, so every read checks it too."""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError

from llm_platform.config import get_settings
from llm_platform.data.dynamo import client, from_item, is_condition_failure, to_item, to_values, transact, update_if


def _table() -> str:
    return get_settings().auth_table


def _key(pk: str) -> dict[str, Any]:
    return {"pk": {"S": pk}}


def _get(pk: str) -> dict[str, Any] | None:
    return from_item(client().get_item(TableName=_table(), Key=_key(pk), ConsistentRead=True).get("Item"))


# ---------------------------------------------------------------------------------- codes


def count_code_sent(email: str, window: int, limit: int, expires_at: int) -> bool:
    """Count one more code for the address in this window: False (nothing counted) when it had ``limit``."""
    return (
        update_if(
            TableName=_table(),
            Key=_key(f"sent#{email}#{window}"),
            UpdateExpression="ADD #count :one SET expiresAt = :expires",
            ConditionExpression="attribute_not_exists(#count) OR #count < :limit",
            ExpressionAttributeNames={"#count": "count"},
            ExpressionAttributeValues=to_values({":one": 1, ":limit": limit, ":expires": expires_at}),
        )
        is not None
    )


def put_code(email: str, code_hash: str, salt: str, issued_at: str, expires_at: int) -> None:
    """The address's new code, replacing any earlier one (and its count of tries)."""
    item = {
        "pk": f"code#{email}",
        "codeHash": code_hash,
        "salt": salt,
        "tries": 0,
        "issuedAt": issued_at,
        "expiresAt": expires_at,
    }
    client().put_item(TableName=_table(), Item=to_item(item))


def get_code(email: str) -> dict[str, Any] | None:
    return _get(f"code#{email}")


def count_try(email: str, code_hash: str, max_tries: int, now: int) -> bool:
    """Count a try against the code that was read (same hash, still open, tries left): False if none is left.
    Counting before comparing makes the limit exact under concurrent tries."""
    return (
        update_if(
            TableName=_table(),
            Key=_key(f"code#{email}"),
            UpdateExpression="ADD tries :one",
            ConditionExpression="codeHash = :hash AND tries < :max AND expiresAt > :now",
            ExpressionAttributeValues=to_values({":one": 1, ":hash": code_hash, ":max": max_tries, ":now": now}),
        )
        is not None
    )


def _consume_code(email: str, code_hash: str, now: int) -> dict[str, Any]:
    """A transaction item deleting the code, only if it is still that code and open: a code works once."""
    return {
        "Delete": {
            "TableName": _table(),
            "Key": _key(f"code#{email}"),
            "ConditionExpression": "codeHash = :hash AND expiresAt > :now",
            "ExpressionAttributeValues": to_values({":hash": code_hash, ":now": now}),
        }
    }


# ---------------------------------------------------------------------------------- accounts by email


def account_of(email: str) -> str | None:
    item = _get(f"email#{email}")
    return item["accountId"] if item else None


def email_mapping_put(email: str, account_id: str, created_at: str) -> dict[str, Any]:
    """A transaction item mapping an address to an account, only if the address has none yet."""
    item = to_item({"pk": f"email#{email}", "accountId": account_id, "createdAt": created_at})
    return {"Put": {"TableName": _table(), "Item": item, "ConditionExpression": "attribute_not_exists(pk)"}}


def map_email(email: str, account_id: str, created_at: str) -> bool:
    """Map an address to an existing account (the local demo); False when the address is taken."""
    try:
        client().put_item(**email_mapping_put(email, account_id, created_at)["Put"])
    except ClientError as error:
        if is_condition_failure(error):
            return False
        raise
    return True


def _session_put(token_hash: str, account_id: str, email: str, created_at: str, expires_at: int) -> dict[str, Any]:
    item = {
        "pk": f"session#{token_hash}",
        "accountId": account_id,
        "email": email,
        "createdAt": created_at,
        "expiresAt": expires_at,
    }
    return {"Put": {"TableName": _table(), "Item": to_item(item), "ConditionExpression": "attribute_not_exists(pk)"}}


def sign_in(
    email: str, code_hash: str, account_id: str, token_hash: str, created_at: str, expires_at: int, now: int
) -> None:
    """Consume the code and open a session for the address's existing account, in one transaction
    (``WriteRefused`` when the code was used or replaced meanwhile, or the mapping changed)."""
    transact(
        [
            _consume_code(email, code_hash, now),
            {
                "ConditionCheck": {
                    "TableName": _table(),
                    "Key": _key(f"email#{email}"),
                    "ConditionExpression": "accountId = :account",
                    "ExpressionAttributeValues": to_values({":account": account_id}),
                }
            },
            _session_put(token_hash, account_id, email, created_at, expires_at),
        ]
    )


def sign_up(
    email: str,
    code_hash: str,
    account_item: dict[str, Any],
    token_hash: str,
    created_at: str,
    expires_at: int,
    now: int,
) -> None:
    """Consume the code, create the account, map the address to it and open a session, in one transaction.
    The mapping's put is conditional, so of two sign-ups of one address at once exactly one commits
    (``WriteRefused``: the other finds the mapping and signs in to that account instead)."""
    account_id = account_item["accountId"]["S"]
    transact(
        [
            _consume_code(email, code_hash, now),
            email_mapping_put(email, account_id, created_at),
            {
                "Put": {
                    "TableName": get_settings().accounts_table,
                    "Item": account_item,
                    "ConditionExpression": "attribute_not_exists(accountId)",
                }
            },
            _session_put(token_hash, account_id, email, created_at, expires_at),
        ]
    )


# ---------------------------------------------------------------------------------- sessions


def get_session(token_hash: str) -> dict[str, Any] | None:
    return _get(f"session#{token_hash}")


def delete_session(token_hash: str) -> None:
    client().delete_item(TableName=_table(), Key=_key(f"session#{token_hash}"))
