"""The master's credentials: the admin and join token files, API tokens, worker secrets and
browser sessions. Secrets are handed out once; only their SHA-256 is stored."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import secrets
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from asphalt import log
from asphalt.errors import NotFound
from asphalt.master.store import Store
from asphalt.model.members import Token, Worker
from asphalt.model.records import Scope, new_id
from asphalt.protocol import join_token, parse_join
from asphalt.wire import replace

_log = log.get("asphalt.credentials")
ADMIN_FILE = "admin.token"
JOIN_FILE = "join.token"
JOIN_ID = "join"
ADMIN_NAME = "admin"
TOKEN_PREFIX = "asp_"
JOB_PREFIX = "asj_"  # a running job's token: asj_JOB_ATTEMPT_MAC, good while that attempt runs
JOB_KEY_FILE = "job.key"
SESSION_S = 12 * 3600
_TOUCH_EVERY_S = 60.0  # `last used` is written at most this often per token, not per request


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def matches(secret: str, secret_hash: str) -> bool:
    """Whether `secret` is the one behind `secret_hash`, in constant time."""
    return hmac.compare_digest(digest(secret), secret_hash)


def _new_secret() -> str:
    return secrets.token_hex(32)


def write_private(path: Path, text: str) -> None:
    """Write a file only the master's user can read (0600), replacing it whole."""
    partial = path.with_name(f".{path.name}.{os.getpid()}.part")
    with contextlib.suppress(FileNotFoundError):
        partial.unlink()
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as file:
        file.write(text + "\n")
        file.flush()
        os.fsync(file.fileno())
    os.replace(partial, path)


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip() or None
    except FileNotFoundError:
        return None


class Credentials:
    """Who holds what: checks secrets against stored hashes and issues new ones."""

    def __init__(
        self,
        store: Store,
        data_dir: Path,
        *,
        fingerprint: str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._dir = data_dir
        self._fingerprint = fingerprint
        self.now = clock
        self._tokens = {t.id: t for t in store.tokens()}
        self._touched: dict[str, float] = {}
        self._drop_expired()
        self.admin_token = self._admin_file()
        self.join_token = self._join_file()
        self._job_key = self._job_key_file()
        # The master's own worker joins with this one, kept in memory only: a worker that joins
        # with it dies with this process, and the next start knows its jobs died too.
        self._embedded = _new_secret()
        self.embedded_join = join_token(self._embedded, fingerprint)

    # the two files made at first start

    def _admin_file(self) -> str:
        path = self._dir / ADMIN_FILE
        held = _read(path)
        if held is not None and self.api(held, touch=False) is not None:
            return held
        # No file, or its token was revoked: a new one, so the master's user always has one.
        if held is not None:  # the file's own token, if it still names one: it is replaced
            self._forget([held.removeprefix(TOKEN_PREFIX).partition("_")[0]])
        _, secret = self.create(ADMIN_NAME, Scope.ADMIN, ())
        write_private(path, secret)
        _log.info("admin_token_made", file=str(path))
        return secret

    def _join_file(self) -> str:
        path = self._dir / JOIN_FILE
        held = _read(path)
        stored = self._tokens.get(JOIN_ID)
        parsed = parse_join(held) if held else None
        if parsed is not None and stored is not None and matches(parsed[0], stored.secret_hash):
            token = join_token(parsed[0], self._fingerprint)
            if token != held:  # TLS turned on or off, or a new certificate: a new pin
                write_private(path, token)
            return token
        return self._new_join()

    def _new_join(self) -> str:
        secret = _new_secret()
        record = Token(
            id=JOIN_ID,
            name="join",
            scope=Scope.JOIN,
            secret_hash=digest(secret),
            created_at=self.now(),
        )
        self._keep(record)
        token = join_token(secret, self._fingerprint)
        write_private(self._dir / JOIN_FILE, token)
        _log.info("join_token_made", file=str(self._dir / JOIN_FILE))
        return token

    def _job_key_file(self) -> bytes:
        """The key job tokens are signed with: nothing per job is stored, and a token is dead
        once its attempt is not running (the guard asks the job), even across restarts."""
        path = self._dir / JOB_KEY_FILE
        held = _read(path)
        if held is None:
            held = _new_secret()
            write_private(path, held)
        return held.encode()

    def _job_mac(self, job_id: str, attempt: int) -> str:
        message = f"{job_id}:{attempt}".encode()
        return hmac.new(self._job_key, message, hashlib.sha256).hexdigest()

    def job_token(self, job_id: str, attempt: int) -> str:
        """The credential one attempt of a job gets as ASPHALT_JOB_TOKEN."""
        return f"{JOB_PREFIX}{job_id}_{attempt}_{self._job_mac(job_id, attempt)}"

    def job_of(self, presented: str) -> tuple[str, int] | None:
        """The (job id, attempt) a job token was made for, if it is one of this master's."""
        job_id, _, rest = presented.removeprefix(JOB_PREFIX).partition("_")
        attempt, _, mac = rest.partition("_")
        if not presented.startswith(JOB_PREFIX) or not attempt.isascii() or not attempt.isdigit():
            return None
        if len(attempt) > 10 or not mac.isascii():  # no int of it, nor a digest to compare
            return None
        if not hmac.compare_digest(mac, self._job_mac(job_id, int(attempt))):
            return None
        return job_id, int(attempt)

    def rotate_join(self) -> str:
        """A new join token; the old one registers no worker from now on."""
        self.join_token = self._new_join()
        return self.join_token

    def embedded(self, token: str) -> bool:
        """Whether `token` is the one this process gave its own worker."""
        parsed = parse_join(token)
        return parsed is not None and hmac.compare_digest(parsed[0], self._embedded)

    def join_ok(self, token: str) -> bool:
        if self.embedded(token):
            return True
        parsed = parse_join(token)
        stored = self._tokens.get(JOIN_ID)
        return parsed is not None and stored is not None and matches(parsed[0], stored.secret_hash)

    # API tokens

    def create(self, name: str, scope: Scope, projects: Iterable[str]) -> tuple[Token, str]:
        """A new API token and its secret, which is shown this once."""
        token_id = new_id(6)
        secret = _new_secret()
        record = Token(
            id=token_id,
            name=name,
            scope=scope,
            secret_hash=digest(secret),
            created_at=self.now(),
            projects=tuple(projects),
        )
        self._keep(record)
        return record, f"{TOKEN_PREFIX}{token_id}_{secret}"

    def api(self, presented: str, *, touch: bool = True) -> Token | None:
        """The API token behind a bearer secret, or None."""
        token_id, _, secret = presented.removeprefix(TOKEN_PREFIX).partition("_")
        record = self._tokens.get(token_id)
        if not presented.startswith(TOKEN_PREFIX) or record is None or record.parent:
            return None
        if record.scope is Scope.JOIN or not matches(secret, record.secret_hash):
            return None
        return self._touch(record) if touch else record

    def listed(self) -> list[Token]:
        """The API tokens people made (not the join token, not sessions), oldest first."""
        found = [t for t in self._tokens.values() if t.scope is not Scope.JOIN and not t.parent]
        return sorted(found, key=lambda t: t.created_at)

    def revoke(self, token_id: str) -> Token:
        """Remove an API token and every session made from it, at once."""
        record = self._tokens.get(token_id)
        if record is None or record.scope is Scope.JOIN or record.parent:
            raise NotFound(f"no token {token_id!r}; list them with GET /tokens", field="token")
        sessions = [t.id for t in self._tokens.values() if t.parent == token_id]
        self._forget([token_id, *sessions])
        _log.info("token_revoked", token=token_id, name=record.name, sessions=len(sessions))
        return record

    # browser sessions

    def login(self, presented: str) -> str | None:
        """A session cookie for a browser that gave a valid API token; None if it is not."""
        parent = self.api(presented)
        if parent is None:
            return None
        secret = _new_secret()
        session = Token(
            id=new_id(8),
            name=f"session of {parent.name}",
            scope=parent.scope,
            secret_hash=digest(secret),
            created_at=self.now(),
            projects=parent.projects,
            parent=parent.id,
            expires_at=self.now() + SESSION_S,
        )
        self._keep(session)
        return f"{session.id}.{secret}"

    def session(self, cookie: str) -> Token | None:
        """The token a session cookie stands for (its parent's scope), or None."""
        session_id, _, secret = cookie.partition(".")
        record = self._tokens.get(session_id)
        if record is None or record.parent is None or record.parent not in self._tokens:
            return None
        if (record.expires_at or 0) < self.now() or not matches(secret, record.secret_hash):
            return None
        return self._touch(self._tokens[record.parent])

    def logout(self, cookie: str) -> None:
        session_id = cookie.partition(".")[0]
        record = self._tokens.get(session_id)
        if record is not None and record.parent is not None:
            self._forget([session_id])

    # workers

    @staticmethod
    def worker_secret() -> tuple[str, str]:
        """A new worker credential and the hash to keep on its record."""
        secret = _new_secret()
        return secret, digest(secret)

    @staticmethod
    def worker_ok(worker: Worker, presented: str) -> bool:
        return bool(worker.secret_hash) and matches(presented, worker.secret_hash)

    # keeping records

    def _keep(self, token: Token) -> None:
        self._store.save_token(token)
        self._tokens[token.id] = token

    def _forget(self, ids: list[str]) -> None:
        ids = [i for i in ids if i in self._tokens]
        if ids:
            self._store.delete_tokens(ids)
            for token_id in ids:
                self._tokens.pop(token_id, None)

    def _touch(self, token: Token) -> Token:
        now = self.now()
        if now - self._touched.get(token.id, 0.0) >= _TOUCH_EVERY_S:
            self._touched[token.id] = now
            self._keep(replace(token, last_used=now))
        return self._tokens[token.id]

    def _drop_expired(self) -> None:
        now = self.now()
        expired = [t.id for t in self._tokens.values() if t.expires_at and t.expires_at < now]
        self._forget(expired)
