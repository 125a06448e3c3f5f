"""How the webhook sender reaches the network within `-hook-allow` (model/hook_allow.py): its
connections resolve names through a resolver that gives only allowed addresses, so the check is
made on the address connected to, at each send, and a name that moves is not followed."""

from __future__ import annotations

import errno
import socket
from urllib.parse import urlsplit

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult

from asphalt.model.hook_allow import HookAllow, literal


class AllowedResolver(AbstractResolver):
    def __init__(self, allow: HookAllow) -> None:
        self._allow = allow
        self._resolver = aiohttp.DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        found = await self._resolver.resolve(host, port, family)
        if self._allow.name_allowed(host):
            return found
        kept = [r for r in found if self._allow.address_allowed(r["host"])]
        if not kept:
            addresses = ", ".join(sorted({r["host"] for r in found}))
            why = f"{host} is at {addresses}, which -hook-allow does not allow"
            raise OSError(errno.EACCES, why)  # aiohttp's error shows the strerror
        return kept

    async def close(self) -> None:
        await self._resolver.close()


def connector(allow: HookAllow) -> aiohttp.TCPConnector:
    """The sender's connector: every name it resolves is judged by its addresses."""
    return aiohttp.TCPConnector(resolver=None if allow.everywhere else AllowedResolver(allow))


def refusal(allow: HookAllow, url: str) -> str | None:
    """Why a send to `url` may not go, for a host that is an address in any spelling (those
    are not resolved, so the resolver cannot judge them)."""
    host = urlsplit(url).hostname or ""
    if literal(host) is None or allow.address_allowed(host):
        return None  # a name: the resolver judges what it resolves to
    return f"{host} is not an address -hook-allow allows"
