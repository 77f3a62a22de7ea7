"""Accept mode off (``no_accept``, or strict mode): a master drops traffic for its VIPs.

RFC 5798's Accept_Mode False means a router that is master but not the
address owner must not accept packets addressed to the VIPs.  As keepalived
2.2.7 does with nftables, the VIPs of such a master go into a set that an input
rule drops (by destination) and an output rule drops (by source); neighbour
discovery stays allowed so the VIP can still be resolved.  The rules live in
our own table, made on first use and removed at stop; the nft command carries
them to the kernel.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
from collections.abc import Iterable
from ipaddress import IPv4Address, IPv6Address

log = logging.getLogger("keepalived_py.vrrp")

IPAddress = IPv4Address | IPv6Address
TABLE = "keepalived_py"

_SETUP = f"""
table inet {TABLE} {{
    set vips4 {{ type ipv4_addr; }}
    set vips6 {{ type ipv6_addr; }}
    chain in {{
        type filter hook input priority -1; policy accept;
        icmpv6 type {{ nd-neighbor-solicit, nd-neighbor-advert }} accept
        ip daddr @vips4 drop
        ip6 daddr @vips6 drop
    }}
    chain out {{
        type filter hook output priority -1; policy accept;
        icmpv6 type {{ nd-neighbor-solicit, nd-neighbor-advert }} accept
        ip saddr @vips4 drop
        ip6 saddr @vips6 drop
    }}
}}
"""


class FirewallError(RuntimeError):
    pass


class AcceptModeFirewall:
    def __init__(self, nft: str | None = None) -> None:
        self.nft = nft or shutil.which("nft") or "/usr/sbin/nft"
        self._ready = False

    async def _run(self, script: str) -> None:
        try:
            proc = await asyncio.create_subprocess_exec(
                self.nft, "-f", "-", stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        except OSError as err:
            raise FirewallError(f"cannot run {self.nft} (no_accept needs nftables): {err}") \
                from err
        _, err = await proc.communicate(script.encode())
        if proc.returncode:
            raise FirewallError(f"nft: {err.decode(errors='replace').strip()}")

    async def clean_start(self) -> None:
        """Drop a table left by an unclean exit, so no VIP stays blocked."""
        try:
            await self._run(f"table inet {TABLE}\ndelete table inet {TABLE}\n")
        except FirewallError:
            pass            # no nftables at all: then nothing can be blocking

    async def block(self, addresses: Iterable[IPAddress]) -> None:
        await self._elements("add", addresses)

    async def unblock(self, addresses: Iterable[IPAddress]) -> None:
        if self._ready:
            await self._elements("delete", addresses)

    async def _elements(self, verb: str, addresses: Iterable[IPAddress]) -> None:
        v4 = sorted({str(a) for a in addresses if a.version == 4})
        v6 = sorted({str(a) for a in addresses if a.version == 6})
        script = "" if self._ready else _SETUP
        for name, items in (("vips4", v4), ("vips6", v6)):
            for item in items:
                # one element per command: deleting one that is gone must not
                # stop the others (nft -f is one transaction, so add first)
                script += f"add element inet {TABLE} {name} {{ {item} }}\n"
                if verb == "delete":
                    script += f"delete element inet {TABLE} {name} {{ {item} }}\n"
        if script:
            await self._run(script)
        self._ready = True

    async def close(self) -> None:
        if self._ready:
            await self._run(f"delete table inet {TABLE}\n")
            self._ready = False
