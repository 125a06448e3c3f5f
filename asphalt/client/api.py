"""The terminal client's HTTP calls to a master (urllib, blocking): where it is and who calls
(-master/ASPHALT_MASTER, -token/ASPHALT_TOKEN, or what `asphalt login` stored), JSON in and
out, errors as one line naming the field."""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DEFAULT_MASTER = "127.0.0.1:8080"  # on the master's own box no token is needed


class CallFailed(Exception):
    """A call the master refused or could not answer; the message is one line for people."""


def config_path() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "asphalt" / "login.json"


def stored() -> dict[str, str]:
    """What `asphalt login` stored ({"master", "token"}), if anything."""
    try:
        found = json.loads(config_path().read_text())
    except (OSError, ValueError):
        return {}
    return (
        {k: str(v) for k, v in found.items() if k in ("master", "token")}
        if isinstance(found, dict)
        else {}
    )


def store(master: str, token: str) -> Path:
    """Keep where and who for the next calls, readable by this user only."""
    path = config_path()
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)  # a file that was there keeps its mode otherwise: before the token
    with os.fdopen(fd, "w") as file:
        json.dump({"master": master, "token": token}, file)
    return path


def _local_admin(master: str) -> str | None:
    """On the master's box, its admin token where it keeps it by default (./asphalt-data), for
    a master started with -auth always; one with the default -auth local needs none."""
    host = master.split("://")[-1].rsplit(":", 1)[0].strip("[]")
    if host not in ("127.0.0.1", "localhost", "::1"):
        return None
    try:
        return (Path("asphalt-data") / "admin.token").read_text().strip() or None
    except OSError:
        return None


def base_url(master: str) -> str:
    return master.rstrip("/") if "://" in master else f"http://{master}"


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A redirect is answered as the error it is: following one would send the token on."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_OPENER = urllib.request.build_opener(_NoRedirects)


@dataclass(frozen=True)
class Api:
    base: str
    token: str | None = None

    @classmethod
    def find(cls, master: str | None, token: str | None) -> Api:
        """The flags, else the environment, else what login stored, else the local master."""
        saved = stored()
        where = master or os.environ.get("ASPHALT_MASTER") or saved.get("master") or DEFAULT_MASTER
        # What login kept is that master's token: never sent to another.
        kept = saved.get("token") if base_url(saved.get("master", "")) == base_url(where) else None
        who = token or os.environ.get("ASPHALT_TOKEN") or kept or _local_admin(where)
        return cls(base_url(where), who)

    def _request(self, method: str, path: str, body: Any = None) -> urllib.request.Request:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.base + path, data=data, method=method)
        request.add_header("Accept", "application/json")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        if self.token:
            request.add_header("Authorization", f"Bearer {self.token}")
        return request

    def call(self, method: str, path: str, body: Any = None, *, ok: tuple[int, ...] = ()) -> Any:
        """The answer's JSON; a 4xx or 5xx raises CallFailed (unless its status is in `ok`)."""
        try:
            with _OPENER.open(self._request(method, path, body), timeout=60) as answer:
                text = answer.read()
        except urllib.error.HTTPError as e:
            text = e.read()
            if e.code in ok:
                return _json(text)
            raise CallFailed(_sentence(e.code, text)) from None
        except (urllib.error.URLError, OSError) as e:
            reason = getattr(e, "reason", e)
            raise CallFailed(f"cannot reach the master at {self.base}: {reason}") from None
        return _json(text)

    def stream(self, path: str) -> Iterator[bytes]:
        """A GET's body as it comes (a followed output)."""
        try:
            # No read timeout: a job may be quiet for hours, and the master ends the stream.
            with _OPENER.open(self._request("GET", path), timeout=None) as answer:
                while chunk := answer.read1(65536):
                    yield chunk
        except urllib.error.HTTPError as e:
            raise CallFailed(_sentence(e.code, e.read())) from None
        except (urllib.error.URLError, OSError) as e:
            raise CallFailed(f"cannot reach the master at {self.base}: {e}") from None


def _json(text: bytes) -> Any:
    try:
        return json.loads(text) if text else None
    except ValueError:
        return text.decode("utf-8", "replace")


def _sentence(status: int, text: bytes) -> str:
    found = _json(text)
    if isinstance(found, dict) and "error" in found:
        field = f" [{found['field']}]" if found.get("field") else ""
        return f"{found['error']}{field} (HTTP {status})"
    return f"the master answered HTTP {status}"
