"""Sends one job attempt's output to the master in chunks (about once a second or 64 KiB, and
up to 512 KiB at once when the job prints faster than they go)."""

from __future__ import annotations

import asyncio

from asphalt import log
from asphalt.protocol import FRAME_HEADER, MAX_FRAMES, STDOUT, Frame
from asphalt.worker.client import MasterClient, MasterError, Stale

_log = log.get("asphalt.uploader")
# What one request carries at most. A job that prints faster than the master takes it has this
# much gathered while a send is on its way, so each of the master's syncs stores more of it.
PIECE_MAX = 512 << 10
RUN_COST = 64  # what a run of one stream costs in memory beside its bytes (the buffer's cap)


class Uploader:
    """Buffers output and sends it with its byte offset, so a resent chunk is never stored twice."""

    def __init__(
        self,
        client: MasterClient,
        worker: str,
        job: str,
        attempt: int,
        *,
        flush_bytes: int,
        buffer_cap: int = 16 << 20,
    ) -> None:
        self._client = client
        self._worker, self._job, self._attempt = worker, job, attempt
        self._flush_bytes = flush_bytes
        self._buffer: list[tuple[int, bytearray]] = []  # runs of one stream each, oldest first
        self._size = 0  # bytes in the buffer
        self._buffer_cap = buffer_cap
        self._dropped = 0  # bytes not kept while the master was away and the buffer was full
        self._sent = 0
        self._lock = asyncio.Lock()
        self._sending: asyncio.Future[bool] | None = None  # a send started by write, owned by pump
        self.stale = False  # the master gave this attempt to someone else; stop sending

    async def write(self, chunk: bytes, stream: int = STDOUT) -> None:
        if self._held() >= self._buffer_cap:
            # The master is away and the buffer is full: memory stays bounded, and a marker
            # says what was left out (offsets count what is sent, so they stay consistent).
            self._dropped += len(chunk)
            return
        if self._dropped:
            lost = f"\n[asphalt: {self._dropped} bytes of output lost; the master was away]\n"
            self._add(stream, lost.encode())
            self._dropped = 0
        self._add(stream, chunk)
        if self._size < self._flush_bytes:
            return
        # Sent in the background while the job's output is read on, so the next send carries
        # all that came meanwhile; past PIECE_MAX the job waits for the send (back-pressure).
        if self._sending is None or self._sending.done():
            if self._sending is not None and not self._sending.cancelled():
                self._sending.result()  # one that failed outright stops the job, as a sink's would
            self._sending = asyncio.ensure_future(self.flush())
        elif self._held() >= PIECE_MAX:
            await asyncio.shield(self._sending)

    async def flush(self) -> bool:
        """Send what is buffered; False if the master could not take it (kept for next time)."""
        async with self._lock:
            while self._buffer and not self.stale:
                piece = self._piece()
                try:
                    received = await self._client.output(
                        self._worker, self._job, self._attempt, self._sent, piece
                    )
                except Stale:
                    self.stale = True
                    self._buffer.clear()
                    self._size = 0
                    return False
                except MasterError as e:
                    _log.warning("output_send_failed", job=self._job, error=str(e))
                    return False
                self._taken(received - self._sent)
                self._sent = received
            return True

    def _held(self) -> int:
        """What the buffer holds, its runs' own cost counted."""
        return self._size + RUN_COST * len(self._buffer)

    def _add(self, stream: int, data: bytes) -> None:
        if self._buffer and self._buffer[-1][0] == stream:
            self._buffer[-1][1].extend(data)
        else:
            self._buffer.append((stream, bytearray(data)))
        self._size += len(data)

    def _piece(self) -> list[Frame]:
        """Up to PIECE_MAX from the front of the buffer, run by run, frame headers counted, and
        at most MAX_FRAMES runs: a job that switches streams byte by byte still sends bodies the
        master takes, and each takes the master a moment only."""
        piece: list[Frame] = []
        room = max(self._flush_bytes, PIECE_MAX)
        for stream, run in self._buffer:
            room -= FRAME_HEADER
            if room <= 0 or len(piece) == MAX_FRAMES:
                break
            piece.append((stream, bytes(run[:room])))
            room -= len(run)
        return piece

    def _taken(self, size: int) -> None:
        """Forget the first `size` bytes of the buffer: the master has them."""
        self._size -= size
        while size and self._buffer:
            run = self._buffer[0][1]
            if len(run) > size:
                del run[:size]
                return
            size -= len(run)
            self._buffer.pop(0)

    async def pump(self, interval_s: float) -> None:
        """Flush on a timer until cancelled, so slow output still shows up within a second;
        cancelled, it stops a send that write started (what it had is sent again later)."""
        try:
            while True:
                await asyncio.sleep(interval_s)
                await self.flush()
        finally:
            if self._sending is not None:
                self._sending.cancel()
                await asyncio.gather(self._sending, return_exceptions=True)
