"""Value types for the checker (LVS) and BFD keywords.

keepalived reads these values with C library functions (``strtoul``,
``inet_pton``...) and reports problems with messages of its own; the types here
accept exactly what keepalived 2.2.7 accepts and say what it says, so that a
configuration checked by us gets the same verdict as with ``keepalived -t``.

Where a message of keepalived names the enclosing object (a BFD instance, a
virtual server group) the name is taken from ``ctx.head`` when the parser
provides it.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from .diag import Level
from .numbers import (
    DIGITS,
    INT_MAX,
    INT_MIN,
    UINT_MAX,
    ULONG_MAX,
    c_strtoul,
    format_decimal,
    read_decimal,
    read_int,
    read_unsigned,
    to_scaled,
)
from .schema import BOOL_WORDS, Arg, BlockSpec, Choice, Ctx, Decimal, Int, Invalid, Kw, OptBool

TIMER_MAXIMUM = ULONG_MAX - 1      # read_timer's upper bound when none is given (µs)


def _head(ctx: Ctx) -> str:
    """The name of the enclosing block, for messages that quote it."""
    head = ctx.head
    if isinstance(head, (tuple, list)):
        return " ".join(str(w) for w in head)
    return "" if head is None else str(head)


# -- numbers -----------------------------------------------------------------

@dataclass
class UInt(Int):
    """An unsigned integer (``read_unsigned_strvec``), then the keyword's own message.

    ``error`` is formatted with ``{word}``; ``fallback`` is the value keepalived
    uses instead of ignoring the keyword (``quorum`` falls back to 1).
    """

    lo: int = 0
    hi: int = UINT_MAX
    error: str = ""
    fallback: int | None = None

    def parse(self, words: list[str], ctx: Ctx) -> int:
        if not words:
            raise ctx.missing(words, 1)
        try:
            return read_unsigned(words[0], self.lo, self.hi, ctx)
        except Invalid:
            if self.error:
                ctx.report(Level.GENERAL_ERROR, self.error.format(word=words[0], head=_head(ctx)))
            if self.fallback is not None:
                return self.fallback
            raise

    def render(self, value: int) -> list[str]:
        return [str(value)]

    def describe(self) -> str:
        return f"integer {self.lo}..{self.hi}"


@dataclass
class SInt(UInt):
    """A signed integer (``read_int_strvec``)."""

    lo: int = INT_MIN
    hi: int = INT_MAX

    def parse(self, words: list[str], ctx: Ctx) -> int:
        if not words:
            raise ctx.missing(words, 1)
        try:
            return read_int(words[0], self.lo, self.hi, ctx)
        except Invalid:
            if self.error:
                ctx.report(Level.GENERAL_ERROR, self.error.format(word=words[0], head=_head(ctx)))
            raise


@dataclass
class OptUInt(UInt):
    """``keyword [N]``: bare means ``bare`` (``persistence_timeout`` → 360)."""

    bare: int = 0

    def parse(self, words: list[str], ctx: Ctx) -> int:
        if not words:
            return self.bare
        return super().parse(words, ctx)


@dataclass
class Timer(Decimal):
    """A duration read by ``read_timer``/``read_decimal_unsigned_strvec``.

    ``lo``/``hi`` are in the configured unit (seconds for timers, milliseconds
    for BFD intervals) and ``digits`` is keepalived's ``shift``.
    """

    lo: float = 0
    hi: float = TIMER_MAXIMUM / 10**6
    digits: int = 6
    error: str = ""

    def __post_init__(self) -> None:
        # the bounds in keepalived's scaled integer unit, worked out once
        self._lo = to_scaled(self.lo, self.digits)
        self._hi = to_scaled(self.hi, self.digits)
        if self.digits == 6 and self.hi >= TIMER_MAXIMUM / 10**6:
            self._hi = TIMER_MAXIMUM        # a float cannot hold it exactly

    def parse(self, words: list[str], ctx: Ctx) -> float:
        if not words:
            raise ctx.missing(words, 1)
        lo, hi = self._lo, self._hi
        try:
            scaled = read_decimal(words[0], lo, hi, self.digits, ctx)
        except Invalid:
            if self.error:
                ctx.report(Level.GENERAL_ERROR, self.error.format(word=words[0], head=_head(ctx)))
            raise
        return scaled / 10 ** self.digits

    def render(self, value: float) -> list[str]:
        return [format_decimal(value, self.digits)]


# -- words -------------------------------------------------------------------

@dataclass
class Bool(OptBool):
    """``keyword [BOOL]`` with the keyword's own complaint (``check_true_false``)."""

    error: str = "Invalid {keyword} parameter {word}"

    def parse(self, words: list[str], ctx: Ctx) -> bool:
        if not words:
            return True
        if words[0] not in BOOL_WORDS:
            ctx.report(Level.GENERAL_ERROR,
                       self.error.format(word=words[0], keyword=ctx.keyword, head=_head(ctx)))
            raise Invalid()
        return BOOL_WORDS[words[0]]

    def render(self, value: bool) -> list[str]:
        return [] if value else ["false"]

    def describe(self) -> str:
        return "[true|false]"


@dataclass
class Text(Arg):
    """One word, with keepalived's own complaint when it is missing.

    ``exact`` also rejects extra words; ``max_len`` rejects longer names with
    ``too_long``; ``truncate`` keeps the first ``max_len`` characters instead.
    """

    missing: str = ""
    exact: bool = False
    max_len: int | None = None
    too_long: str = ""
    truncate: bool = False
    optional: bool = False

    def parse(self, words: list[str], ctx: Ctx) -> str:
        if self.optional and not words:
            return ""
        if not words or (self.exact and len(words) != 1):
            if not self.missing:
                raise ctx.missing(words, 1)
            ctx.report(Level.GENERAL_ERROR, self.missing.format(head=_head(ctx)))
            raise Invalid()
        word = words[0]
        if self.max_len is not None and len(word) > self.max_len:
            ctx.report(Level.GENERAL_ERROR, self.too_long.format(word=word, head=_head(ctx)))
            if not self.truncate:
                raise Invalid()
            word = word[: self.max_len]
        return word

    def render(self, value: str) -> list[str]:
        return [value] if value or not self.optional else []

    def describe(self) -> str:
        return "word"


@dataclass
class Choose(Choice):
    """One of fixed words, with keepalived's own complaint."""

    error: str = "Invalid {keyword} '{word}'"
    missing: str = ""

    def parse(self, words: list[str], ctx: Ctx) -> str:
        if not words:
            if not self.missing:
                raise ctx.missing(words, 1)
            ctx.report(Level.GENERAL_ERROR, self.missing)
            raise Invalid()
        word = words[0]
        option = self.match(word)
        if option is None:
            ctx.report(Level.GENERAL_ERROR, self.error.format(word=word, keyword=ctx.keyword,
                                                              head=_head(ctx)))
            raise Invalid()
        return option


@dataclass
class KnownWords(Arg):
    """Words of which only the known ones count (``regex_options``)."""

    options: tuple[str, ...] = ()

    def parse(self, words: list[str], ctx: Ctx) -> tuple[str, ...]:
        return tuple(w for w in words if w in self.options)

    def render(self, value: Sequence[str]) -> list[str]:
        return list(value)


# -- addresses -----------------------------------------------------------------

def inet_pton_ok(text: str) -> bool:
    """``inet_pton`` on the family chosen by a ':' in the text."""
    try:
        if ":" in text:
            if "%" in text or "/" in text:
                return False
            ipaddress.IPv6Address(text)
        else:
            if not text or text[-1] == "." or any(
                    not p.isdigit() or not p.isascii() for p in text.split(".")):
                return False
            ipaddress.IPv4Address(text)
    except ValueError:
        return False
    return True


def stosockaddr(ip: str, port: str | None, ctx: Ctx) -> bool:
    """``inet_stosockaddr``: True when the address (and port) are valid.

    keepalived ignores whatever follows a '-' or '/' in the address (ranges and
    masks are checked by the callers that allow them).
    """
    if port is not None:
        try:
            read_unsigned(port, 1, 65535, ctx)
        except Invalid:
            return False
    for stop in "-/":
        if stop in ip:
            ip = ip[: ip.index(stop)]
            break
    return inet_pton_ok(ip)


def _port_or_none(port: str | None) -> str | None:
    """keepalived treats a port of all zeros (or empty) as no port."""
    if port is None or not port.strip("0"):
        return None
    return port


def _address_port(ip: str, port: str | None) -> tuple[Any, ...]:
    if port is None:
        return (ip,)
    return (ip, int(c_strtoul(port)[0]))


@dataclass
class Server(Arg):
    """``IP [PORT]`` of a real or sorry server; stored as ``(ip,)`` or ``(ip, port)``."""

    error: str = "Invalid real server ip address/port {ip}/{port} - skipping"

    def parse(self, words: list[str], ctx: Ctx) -> tuple[Any, ...]:
        if not words:
            raise ctx.missing(words, 1)
        ip = words[0]
        given = words[1] if len(words) > 1 else None
        port = _port_or_none(given)
        if not stosockaddr(ip, port, ctx):
            ctx.report(Level.GENERAL_ERROR, self.error.format(
                ip=ip, port="(null)" if given is None else given))
            raise Invalid()
        return _address_port(ip, port)

    def render(self, value: Sequence[Any]) -> list[str]:
        return [str(v) for v in value]

    def describe(self) -> str:
        return "ip [port]"


@dataclass
class ConnectAddress(Arg):
    """A checker's ``connect_ip``/``bindto``: an address without port."""

    error: str = "Invalid connect_ip address {word} - ignoring"

    def parse(self, words: list[str], ctx: Ctx) -> str:
        if not words:
            raise ctx.missing(words, 1)
        if not stosockaddr(words[0], None, ctx):
            ctx.report(Level.GENERAL_ERROR, self.error.format(word=words[0], head=_head(ctx)))
            raise Invalid()
        return words[0]

    def render(self, value: str) -> list[str]:
        return [value]

    def describe(self) -> str:
        return "ip"


@dataclass
class VirtualServerHead(Arg):
    """``IP [PORT]`` | ``fwmark N [inet|inet6]`` | ``group NAME``.

    Stored as ``(ip,)``/``(ip, port)``, ``("fwmark", n[, family])`` or
    ``("group", name)``.
    """

    def parse(self, words: list[str], ctx: Ctx) -> tuple[Any, ...]:
        if not words:
            raise ctx.missing(words, 1)
        first = words[0]
        if first in ("group", "fwmark") and len(words) < 2:
            raise ctx.missing(words, 2)
        if first == "group":
            return ("group", words[1])
        if first == "fwmark":
            try:
                mark = read_unsigned(words[1], 0, UINT_MAX, ctx)
            except Invalid:
                ctx.report(Level.GENERAL_ERROR, f"virtual server fwmark '{words[1]}' must be "
                                                f"in [0, {UINT_MAX}] - ignoring")
                raise
            # 2.2.7 ignores a third word; later versions take the family here.
            if len(words) > 2 and words[2] in ("inet", "inet6"):
                return ("fwmark", mark, words[2])
            return ("fwmark", mark)
        port = _port_or_none(words[1] if len(words) > 1 else None)
        if not stosockaddr(first, port, ctx):
            suffix = f"/{port}" if port is not None else ""
            ctx.report(Level.GENERAL_ERROR, "Invalid virtual server IP address"
                       f"{'/port' if port is not None else ''} {first}{suffix} - skipping")
            raise Invalid()
        return _address_port(first, port)

    def render(self, value: Sequence[Any]) -> list[str]:
        return [str(v) for v in value]

    def describe(self) -> str:
        return "ip [port] | fwmark N [inet|inet6] | group NAME"


def _v4_int(text: str) -> int:
    return int(ipaddress.IPv4Address(text))


def _v6_int(text: str) -> int:
    return int(ipaddress.IPv6Address(text))


@dataclass
class VsgEntry(Arg):
    """A ``virtual_server_group`` line: an address, range or subnet with an
    optional port, or ``fwmark N [inet|inet6]``.  Stored like a virtual server
    head, the address keeping its range or mask text."""

    def parse(self, words: list[str], ctx: Ctx) -> tuple[Any, ...]:
        group = _head(ctx)
        if not words:
            raise ctx.missing(words, 0)
        first = words[0]
        if first == "fwmark":
            if len(words) < 2:
                ctx.report(Level.MISSING_PARAMETER, "*** Configuration line starting `fwmark` "
                           "is missing a parameter after keyword `fwmark` at word position 2")
                raise Invalid()
            try:
                mark = read_unsigned(words[1], 0, UINT_MAX, ctx)
            except Invalid:
                ctx.report(Level.GENERAL_ERROR, f"({group}): fwmark '{words[1]}' must be in "
                                                f"[0, {UINT_MAX}] - ignoring")
                raise
            if len(words) > 2:
                if words[2] not in ("inet", "inet6"):
                    ctx.report(Level.GENERAL_ERROR, f"({group}): fwmark '{mark}' family "
                                                    f"{words[2]} unknown - ignoring")
                    raise Invalid()
                return ("fwmark", mark, words[2])
            return ("fwmark", mark)
        port = _port_or_none(words[1] if len(words) > 1 else None)
        if not stosockaddr(first, port, ctx):
            extra = f"/port/{port}" if port is not None else ""
            ctx.report(Level.GENERAL_ERROR,
                       f"Invalid virtual server group IP address {first} {extra} - skipping")
            raise Invalid()
        self._check_range(first, ctx)
        return _address_port(first, port)

    @staticmethod
    def _check_range(text: str, ctx: Ctx) -> None:
        v6 = ":" in text
        bits = 128 if v6 else 32
        to_int = _v6_int if v6 else _v4_int
        if "/" in text:
            addr, _, mask_text = text.partition("/")
            # the address part may itself hold a '-', which keepalived cuts off
            addr = addr.split("-")[0]
            mask, rest, _ = c_strtoul(mask_text)
            if rest or not mask or mask > bits:
                ctx.report(Level.GENERAL_ERROR, f"Invalid netmask - {text} - skipping")
                raise Invalid()
            if mask < bits and to_int(addr) & ((1 << (bits - mask)) - 1):
                ctx.report(Level.GENERAL_ERROR,
                           f"Address mask bits not empty - {text} - skipping")
                raise Invalid()
            return
        if "-" not in text:
            return
        start, _, end = text.partition("-")
        if (not v6 and "." in end) or (v6 and ":" in end):
            # a full end address: a.b.c.d-e.f.g.h
            if not stosockaddr(end, None, ctx):
                ctx.report(Level.GENERAL_ERROR, f"Invalid range end {text} - skipping")
                raise Invalid()
            if (":" in end) != v6:
                ctx.report(Level.GENERAL_ERROR,
                           f"Range address families do not match {text} - skipping")
                raise Invalid()
            if to_int(start) > to_int(end.split("/")[0].split("-")[0]):
                ctx.report(Level.GENERAL_ERROR, "Address range end is less than address "
                                                f"range start - {text} - skipping")
                raise Invalid()
            return
        # a.b.c.d-N: N replaces the last octet (IPv4) or the last 16 bits (hex, IPv6)
        value, rest, overflow = c_strtoul(end, 16 if v6 else 10)
        if rest:
            ctx.report(Level.INVALID_NUMBER, f"Virtual server group range '{text}' has "
                                             f"extra characters at end '{rest}'")
            raise Invalid()
        if overflow or value > (0xFFFF if v6 else 255):
            ctx.report(Level.INVALID_NUMBER,
                       f"Virtual server group range '{text}' end '{end}' too large")
            raise Invalid()
        low = to_int(start) & (0xFFFF if v6 else 0xFF)
        if low >= value:
            ctx.report(Level.GENERAL_ERROR, "Address range end is not greater than address "
                                            f"range start - {text} - skipping")
            raise Invalid()

    def render(self, value: Sequence[Any]) -> list[str]:
        return [str(v) for v in value]

    def describe(self) -> str:
        return "ip[-range|/mask] [port] | fwmark N [inet|inet6]"


# -- forwarding, persistence -------------------------------------------------------

SCHEDULERS = ("rr", "wrr", "lc", "wlc", "lblc", "sh", "mh", "dh", "fo", "ovf", "lblcr",
              "sed", "nq", "twos")


@dataclass
class Forwarding(Arg):
    """``NAT|DR|TUN [type ipip|gue|gre] [port N] [nocsum|csum|remcsum]``.

    Stored as a tuple of words; a bad option keeps only the method, as
    keepalived sets the method before it reads the options.
    """

    server: str = "virtual"

    def parse(self, words: list[str], ctx: Ctx) -> tuple[Any, ...]:
        if not words:
            raise ctx.missing(words, 1)
        method = words[0]
        if method not in ("NAT", "DR", "TUN"):
            ctx.report(Level.GENERAL_ERROR,
                       f"PARSER : unknown [{method}] routing method for {self.server} server.")
            raise Invalid()
        options = self._options(words[1:], ctx)
        return (method, *options) if options is not None else (method,)

    def _options(self, words: list[str], ctx: Ctx) -> tuple[Any, ...] | None:
        def bad(msg: str) -> None:
            ctx.report(Level.GENERAL_ERROR, msg)

        tun_type, port, csum = "ipip", 0, "nocsum"
        out: list[Any] = []
        i = 0
        while i < len(words):
            word = words[i]
            if word == "type":
                if i + 1 == len(words):
                    return bad(f"Missing tunnel type for {self.server} server.")
                if words[i + 1] not in ("ipip", "gue", "gre"):
                    return bad(f"Unknown tunnel type {words[i + 1]} for {self.server} server.")
                tun_type = words[i + 1]
                out += ["type", tun_type]
                i += 1
            elif word == "port":
                if i + 1 == len(words):
                    return bad(f"Missing port for {self.server} server gue tunnel.")
                try:
                    port = read_unsigned(words[i + 1], 1, 65535, ctx)
                except Invalid:
                    return bad(f"Invalid gue tunnel port {words[i + 1]} for "
                               f"{self.server} server.")
                out += ["port", port]
                i += 1
            elif word in ("nocsum", "csum", "remcsum"):
                csum = word
                out.append(word)
            else:
                return bad(f"Invalid tunnel option {word} for {self.server} server.")
            i += 1
        if (tun_type == "gue") != (port != 0):
            return bad("gue tunnels require port, otherwise cannot have port.")
        if tun_type == "ipip" and csum != "nocsum":
            return bad("ipip tunnels do not support checksum option.")
        if tun_type == "gre" and csum == "remcsum":
            return bad("gre tunnels do not support remote checksum option.")
        return tuple(out)

    def render(self, value: Sequence[Any]) -> list[str]:
        return [str(v) for v in value]

    def describe(self) -> str:
        return "NAT|DR|TUN [type ipip|gue|gre] [port N] [nocsum|csum|remcsum]"


def inet_aton_ok(text: str) -> bool:
    """``getaddrinfo(AI_NUMERICHOST, AF_INET)``, which takes ``inet_aton`` forms."""
    parts = text.split(".")
    if not 1 <= len(parts) <= 4:
        return False
    values = []
    for part in parts:
        base = 10
        digits = part
        if part[:2].lower() == "0x":
            base, digits = 16, part[2:]
        elif part.startswith("0") and len(part) > 1:
            base, digits = 8, part[1:]
        if base == 16 and not digits:
            values.append(0)
            continue
        if not digits or any(c.lower() not in DIGITS[:base] for c in digits):
            return False
        values.append(int(digits, base))
    limits = {1: [2**32], 2: [256, 2**24], 3: [256, 256, 2**16], 4: [256] * 4}[len(values)]
    return all(v < lim for v, lim in zip(values, limits, strict=True))


@dataclass
class Granularity(Arg):
    """``persistence_granularity``: an IPv4 netmask or an IPv6 prefix length.

    keepalived picks the family from the virtual server, or from a '.' in the
    word when the server has none yet; we only have the word.
    """

    def parse(self, words: list[str], ctx: Ctx) -> str | int:
        if not words:
            raise ctx.missing(words, 1)
        word = words[0]
        if "." not in word:
            try:
                return read_unsigned(word, 1, 128, ctx)
            except Invalid:
                ctx.report(Level.GENERAL_ERROR,
                           f"Invalid IPv6 persistence_granularity specified - {word}")
                raise
        if not inet_aton_ok(word):
            ctx.report(Level.GENERAL_ERROR,
                       f"Invalid IPv4 persistence_granularity specified - {word}")
            raise Invalid()
        return word

    def render(self, value: str | int) -> list[str]:
        return [str(value)]

    def describe(self) -> str:
        return "netmask | prefix length"


# -- HTTP --------------------------------------------------------------------------

@dataclass
class StatusCodes(Arg):
    """``status_code N|N-M ...``; bad items are reported and skipped.

    Stored as a tuple of ``(low, high)`` pairs.
    """

    def parse(self, words: list[str], ctx: Ctx) -> tuple[tuple[int, int], ...]:
        out: list[tuple[int, int]] = []
        for word in words:
            low, rest, _ = c_strtoul(word)
            high = low
            if rest.startswith("-"):
                high, rest, _ = c_strtoul(rest[1:])
            if rest or not (100 <= low <= 599 and 100 <= high <= 599 and low <= high):
                ctx.report(Level.GENERAL_ERROR, f"Invalid HTTP_GET status code '{word}'")
                continue
            out.append((low, high))
        if not out:
            raise Invalid()
        return tuple(out)

    def render(self, value: Sequence[tuple[int, int]]) -> list[str]:
        return [str(lo) if lo == hi else f"{lo}-{hi}" for lo, hi in value]

    def describe(self) -> str:
        return "N|N-M ..."


@dataclass
class Digest(Arg):
    """An MD5 digest as 32 hex digits."""

    def parse(self, words: list[str], ctx: Ctx) -> str:
        if not words:
            raise ctx.missing(words, 1)
        digest = words[0]
        if len(digest) != 32:
            ctx.report(Level.GENERAL_ERROR, f"digest '{digest}' character length should be "
                                            f"32 rather than {len(digest)}")
            raise Invalid()
        # keepalived reads the pairs from the end, cutting the text as it goes
        for i in range(15, -1, -1):
            _, rest, _ = c_strtoul(digest[2 * i:2 * i + 2], 16)
            if rest:
                shown = digest[:2 * i + 2]
                ctx.report(Level.GENERAL_ERROR, f"Unable to interpret hex digit in '{shown}' "
                                                f"at offset {2 * i}/{2 * i + 1}")
                raise Invalid()
        return digest

    def render(self, value: str) -> list[str]:
        return [value]


@dataclass
class Offset(Arg):
    """``regex_min_offset``/``regex_max_offset`` (logged, not counted, when wrong)."""

    which: str = "min"

    def parse(self, words: list[str], ctx: Ctx) -> int:
        if len(words) != 1:
            ctx.report(Level.NOTE, f"Missing or too may options for regex_{self.which}_offset")
            raise Invalid()
        value, rest, _ = c_strtoul(words[0])
        if rest:
            ctx.report(Level.NOTE, f"Invalid regex_{self.which}_offset {words[0]} specified")
            raise Invalid()
        return value

    def render(self, value: int) -> list[str]:
        return [str(value)]


@dataclass
class RegexStack(Arg):
    """``regex_stack START MAX`` (logged, not counted, when wrong)."""

    def parse(self, words: list[str], ctx: Ctx) -> tuple[int, int]:
        if len(words) != 2:
            ctx.report(Level.NOTE, "regex_stack requires start and max values")
            raise Invalid()
        start, rest, _ = c_strtoul(words[0])
        if rest:
            ctx.report(Level.NOTE, "regex_stack invalid start value")
            raise Invalid()
        top, rest, _ = c_strtoul(words[1])
        if rest:
            ctx.report(Level.NOTE, "regex_stack invalid max value")
            raise Invalid()
        if start > top:
            ctx.report(Level.NOTE, "regex stack start cannot exceed max value")
            raise Invalid()
        return (start, top)

    def render(self, value: Sequence[int]) -> list[str]:
        return [str(v) for v in value]


@dataclass
class Regex(Arg):
    """A regular expression: exactly one word."""

    def parse(self, words: list[str], ctx: Ctx) -> str:
        if len(words) != 1:
            ctx.report(Level.NOTE, "regex missing or too many fields")
            raise Invalid()
        return words[0]

    def render(self, value: str) -> list[str]:
        return [value]


# -- UDP_CHECK -------------------------------------------------------------------

def read_hex(text: str, wildcard: bool) -> str | None:
    """``read_hex_str``: the bytes as canonical hex ('x' for a wildcard nibble).

    A digit followed by a blank is a byte on its own; None when not valid.
    """
    def nibble(c: str) -> str | None:
        lower = c.lower()
        if lower in "0123456789abcdef":
            return lower
        if wildcard and lower == "x":
            return "x"
        return None

    out: list[str] = []
    i, n = 0, len(text)
    while True:
        while i < n and text[i] in " \t":
            i += 1
        if i >= n:
            break
        high = nibble(text[i])
        i += 1
        if high is None:
            return None
        if i < n and text[i] != " ":
            low = nibble(text[i])
            i += 1
            if low is None:
                return None
            out.append(high + low)
        else:
            out.append("0" + high)
    return "".join(out) or None


@dataclass
class HexString(Arg):
    """``payload``/``require_reply``: hex digits, blanks allowed between bytes."""

    what: str = "payload"
    wildcard: bool = False
    optional: bool = False

    def parse(self, words: list[str], ctx: Ctx) -> str:
        if not words:
            if self.optional:
                return ""
            ctx.report(Level.GENERAL_ERROR, "UDP_CHECK payload requires a payload")
            raise Invalid()
        value = read_hex(" ".join(words), self.wildcard)
        if value is None:
            ctx.report(Level.GENERAL_ERROR, f"Invalid hex string for UDP_CHECK {self.what}")
            raise Invalid()
        return value

    def render(self, value: str) -> list[str]:
        return [value] if value else []

    def describe(self) -> str:
        return "hex"


# -- misc --------------------------------------------------------------------------

@dataclass
class FileWeight(Arg):
    """FILE_CHECK ``weight N [reverse|noreverse]``, stored as ``(weight, reverse)``."""

    def parse(self, words: list[str], ctx: Ctx) -> tuple[int, bool]:
        if not words:
            ctx.report(Level.GENERAL_ERROR, "track file weight missing")
            raise Invalid()
        try:
            weight = read_int(words[0], -INT_MAX, INT_MAX, ctx)
        except Invalid:
            ctx.report(Level.GENERAL_ERROR, f"weight for track file must be in "
                                            f"[{-INT_MAX}..{INT_MAX}] inclusive. Ignoring...")
            raise
        reverse = False
        if len(words) > 1:
            if words[1] not in ("reverse", "noreverse"):
                ctx.report(Level.GENERAL_ERROR,
                           f"unknown track file weight option {words[1]} - ignoring")
                raise Invalid()
            reverse = words[1] == "reverse"
        return (weight, reverse)

    def render(self, value: Sequence[Any]) -> list[str]:
        return [str(value[0])] + (["reverse"] if value[1] else [])


@dataclass
class BfdWeight(Arg):
    """bfd_instance ``weight N [reverse]`` (read by the VRRP process).

    keepalived still takes ``reverse`` when the number is bad; we then keep
    the default weight 0.
    """

    def parse(self, words: list[str], ctx: Ctx) -> tuple[int, bool]:
        if not words:
            raise ctx.missing(words, 1)
        name = _head(ctx)
        weight = 0
        try:
            weight = read_int(words[0], -253, 253, ctx)
        except Invalid:
            ctx.report(Level.GENERAL_ERROR, f"Configuration error: BFD instance {name} weight "
                                            f"value {words[0]} not valid (must be in range "
                                            "[-253-253]), ignoring")
        reverse = False
        if len(words) > 1:
            if words[1] != "reverse":
                ctx.report(Level.GENERAL_ERROR, f"Configuration error: BFD instance {name} "
                                                f"unknown weight option {words[1]}")
            else:
                reverse = True
        return (weight, reverse)

    def render(self, value: Sequence[Any]) -> list[str]:
        return [str(value[0])] + (["reverse"] if value[1] else [])


@dataclass
class BfdInterval(Timer):
    """A BFD interval in milliseconds with three decimals, and the warning above
    the sensible maximum."""

    digits: int = 3
    sensible: float = 10000

    def parse(self, words: list[str], ctx: Ctx) -> float:
        value = super().parse(words, ctx)
        if value > self.sensible:
            ctx.report(Level.NOTE, f"Configuration warning: BFD instance {_head(ctx)} "
                                   f"{ctx.keyword} value {words[0]} is larger than max "
                                   f"sensible ({int(self.sensible)})")
        return value


@dataclass
class DnsName(Arg):
    """DNS_CHECK ``name``: no empty label."""

    def parse(self, words: list[str], ctx: Ctx) -> str:
        if not words:
            raise ctx.missing(words, 1)
        name = words[0]
        # 2.2.7 also looks at the character after the first one, so a one
        # letter first label ("a.example.") is refused as well
        bad = ((name.startswith(".") and name != ".") or name[1:2] == "."
               or ".." in name)
        if bad:
            ctx.report(Level.GENERAL_ERROR, f"DNS_CHECK name '{name}' has empty label - ignoring")
            raise Invalid()
        return name

    def render(self, value: str) -> list[str]:
        return [value]


# -- blocks ------------------------------------------------------------------------

@dataclass
class _Noted(Arg):
    """Reports a note (a deprecation) before reading the value."""

    inner: Arg = field(default_factory=Arg)
    level: Level = Level.GENERAL_ERROR
    message: str = ""

    def parse(self, words: list[str], ctx: Ctx) -> Any:
        ctx.report(self.level, self.message)
        return self.inner.parse(words, ctx)

    def render(self, value: Any) -> list[str]:
        return self.inner.render(value)


@dataclass(frozen=True)
class NotingBlock(BlockSpec):
    """A block in which some alias words draw a message of their own.

    keepalived 2.2.7 says ``nb_get_retry is deprecated - please use 'retry'``
    and then reads the value as ``retry``; ``notes`` gives such an alias its
    message and, if it differs, the type that reads its value.
    """

    notes: tuple[tuple[str, str, Arg | None], ...] = ()

    def __post_init__(self) -> None:
        super().__post_init__()
        noted: dict[str, Kw] = {}
        for word, message, arg in self.notes:
            kw = BlockSpec.lookup(self, word)
            if kw is None:
                raise ValueError(f"{self.kind}: {word} is not declared")
            noted[word] = replace(kw, arg=_Noted(arg or kw.arg, Level.GENERAL_ERROR, message))
        object.__setattr__(self, "noted", noted)

    def lookup(self, word: str) -> Kw | None:
        return self.noted.get(word) or BlockSpec.lookup(self, word)  # type: ignore[attr-defined]
