"""Hot credit keys on Lambda (issue 16): key shards. A key whose central items meet ``TransactionConflict``
is promoted to shard mode (its item gets ``shards`` = S); the proxy then admits its requests on one of S
shard items shared by every environment (``proxy.shards``, ``data.shards``). A change to the key (limits,
status, rotation, revocation) marks its shards revoked, so it governs the very next request everywhere; the
reconciler returns what idle shards hold."""

from __future__ import annotations

from llm_platform.data import shards as shard_store
from llm_platform.domain.history import shard_history

FIRST_SHARDS = 8  # a key's first promotion
LOG_SHARDS = 16  # a promoted key's (and its account's) request-log / day-counter partitions (K9)


def promote(key_hash: str, key_id: str, account_id: str, shards: int = FIRST_SHARDS) -> bool:
    """Put the key in shard mode with ``shards`` shards (at most 256; never fewer than it has). The registry
    is written first (revocation and the reconciler find the shards there), then the account's and the key's
    ``logShards`` (raised, never lowered: the account's readers cover a shard before the key writes on it),
    then the key item's ``shards``. True when the key item changed."""
    shards = min(shard_store.MAX_SHARDS, max(2, shards))
    shard_store.register(key_id, key_hash, account_id, shards)
    shard_history(account_id, key_id, LOG_SHARDS, key_hash=key_hash)
    return shard_store.promote_key(key_hash, shards)


def next_shards(current: int) -> int:
    """The shard count after a conflict: 8 for a key on the direct path, else double (at most 256)."""
    return FIRST_SHARDS if current < 2 else min(shard_store.MAX_SHARDS, current * 2)


def revoke_key_shards(key_id: str) -> int:
    """Mark every shard of the key revoked (after the key's own write): a shard admission at the old version
    fails, the environment reads the key again and refills at the new version, or is refused."""
    shards = shard_store.registered_shards(key_id)
    return shard_store.revoke(key_id, shards) if shards else 0
