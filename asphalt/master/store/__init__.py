"""The durable store: LMDB tables of msgpack records; the only package that imports either."""

from asphalt.master.store.tables import CUT_MARKER, Store

__all__ = ["CUT_MARKER", "Store"]
