"""Masks a job's secret values in its output before any of it leaves the worker."""

from __future__ import annotations

from collections.abc import Iterable
from typing import overload

from asphalt.model.records import MASK
from asphalt.worker.runtimes.base import OutputSink


class Masker:
    """An output sink that writes `***` for every secret value, even one split across pieces.

    The end of a piece that could be the start of a secret is held back until the next piece
    (or `flush`) shows whether it is one; nothing else waits.
    """

    def __init__(self, sink: OutputSink, secrets: Iterable[str]) -> None:
        self._sink = sink
        # Longest first, so a secret that contains another is masked whole.
        self._secrets = sorted({s.encode() for s in secrets if s}, key=len, reverse=True)
        self._held: dict[int, bytes] = {}  # by stream: a secret is split only within one

    async def write(self, chunk: bytes, stream: int) -> None:
        if not self._secrets:
            await self._sink(chunk, stream)
            return
        data = self._held.pop(stream, b"") + chunk
        cut = self._cut(data)
        if cut < len(data):
            self._held[stream] = data[cut:]
        if cut:
            await self._sink(self._mask(data[:cut]), stream)

    async def flush(self) -> None:
        """Send what was held back: the output has ended."""
        held, self._held = self._held, {}
        for stream, data in sorted(held.items()):
            # It may hold a whole secret: one that begins another, or overlaps itself.
            await self._sink(self._mask(data), stream)

    @overload
    def text(self, text: str) -> str: ...
    @overload
    def text(self, text: None) -> None: ...
    def text(self, text: str | None) -> str | None:
        """A message (a failure's reason, an output's value) with the secrets in it masked."""
        if text is None or not self._secrets:
            return text
        return self._mask(text.encode()).decode("utf-8", "replace")

    def _mask(self, data: bytes) -> bytes:
        for secret in self._secrets:
            data = data.replace(secret, MASK.encode())
        return data

    def _cut(self, data: bytes) -> int:
        """How much of `data` can go now: not an end that may begin a secret, and no secret
        cut in two (a shorter one inside a longer one that is still arriving)."""
        cut, moved = len(data) - self._partial(data), True
        while moved:  # a cut moved back may now fall inside another secret
            moved = False
            for secret in self._secrets:
                start = data.find(secret, max(0, cut - len(secret) + 1))
                if 0 <= start < cut < start + len(secret):
                    cut, moved = start, True
        return cut

    def _partial(self, data: bytes) -> int:
        """The length of the longest end of `data` that begins some secret."""
        longest = 0
        for secret in self._secrets:
            for size in range(min(len(secret) - 1, len(data)), longest, -1):
                if data.endswith(secret[:size]):
                    longest = size
                    break
        return longest
