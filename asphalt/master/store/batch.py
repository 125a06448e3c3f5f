"""The LMDB environment (the one module that imports lmdb) and its group commit: the writes of
one event-loop turn share one transaction and one fsync."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import lmdb

from asphalt import log
from asphalt.errors import StoreFull

if TYPE_CHECKING:
    Txn = lmdb.Transaction[bytes]

T = TypeVar("T")
_log = log.get("asphalt.store")
_BATCH_ROOM = 64 << 20  # with less free room than this in the map, writes are not grouped
_PATH_PAGES = 8  # pages a put may copy on its way down the tree (copy-on-write)


def open_env(path: Path, *, map_size: int, max_dbs: int) -> lmdb.Environment:
    """The store's LMDB environment, in the directory `path`."""
    # The store holds job secrets and token hashes: only the master's user may read it.
    return lmdb.open(str(path), map_size=map_size, max_dbs=max_dbs, subdir=True, mode=0o600)


class Batches:
    """Writes made while an event loop runs, grouped.

    Each write is a child transaction of the open batch, so a write that fails leaves nothing
    behind in it; the batch is committed (one fsync) once the loop has run every callback that
    was ready with the first write. Reads see the open batch, so memory and reads agree at once;
    nothing that leaves the process may reflect a write before `flushed()` returns (the HTTP
    layer awaits it before every answer). Without a running loop a write commits at once.
    """

    def __init__(self, env: lmdb.Environment) -> None:
        self._env = env
        self._page = int(env.stat()["psize"])
        self._batch: Txn | None = None
        self._done: asyncio.Future[None] | None = None
        self._bound = 0  # how much the open batch may have grown the store, at most
        self._limit = 0
        self._after: list[Callable[[], None]] = []  # run once the open batch is committed

    async def flushed(self) -> None:
        """Return once every write made so far is committed and on disk."""
        if self._done is not None:
            await asyncio.shield(self._done)

    def write(self, fn: Callable[[Txn], T]) -> T:
        batch = self._current()
        try:
            if batch is None:
                with self._env.begin(write=True) as txn:
                    return fn(txn)
            with self._env.begin(write=True, parent=batch) as child:
                return fn(child)
        except lmdb.MapFullError as e:
            raise StoreFull() from e

    def after_commit(self, fn: Callable[[], None]) -> None:
        """Call `fn` once every write made so far is committed: now, if none is pending."""
        if self._batch is None:
            fn()
        else:
            self._after.append(fn)

    def grew(self, nbytes: int) -> None:
        """Count a put of nbytes (or a delete, with 0) toward the batch's size."""
        self._bound += 2 * nbytes + _PATH_PAGES * self._page

    @contextlib.contextmanager
    def reading(self) -> Iterator[Txn]:
        """The open batch (so a read sees the writes before it), else a read transaction."""
        if self._batch is not None:
            yield self._batch
        else:
            with self._env.begin() as txn:
                yield txn

    def commit(self) -> None:
        """Commit the open batch, synced (LMDB syncs its pages, then the meta page); wake its
        waiters. On this loop, as the write lock LMDB took for the batch belongs to this thread."""
        batch, done = self._batch, self._done
        self._batch = self._done = None
        if batch is None:
            return
        try:
            batch.commit()
        except lmdb.Error as e:
            # Memory already holds the batch's writes and nobody was told of them yet: stop,
            # so that a restart rebuilds memory from what the store really holds.
            _log.critical("store_commit_failed", error=str(e), action="stopping the master")
            os._exit(70)
        if done is not None and not done.done():
            done.set_result(None)
        after, self._after = self._after, []
        for fn in after:
            fn()  # the events' own loop keeps a subscriber's failure from reaching here

    def usage(self) -> tuple[int, int]:
        """(bytes the store's pages take up, the size of its map): what is left is free room."""
        info = self._env.info()
        return (int(info["last_pgno"]) + 1) * self._page, int(info["map_size"])

    def _current(self) -> Txn | None:
        if self._batch is not None and self._bound > self._limit:
            self.commit()  # a big batch goes now, so that its commit is sure to find room
        if self._batch is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                return None
            info = self._env.info()
            room = int(info["map_size"]) - (int(info["last_pgno"]) + 1) * self._page
            if room < _BATCH_ROOM:
                # Near full, a commit that finds no room would lose every write in its batch:
                # then each write is committed alone, and one that does not fit is refused.
                return None
            self._batch = self._env.begin(write=True)
            self._done = loop.create_future()
            self._bound, self._limit = 0, room // 2
            # Runs after every callback that is ready now, so one loop turn shares one sync.
            loop.call_soon(self.commit)
        return self._batch
