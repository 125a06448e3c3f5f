"""The file a job's $ASPHALT_OUTPUTS names: made empty on the worker for each attempt, shown to
the job by its runtime (copied into and out of a container as a tar archive), read back with a
bound on its size and never through a link."""

from __future__ import annotations

import errno
import io
import os
import shutil
import stat
import tarfile
import time
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

from asphalt.worker.outputs import ENV, FILE_LIMIT, OutputsError

from .base import RuntimeFailure

# Where a job in a container finds it: a directory of its own, outside what an image is likely
# to hold, that whatever user the image runs as may write.
IN_CONTAINER_DIR = "/.asphalt"
IN_CONTAINER = f"{IN_CONTAINER_DIR}/outputs"
NOT_A_FILE = f"{ENV} is not a regular file"
TOO_BIG = f"{ENV} is over 1 MiB"
_READ_SIZE = 65536


class OutputsFile:
    """One attempt's outputs file, on this machine, in a private directory of the runner's.

    A host job writes it where it is. A runtime that runs the job elsewhere gives the job a path
    of its own and, once the job has ended, brings what is there back with `copy_archive`.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._refused: str | None = None  # why what the job left cannot be used, if known

    @classmethod
    def create(cls, directory: Path) -> OutputsFile:
        """An empty outputs file in `directory`, which only this worker's user may enter."""
        path = directory / "outputs"
        try:
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600))
        except OSError as e:
            raise RuntimeFailure(f"cannot make the job's outputs file {path}: {e.strerror}") from e
        return cls(path)

    def env(self, path_in_job: str | None = None) -> Mapping[str, str]:
        """The variable that tells the job where to write (by default, this file's own path)."""
        return {ENV: path_in_job or str(self.path)}

    def refuse(self, why: str) -> None:
        """Remember that what the job left cannot be used: `read` raises it."""
        self._refused = why

    def read(self) -> bytes:
        """What the job wrote: at most FILE_LIMIT bytes, or OutputsError; none if it is gone.

        A link, a directory or a pipe in its place is refused, never followed or waited on.
        """
        if self._refused is not None:
            raise OutputsError(self._refused)
        flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
        try:
            fd = os.open(self.path, flags)
        except FileNotFoundError:
            return b""
        except OSError as e:
            why = NOT_A_FILE if e.errno == errno.ELOOP else f"{ENV} cannot be read: {e.strerror}"
            raise OutputsError(why) from None
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise OutputsError(NOT_A_FILE)
            pieces, size = [], 0
            while size <= FILE_LIMIT and (piece := os.read(fd, FILE_LIMIT + 1 - size)):
                pieces.append(piece)
                size += len(piece)
        except OSError as e:
            raise OutputsError(f"{ENV} cannot be read: {e.strerror}") from None
        finally:
            os.close(fd)
        if size > FILE_LIMIT:
            raise OutputsError(TOO_BIG)
        return b"".join(pieces)

    def copy_archive(self, archive: Iterable[bytes]) -> None:
        """Take the file back from a tar archive of it (what Docker gives of a container's path).

        Only a regular file's bytes are taken, and no more than FILE_LIMIT of them; anything
        else is refused as a host job's would be. Blocking: call it in a thread.
        """
        try:
            with tarfile.open(fileobj=io.BufferedReader(_Chunks(archive)), mode="r|") as tar:
                member = tar.next()
                source = tar.extractfile(member) if member is not None and member.isfile() else None
                if member is None or source is None:
                    self.refuse(NOT_A_FILE)
                elif member.size > FILE_LIMIT:
                    self.refuse(TOO_BIG)
                else:
                    with self.path.open("wb") as target:
                        shutil.copyfileobj(source, target, _READ_SIZE)
        except (tarfile.TarError, OSError) as e:
            self.refuse(f"{ENV} could not be copied out of the container: {e}")


def container_archive() -> bytes:
    """A tar archive of IN_CONTAINER_DIR (writable by every user) holding an empty outputs file,
    to unpack at the root of a container before it starts."""
    now = time.time()
    folder = tarfile.TarInfo(IN_CONTAINER_DIR.lstrip("/"))
    folder.type, folder.mode, folder.mtime = tarfile.DIRTYPE, 0o777, now
    file = tarfile.TarInfo(IN_CONTAINER.lstrip("/"))
    file.mode, file.mtime = 0o666, now
    packed = io.BytesIO()
    with tarfile.open(fileobj=packed, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        tar.addfile(folder)
        tar.addfile(file, io.BytesIO())
    return packed.getvalue()


class _Chunks(io.RawIOBase):
    """A readable stream over an iterable of byte strings (what the Docker SDK streams)."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._chunks: Iterator[bytes] = iter(chunks)
        self._rest = memoryview(b"")

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        while not self._rest:
            chunk = next(self._chunks, None)
            if chunk is None:
                return 0
            self._rest = memoryview(chunk)
        size = min(len(buffer), len(self._rest))
        memoryview(buffer)[:size] = self._rest[:size]
        self._rest = self._rest[size:]
        return size
