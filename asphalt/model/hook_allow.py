"""Where webhooks and task callbacks may point (`-hook-allow`): networks and domain names. Pure.

With nothing given, anywhere: this is a LAN tool and most receivers are on the LAN. Given, a URL
is allowed if its host is a name within an allowed domain (`example.com` also allows
`ci.example.com`), or if the address it is sent to lies in an allowed network (`10.0.0.0/8`,
`192.168.1.20`). Names are judged again by the addresses they resolve to when each delivery is
sent, so a name that moves is not followed out of the allowed networks.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Sequence
from urllib.parse import urlsplit

from asphalt.errors import BadRequest

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address
_NUMERIC = re.compile(r"[0-9.]+")
_DOMAIN = re.compile(r"(?:\*\.)?([a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9-]{1,63})*)")


class HookAllow:
    def __init__(self, items: Sequence[str] = ()) -> None:
        self.networks: list[Network] = []
        self.domains: list[str] = []
        for item in items:
            try:
                self.networks.append(ipaddress.ip_network(item, strict=False))
                continue
            except ValueError:
                pass
            match = _DOMAIN.fullmatch(item.lower().rstrip("."))
            if match is not None and _NUMERIC.fullmatch(match.group(1)):
                raise ValueError(
                    f"-hook-allow {item!r} looks like part of an address: give a network such "
                    "as 192.168.1.0/24, or a whole address"
                )
            if match is None:
                raise ValueError(
                    f"-hook-allow {item!r}: give a network (10.0.0.0/8, 192.168.1.20) or a "
                    "domain name (example.com)"
                )
            self.domains.append(match.group(1))
        self.items = tuple(items)

    @property
    def everywhere(self) -> bool:
        return not self.items

    def name_allowed(self, host: str) -> bool:
        """Whether a host name lies in an allowed domain (then any address it has will do); an
        address, in any of its spellings, is never a name."""
        if self.everywhere:
            return True
        host = host.lower().rstrip(".")
        if literal(host) is not None:
            return False
        return any(host == d or host.endswith("." + d) for d in self.domains)

    def address_allowed(self, address: str) -> bool:
        if self.everywhere:
            return True
        ip = literal(address)
        return ip is not None and any(ip in network for network in self.networks)

    def check(self, url: str, *, field: str) -> None:
        """Refuse, with a 400 naming `field`, a URL no send could be allowed to reach: an
        address outside the networks, or a name outside the domains when no network is
        allowed. Any other name is judged by its addresses when it is sent to."""
        host = urlsplit(url).hostname or ""
        if self.name_allowed(host) or self.address_allowed(host):
            return
        if literal(host) is not None or not self.networks:
            raise BadRequest(
                f"{host} is not among the places hooks may reach (-hook-allow "
                f"{','.join(self.items)}); ask the master's operator to allow it",
                field=field,
            )


def literal(host: str) -> Address | None:
    """The address a host is, if it is one: in any spelling the system's resolver reads as one
    (127.1, 2130706433, 0x7f.1), and an IPv4 address mapped into IPv6 as the IPv4 one."""
    text = host.strip("[]").split("%", 1)[0].rstrip(".")
    try:
        ip: Address = ipaddress.ip_address(text)
    except ValueError:
        try:
            ip = ipaddress.IPv4Address(socket.inet_aton(text))
        except OSError:
            return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip
