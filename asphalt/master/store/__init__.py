"""The durable store: LMDB tables of msgpack records (lmdb in batch.py, msgpack in records.py)."""

from asphalt.master.store.tables import CUT_MARKER, Store

__all__ = ["CUT_MARKER", "Store"]
