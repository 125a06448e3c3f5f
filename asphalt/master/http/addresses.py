"""The master's own names and addresses: what a Host header may name, and the URLs it prints."""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import socket
import struct
from urllib.parse import urlsplit

from asphalt.config import MasterConfig

_SIOCGIFADDR = 0x8915
WILDCARDS = ("0.0.0.0", "::", "")


def interface_addresses() -> list[str]:
    """The IPv4 address of each interface of this machine that has one, loopback last."""
    found: list[str] = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        for _, name in socket.if_nameindex():
            request = struct.pack("256s", name.encode()[:15])
            with contextlib.suppress(OSError):
                answer = fcntl.ioctl(probe.fileno(), _SIOCGIFADDR, request)
                found.append(socket.inet_ntoa(answer[20:24]))
    return sorted(found, key=lambda a: ipaddress.ip_address(a).is_loopback)


def own_names(config: MasterConfig) -> frozenset[str]:
    """Names beside loopback that a Host header may give to reach this master."""
    names = {socket.gethostname(), socket.getfqdn(), *config.allow_hosts}
    if config.public_url:
        names.add(urlsplit(config.public_url).hostname or "")
    if config.host not in WILDCARDS:
        names.add(config.host)
    names.update(interface_addresses())
    return frozenset(n.lower().strip("[]") for n in names if n)


def reachable_host(config: MasterConfig) -> str:
    """A host other machines can use for this master (not a wildcard address)."""
    if config.host not in WILDCARDS:
        return config.host
    outside = [a for a in interface_addresses() if not ipaddress.ip_address(a).is_loopback]
    return outside[0] if outside else "127.0.0.1"


def _netloc(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def public_base(config: MasterConfig) -> str:
    """The URL a person opens, e.g. http://10.0.1.7:8080 (never 0.0.0.0)."""
    if config.public_url:
        return config.public_url.rstrip("/")
    return f"{config.scheme}://{_netloc(reachable_host(config), config.port)}"


def local_base(config: MasterConfig) -> str:
    """The URL of this master from its own box (what the embedded worker uses)."""
    host = "127.0.0.1" if config.host in WILDCARDS else config.host
    return f"{config.scheme}://{_netloc(host, config.port)}"


def worker_command(config: MasterConfig) -> str:
    """The command that starts a worker for this master, but for `-join TOKEN`."""
    base = public_base(config)
    master = base if config.scheme == "https" else base.removeprefix("http://")
    return f"asphalt -master {master}"


def beyond_loopback(config: MasterConfig) -> bool:
    if config.host in WILDCARDS:
        return True
    with contextlib.suppress(ValueError):
        return not ipaddress.ip_address(config.host).is_loopback
    return config.host != "localhost"
