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


async def run_nft(nft: str, script: str, why: str) -> None:
    """Carry out an nft script (one transaction); ``why`` names what needs it."""
    try:
        proc = await asyncio.create_subprocess_exec(
            nft, "-f", "-", stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    except OSError as err:
        raise FirewallError(f"cannot run {nft} ({why} needs nftables): {err}") from err
    _, err = await proc.communicate(script.encode())
    if proc.returncode:
        raise FirewallError(f"nft: {err.decode(errors='replace').strip()}")


class AcceptModeFirewall:
    def __init__(self, nft: str | None = None) -> None:
        self.nft = nft or shutil.which("nft") or "/usr/sbin/nft"
        self._ready = False

    async def _run(self, script: str) -> None:
        await run_nft(self.nft, script, "no_accept")

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


# keepalived's rules for VMACs (vrrp_nftables.c, setup_rule_move_igmp and
# setup_rule_drop_router_solicit), in tables of our own name: a VMAC's IGMP and
# MLD reports leave from its base instead, so a switch never learns the virtual
# MAC on a backup's port from its group joins, and an IPv6 VMAC sends no router
# solicitations.
_VMAC_CHAIN = """    chain vmac_out {{
        type filter hook output priority filter - 1; policy accept;
{rules}    }}
"""
_VMAC_RULES = {
    "ip": '        ip protocol igmp meta oifkind "macvlan" '
          "dup to ip daddr device oif map @vmac_map drop\n",
    "ip6": '        icmpv6 type mld2-listener-report meta oifkind "macvlan" '
           "dup to ip6 daddr device oif map @vmac_map drop\n"
           '        icmpv6 type nd-router-solicit meta oifkind "macvlan" oif @vmac_set drop\n',
}


class VmacFirewall:
    """The nftables rules for the VMACs that exist, rewritten whole on each change
    (one transaction: no duplicate rules, no element of a link that is gone)."""

    def __init__(self, nft: str | None = None) -> None:
        self.nft = nft or shutil.which("nft") or "/usr/sbin/nft"
        self._families: set[str] = set()     # the tables we have now

    async def update(self, vmacs: Iterable[tuple[str, str, int]]) -> None:
        """Have exactly these (VMAC, base, family 4 or 6) in the rules."""
        by_family: dict[str, list[tuple[str, str]]] = {"ip": [], "ip6": []}
        for vmac, base, family in vmacs:
            by_family["ip6" if family == 6 else "ip"].append((vmac, base))
        script = ""
        for family, pairs in by_family.items():
            if family in self._families or pairs:
                script += f"table {family} {TABLE}\ndelete table {family} {TABLE}\n"
            if pairs:
                script += self._table(family, pairs)
        if script:
            await run_nft(self.nft, script, "use_vmac")
        self._families = {family for family, pairs in by_family.items() if pairs}

    @staticmethod
    def _table(family: str, pairs: list[tuple[str, str]]) -> str:
        mapped = ", ".join(f'"{vmac}" : "{base}"' for vmac, base in pairs)
        text = f"table {family} {TABLE} {{\n"
        text += (f"    map vmac_map {{ type iface_index : iface_index; "
                 f"elements = {{ {mapped} }} }}\n")
        if family == "ip6":
            names = ", ".join(f'"{vmac}"' for vmac, _ in pairs)
            text += f"    set vmac_set {{ type iface_index; elements = {{ {names} }} }}\n"
        return text + _VMAC_CHAIN.format(rules=_VMAC_RULES[family]) + "}\n"

    async def clean_start(self) -> None:
        """Drop tables an unclean exit left."""
        for family in ("ip", "ip6"):
            try:
                await run_nft(self.nft, f"table {family} {TABLE}\ndelete table {family} {TABLE}\n",
                              "use_vmac")
            except FirewallError:
                pass

    async def close(self) -> None:
        await self.update(())
