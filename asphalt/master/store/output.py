"""The output table: what a job attempt printed, kept within the output cap as its start and its
end, each piece with the stream it came from.

A piece's key is the attempt's prefix, the piece's place in everything the job printed (its
offset), and its stream; stdout and stderr interleave in the order the worker read them. Past
the cap the first `head_size` bytes stay and the end rolls: the oldest pieces after the head go
as new ones come. Where pieces are missing a reader gets one marker saying how many bytes were
dropped there. Keys of releases before streams have no stream byte: they are stdout.
"""

from __future__ import annotations

import struct
from typing import NamedTuple

from asphalt.errors import Conflict
from asphalt.master.store import keys, records
from asphalt.master.store.migrations import Tables
from asphalt.protocol import STDOUT, Frame

HEAD = 1 << 20  # the start of a job's output that is kept however much it prints
_OFFSET = struct.Struct(">Q")
GAP_MARKER = "\n[asphalt: {dropped} bytes of output dropped here; the start and the end are kept]\n"


class Read(NamedTuple):
    data: bytes  # what is kept from `start` on (of one stream, if asked), with gap markers
    end: int  # the offset after the last piece looked at: where to read on from
    last: int  # the offset after the last piece in `data` (`start` if there is none)


def head_size(cap: int) -> int:
    """How much of the start is kept: 1 MiB, or half of a smaller cap."""
    return min(HEAD, cap // 2)


def append(
    tables: Tables, job_id: str, attempt: int, offset: int, frames: list[Frame], cap: int
) -> int:
    """Add pieces received at `offset`, dropping resent bytes; return the length received."""
    prefix = keys.output_prefix(job_id, attempt)
    meta = tables.get("outmeta", prefix)
    received, kept = records.unpack_value(meta) if meta else (0, 0)
    received, kept = int(received), int(kept)
    if offset > received:
        raise Conflict(f"output offset {offset} is past the {received} bytes received")
    skip = received - offset
    head = head_size(cap)
    for stream, data in frames:
        if skip >= len(data):
            skip -= len(data)
            continue
        data, skip = data[skip:], 0
        if received < head:  # the head ends at a piece's end, so it never rolls
            part = data[: head - received]
            tables.put("output", _key(prefix, received, stream), part)
            received, kept, data = received + len(part), kept + len(part), data[len(part) :]
        if data:
            tables.put("output", _key(prefix, received, stream), data)
            received, kept = received + len(data), kept + len(data)
    if kept > cap:
        kept -= _drop(tables, prefix, head, kept - cap)
    tables.put("outmeta", prefix, records.pack_value((received, kept)))
    return received


def received(tables: Tables, job_id: str, attempt: int) -> int:
    """How many bytes the attempt printed, kept or not."""
    meta = tables.get("outmeta", keys.output_prefix(job_id, attempt))
    return int(records.unpack_value(meta)[0]) if meta else 0


def read(
    tables: Tables, job_id: str, attempt: int, start: int = 0, stream: int | None = None
) -> Read:
    """What is kept of the attempt's output from offset `start` on, of one stream or both."""
    prefix = keys.output_prefix(job_id, attempt)
    parts: list[bytes] = []
    position = last = start
    dropped = 0
    for key, value in tables.around("output", prefix, prefix + _OFFSET.pack(start)):
        at, piece_stream = _parse(prefix, key)
        end = at + len(value)
        if end <= start:
            continue
        if at > position:
            dropped += at - position
        position = end
        if stream is None or piece_stream == stream:
            if dropped:
                parts.append(GAP_MARKER.format(dropped=dropped).encode())
                dropped = 0
            parts.append(value[max(0, start - at) :])
            last = end
    return Read(b"".join(parts), position, last)


def _key(prefix: bytes, offset: int, stream: int) -> bytes:
    return prefix + _OFFSET.pack(offset) + bytes((stream,))


def _parse(prefix: bytes, key: bytes) -> tuple[int, int]:
    """A piece's offset and stream from its key."""
    rest = key[len(prefix) :]
    return _OFFSET.unpack_from(rest)[0], rest[_OFFSET.size] if len(rest) > _OFFSET.size else STDOUT


def _drop(tables: Tables, prefix: bytes, head: int, excess: int) -> int:
    """Drop `excess` bytes from the oldest pieces after the head; return how many went."""
    gone: list[bytes] = []
    cut: tuple[bytes, bytes] | None = None
    left = excess
    for key, value in tables.around("output", prefix, prefix + _OFFSET.pack(head)):
        at, stream = _parse(prefix, key)
        if at < head:
            continue
        gone.append(key)
        if len(value) > left:
            cut = (_key(prefix, at + left, stream), value[left:])
            left = 0
            break
        left -= len(value)
        if not left:
            break
    for key in gone:
        tables.delete("output", key)
    if cut is not None:
        tables.put("output", *cut)
    return excess - left
