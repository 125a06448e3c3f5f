"""The webhook tables: a project's hooks, each hook's deliveries (newest last), and the outbox,
the deliveries still to be sent. Written through `Store.change`, or in the transaction of the
change a delivery reports (`Store.save(also=...)`)."""

from __future__ import annotations

import struct

from asphalt.master.store import keys, records
from asphalt.master.store.migrations import Tables
from asphalt.model.hooks import Delivery, DeliveryState, Hook


def _hook_key(project: str, hook: str) -> bytes:
    return project.encode() + keys.SEP + hook.encode()


def _delivery_key(delivery: Delivery) -> bytes:
    made_ns = struct.pack(">Q", int(delivery.created_at * 1e9))
    return delivery.hook.encode() + keys.SEP + made_ns + delivery.id.encode()


def put_hook(tables: Tables, hook: Hook) -> None:
    tables.put("hooks", _hook_key(hook.project, hook.id), records.pack(hook))


def delete_hook(tables: Tables, project: str, hook: str) -> None:
    tables.delete("hooks", _hook_key(project, hook))


def hooks(tables: Tables, project: str | None = None) -> list[Hook]:
    """A project's hooks (every project's, without one), oldest first."""
    if project is None:
        return [records.decode(raw, Hook) for _, raw in tables.items("hooks")]
    prefix = project.encode() + keys.SEP
    found = [records.decode(raw, Hook) for raw in tables.scan("hooks", prefix)]
    return sorted(found, key=lambda h: h.created_at)


def put_delivery(tables: Tables, delivery: Delivery) -> None:
    """Keep a delivery; one still pending is in the outbox, and leaves it when it is done."""
    key = _delivery_key(delivery)
    tables.put("deliveries", key, records.pack(delivery))
    tables.put("delivery_keys", delivery.id.encode(), key)
    if delivery.state is DeliveryState.PENDING:
        tables.put("outbox", delivery.id.encode(), key)
    elif tables.get("outbox", delivery.id.encode()) is not None:
        tables.delete("outbox", delivery.id.encode())


def delivery(tables: Tables, delivery_id: str) -> Delivery | None:
    key = tables.get("delivery_keys", delivery_id.encode())
    raw = tables.get("deliveries", key) if key is not None else None
    return records.decode(raw, Delivery) if raw is not None else None


def deliveries(tables: Tables, hook: str, *, limit: int) -> list[Delivery]:
    """A hook's deliveries, newest first."""
    found: list[Delivery] = []
    for raw in tables.scan("deliveries", hook.encode() + keys.SEP, newest=True):
        found.append(records.decode(raw, Delivery))
        if len(found) >= limit:
            break
    return found


def outbox(tables: Tables) -> list[Delivery]:
    """Every delivery still to be sent (what a restarted master sends)."""
    found = []
    for _, key in tables.items("outbox"):
        raw = tables.get("deliveries", key)
        if raw is not None:
            found.append(records.decode(raw, Delivery))
    return found


def delete_deliveries(tables: Tables, hook: str, *, keep: int = 0) -> int:
    """Remove a hook's deliveries but its newest `keep` (none pending is removed while the hook
    is kept); how many were removed."""
    prefix = hook.encode() + keys.SEP
    found = list(tables.keys("deliveries", prefix))
    removed = 0
    for key in found[: max(0, len(found) - keep)]:
        delivery_id = key[len(prefix) + 8 :]
        if keep and tables.get("outbox", delivery_id) is not None:
            continue
        for table, row in (("deliveries", key), ("delivery_keys", delivery_id)):
            tables.delete(table, row)
        if tables.get("outbox", delivery_id) is not None:
            tables.delete("outbox", delivery_id)
        removed += 1
    return removed
