"""The durable store: LMDB tables of msgpack records (lmdb in batch.py, msgpack in records.py)."""

from asphalt.master.store.output import GAP_MARKER
from asphalt.master.store.tables import Store

__all__ = ["GAP_MARKER", "Store"]
