"""Zeroconf (mDNS): a master advertises itself, and `-master auto` finds one on the network.

The only module that imports zeroconf. Both sides can be held to one interface (tests use
127.0.0.1) so nothing is sent where it should not go.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from zeroconf import IPVersion, ServiceInfo, ServiceStateChange, Zeroconf
from zeroconf.asyncio import AsyncServiceBrowser, AsyncServiceInfo, AsyncZeroconf

from asphalt.errors import Unavailable

SERVICE = "_asphalt._tcp.local."


def _zeroconf(interface: str | None) -> AsyncZeroconf:
    if interface:
        return AsyncZeroconf(interfaces=[interface], ip_version=IPVersion.V4Only)
    return AsyncZeroconf(ip_version=IPVersion.V4Only)


@asynccontextmanager
async def advertised(
    name: str, address: str, port: int, *, scheme: str = "http"
) -> AsyncIterator[None]:
    """Announce a master at address:port while the block runs (0.0.0.0: every interface)."""
    interface = None if address in ("0.0.0.0", "") else address
    addresses = [socket.inet_aton(address)] if interface else []
    zc = _zeroconf(interface)
    info = ServiceInfo(
        SERVICE,
        f"{name}.{SERVICE}",
        addresses=addresses or None,
        port=port,
        properties={"path": "/", "scheme": scheme},
        server=f"{name}.local.",
    )
    await zc.async_register_service(info, allow_name_change=True)
    try:
        yield
    finally:
        await zc.async_unregister_service(info)
        await zc.async_close()


async def find_master(
    *,
    interface: str | None = None,
    timeout_s: float = 10.0,
    accept: Callable[[str], Awaitable[bool]] | None = None,
) -> str:
    """The URL of the first master that answers on the network (and that `accept` takes:
    a worker passes a check of its pin, so a master that cannot prove it is passed over)."""
    zc = _zeroconf(interface)
    names: asyncio.Queue[str] = asyncio.Queue()

    def seen(
        zeroconf: Zeroconf, service_type: str, name: str, state_change: ServiceStateChange
    ) -> None:
        if state_change is ServiceStateChange.Added:
            names.put_nowait(name)

    browser = AsyncServiceBrowser(zc.zeroconf, SERVICE, handlers=[seen])
    try:
        async with asyncio.timeout(timeout_s):
            while True:
                info = AsyncServiceInfo(SERVICE, await names.get())
                if await info.async_request(zc.zeroconf, 3000) and info.parsed_addresses():
                    scheme = (info.properties.get(b"scheme") or b"http").decode()
                    url = f"{scheme}://{info.parsed_addresses()[0]}:{info.port}"
                    if accept is None or await accept(url):
                        return url
    except TimeoutError as e:
        raise Unavailable(
            f"no asphalt master answered on the network within {timeout_s:g} s"
        ) from e
    finally:
        await browser.async_cancel()
        await zc.async_close()
