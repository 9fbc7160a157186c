"""Leases and key changes (issue 16): a change to a key (limits, status, rotation, revocation) must govern
its very next request on every instance, also on instances admitting it from a lease. After the key's
own write, every live lease of the key is marked revoked; each lease's next admission then fails, and its
instance reads the key again before admitting anything. A lease taken after the key's write cannot exist:
the take is conditioned on the key's status and version in the same transaction."""

from __future__ import annotations

from datetime import datetime

from llm_platform.core.clock import utc_now
from llm_platform.data import leases as lease_store
from llm_platform.domain.windows import minute_window


def revoke_key_leases(key_id: str, now: datetime | None = None) -> int:
    """Revoke the key's live leases (those registered on the minutes around now, which covers every
    instance's clock within a minute of ours). The number revoked."""
    minute = minute_window(now or utc_now()).index
    live = lease_store.live_leases(key_id, [minute - 1, minute, minute + 1])
    return sum(lease_store.revoke(lease_id) for lease_id in live)
