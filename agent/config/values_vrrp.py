"""Value types for the VRRP side of keepalived.conf (global_defs, trackers, VRRP).

Each class reads the words after a keyword (or one line of a value block) the
way keepalived 2.2.7's handler does, reports with the same text and level, and
gives back a plain, hashable value (str, int, float, bool or a tuple of those)
so that the model stays JSON-friendly.  ``render`` writes the value back as
words; quoting of words that need it is the renderer's business.

Messages that keepalived prefixes with the object's name (``(VI_1) ...``) use
the name of the enclosing block when the parser's context carries it (an
attribute ``head`` on the context), and ``?`` otherwise.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from .diag import Level
from .numbers import (
    INT_MAX,
    INT_MIN,
    UINT_MAX,
    WHITE_SPACE,
    c_strtol,
    format_decimal,
    or_none,
    read_decimal,
    read_int,
    read_unsigned,
)
from .schema import BOOL_WORDS, Arg, Ctx, Invalid

TIMER_HZ_DIGITS = 6
IFNAMSIZ = 16


def block_name(ctx: Ctx) -> str:
    """The name of the object being defined (``vrrp_instance NAME``), if known."""
    head = ctx.head
    if isinstance(head, str):
        return head
    if isinstance(head, (tuple, list)) and head:
        return str(head[0])
    return "?"


def _fmt(template: str, ctx: Ctx, word: str = "", **extra: Any) -> str:
    return template.format(name=block_name(ctx), word=word, kw=ctx.keyword, **extra)


def _missing(words: Sequence[str], ctx: Ctx, message: str | None) -> Invalid:
    """A missing value: keepalived's own message when the handler checks for it."""
    if message is None:
        return ctx.missing(list(words), len(words) + 1)
    ctx.report(Level.GENERAL_ERROR, _fmt(message, ctx))
    return Invalid()


# -- scalar types with keyword-specific messages ------------------------------

@dataclass
class UInt(Arg):
    """An unsigned integer; ``error`` is the handler's follow-up message.

    With ``fallback`` keepalived keeps a default instead of dropping the line;
    ``zero_to`` reproduces "must be greater than 0, setting to 1".
    """

    lo: int = 0
    hi: int = UINT_MAX
    error: str | None = None
    fallback: int | None = None
    missing: str | None = None
    zero_to: int | None = None
    zero_error: str | None = None
    exact: bool = False        # "kw VALUE" only: more words is an error
    bare: int | None = None    # value of the keyword on its own, when allowed

    def parse(self, words: list[str], ctx: Ctx) -> int:
        if not words:
            if self.bare is not None:
                return self.bare
            raise _missing(words, ctx, self.missing)
        value = None
        if not self.exact or len(words) == 1:
            value = or_none(read_unsigned, words[0], self.lo, self.hi, ctx)
        if value is None:
            if self.error:
                ctx.report(Level.GENERAL_ERROR, _fmt(self.error, ctx, words[0]))
            if self.fallback is not None:
                return self.fallback
            raise Invalid()
        if value == 0 and self.zero_to is not None:
            if self.zero_error:
                ctx.report(Level.GENERAL_ERROR, _fmt(self.zero_error, ctx, words[0]))
            return self.zero_to
        return value

    def render(self, value: int) -> list[str]:
        return [] if value == self.bare else [str(value)]

    def describe(self) -> str:
        return f"integer {self.lo}..{self.hi}"


@dataclass
class SInt(Arg):
    """A signed integer (``read_int_strvec``) with the handler's follow-up message."""

    lo: int = INT_MIN
    hi: int = INT_MAX
    error: str | None = None
    fallback: int | None = None
    missing: str | None = None
    level: Level = Level.GENERAL_ERROR
    bare: int | None = None    # value of the keyword on its own, when allowed

    def parse(self, words: list[str], ctx: Ctx) -> int:
        if not words:
            if self.bare is not None:
                return self.bare
            raise _missing(words, ctx, self.missing)
        value = or_none(read_int, words[0], self.lo, self.hi, ctx)
        if value is None:
            if self.error:
                ctx.report(self.level, _fmt(self.error, ctx, words[0]))
            if self.fallback is not None:
                return self.fallback
            raise Invalid()
        return value

    def render(self, value: int) -> list[str]:
        return [] if value == self.bare else [str(value)]

    def describe(self) -> str:
        return f"integer {self.lo}..{self.hi}"


@dataclass
class Timer(Arg):
    """Seconds with up to ``digits`` decimals; ``lo``/``hi`` in seconds."""

    lo: float = 0
    hi: float = UINT_MAX / 10**6
    digits: int = TIMER_HZ_DIGITS
    error: str | None = None
    fallback: float | None = None
    missing: str | None = None

    def parse(self, words: list[str], ctx: Ctx) -> float:
        if not words:
            raise _missing(words, ctx, self.missing)
        scale = 10 ** self.digits
        value = or_none(read_decimal, words[0], round(self.lo * scale),
                        round(self.hi * scale), self.digits, ctx)
        if value is None:
            if self.error:
                ctx.report(Level.GENERAL_ERROR, _fmt(self.error, ctx, words[0]))
            if self.fallback is not None:
                return self.fallback
            raise Invalid()
        return value / scale

    def render(self, value: float) -> list[str]:
        return [format_decimal(value, self.digits)]

    def describe(self) -> str:
        return f"seconds {self.lo}..{self.hi}"


@dataclass
class Bool(Arg):
    """``keyword [BOOL]`` (bare means ``default``) with the handler's own error text."""

    error: str = "Invalid value '{word}' for {kw} specified"
    default: bool = True

    def parse(self, words: list[str], ctx: Ctx) -> bool:
        if not words:
            return self.default
        if words[0] not in BOOL_WORDS:
            ctx.report(Level.GENERAL_ERROR, _fmt(self.error, ctx, words[0]))
            raise Invalid()
        return BOOL_WORDS[words[0]]

    def render(self, value: bool) -> list[str]:
        return [] if value == self.default else ["true" if value else "false"]


@dataclass
class Text(Arg):
    """One word; optional length limit and keepalived's message when it is missing."""

    missing: str | None = None
    maxlen: int | None = None          # longest accepted length
    too_long: str | None = None
    truncate: bool = False             # keepalived truncates instead of ignoring
    exact: bool = False                # exactly one word, else ``invalid``
    invalid: str | None = None
    nonempty: bool = False

    def parse(self, words: list[str], ctx: Ctx) -> str:
        if self.exact and len(words) != 1 or self.nonempty and (not words or not words[0]):
            ctx.report(Level.GENERAL_ERROR, _fmt(self.invalid or "{kw} invalid", ctx))
            raise Invalid()
        if not words:
            raise _missing(words, ctx, self.missing)
        word = words[0]
        if self.maxlen is not None and len(word) > self.maxlen:
            if self.too_long:
                ctx.report(Level.GENERAL_ERROR, _fmt(self.too_long, ctx, word))
            if not self.truncate:
                raise Invalid()
            word = word[: self.maxlen]
        return word

    def render(self, value: str) -> list[str]:
        return [value]


@dataclass
class OptText(Arg):
    """``keyword [WORD]``: the word, or ``""`` when absent."""

    def parse(self, words: list[str], ctx: Ctx) -> str:
        return words[0] if words else ""

    def render(self, value: str) -> list[str]:
        return [value] if value else []


@dataclass
class Enum(Arg):
    """One of fixed words, with the handler's own message for anything else."""

    options: tuple[str, ...] = ()
    error: str = "Invalid {kw} '{word}'"
    bare: str | None = None            # value when no word is given
    fallback: str | None = None        # value kept after an invalid word
    nocase: bool = False

    def parse(self, words: list[str], ctx: Ctx) -> str:
        if not words:
            if self.bare is not None:
                return self.bare
            raise ctx.missing(words, 1)
        for option in self.options:
            if words[0] == option or self.nocase and words[0].lower() == option.lower():
                return option
        ctx.report(Level.GENERAL_ERROR, _fmt(self.error, ctx, words[0]))
        if self.fallback is not None:
            return self.fallback
        raise Invalid()

    def render(self, value: str) -> list[str]:
        return [] if value == self.bare else [value]

    def describe(self) -> str:
        return "|".join(self.options)


def is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def sockaddr_ok(text: str) -> bool:
    """``inet_stosockaddr``: the family from ':', any '-range' or '/mask' dropped."""
    cut = min((p for p in (text.find("-"), text.find("/")) if p >= 0), default=len(text))
    addr = text[:cut]
    try:
        if ":" in text:
            ipaddress.IPv6Address(addr) if "%" not in addr else int("x")
        else:
            ipaddress.IPv4Address(addr)
    except ValueError:
        return False
    return True


def parse_route_dest(word: str, ctx: Ctx) -> bool:
    """``parse_route``: a destination or the words default/any/all/default6."""
    if word in ("default", "any", "all", "default6"):
        return True
    try:
        parse_prefixed(word, ctx)
    except Invalid:
        return False
    return True


@dataclass
class IpAddr(Arg):
    """A plain address (``inet_stosockaddr``), with the handler's message."""

    error: str = "Invalid IP address '{word}'"
    family: int | None = None
    family_error: str | None = None
    multicast: bool = False
    multicast_error: str | None = None

    def parse(self, words: list[str], ctx: Ctx) -> str:
        if not words:
            raise ctx.missing(words, 1)
        word = words[0]
        if not sockaddr_ok(word):
            ctx.report(Level.GENERAL_ERROR, _fmt(self.error, ctx, word))
            raise Invalid()
        addr = ipaddress.ip_address(word.split("-", 1)[0].split("/", 1)[0])
        if self.family and addr.version != self.family:
            ctx.report(Level.GENERAL_ERROR, _fmt(self.family_error or self.error, ctx, word))
            raise Invalid()
        if self.multicast and not addr.is_multicast:
            ctx.report(Level.GENERAL_ERROR, _fmt(self.multicast_error or self.error, ctx, word))
            raise Invalid()
        return word

    def render(self, value: str) -> list[str]:
        return [value]


@dataclass
class Rest(Arg):
    """Free words kept as given (``min`` required, keepalived's message if fewer)."""

    min: int = 0
    max: int | None = None
    missing: str | None = None

    def parse(self, words: list[str], ctx: Ctx) -> tuple[str, ...]:
        if len(words) < self.min:
            raise _missing(words, ctx, self.missing)
        return tuple(words if self.max is None else words[: self.max])

    def render(self, value: Sequence[str]) -> list[str]:
        return list(value)


# -- scripts ------------------------------------------------------------------


# -- weights and tracking -----------------------------------------------------

@dataclass
class Weight(Arg):
    """``weight N [reverse]`` inside vrrp_script / vrrp_track_process / track_file.

    The value is ``(weight, reverse)``.
    """

    lo: int = -253
    hi: int = 253
    error: str = ""
    option_error: str = ""
    fallback: int | None = None        # keepalived keeps this weight after a bad one
    missing: str | None = None

    def parse(self, words: list[str], ctx: Ctx) -> tuple[int, bool]:
        if not words:
            raise _missing(words, ctx, self.missing)
        weight = or_none(read_int, words[0], self.lo, self.hi, ctx)
        if weight is None:
            ctx.report(Level.GENERAL_ERROR, _fmt(self.error, ctx, words[0]))
            if self.fallback is None:
                raise Invalid()
            weight = self.fallback
        reverse = False
        if len(words) >= 2:
            if words[1] == "reverse":
                reverse = True
            else:
                ctx.report(Level.GENERAL_ERROR, _fmt(self.option_error, ctx, words[1]))
        return (weight, reverse)

    def render(self, value: tuple[int, bool]) -> list[str]:
        return [str(value[0]), *(["reverse"] if value[1] else [])]


_TRACK_TEXT = {
    # kind: (option error, weight-without-value, bad weight, weight option, range, 254 clamp,
    #        accepts noreverse, stop on bad weight option)
    "interface": ("({name}) unknown track_interface {tracked} option {opt} - ignoring",
                  "({name}) weight without value specified for track_interface {tracked}"
                  " - ignoring",
                  "({name}) weight {word} for {tracked} must be between [-253..253] inclusive."
                  " Ignoring...",
                  "({name}) unknown track_interace {tracked} weight option {opt} - ignoring",
                  254, True, False, False),
    "script": ("({name}) unknown track script option {opt} - ignoring",
               "({name}) weight without value specified for track script {tracked} - ignoring",
               "({name}) track script {tracked}: weight must be between [-253..253] inclusive,"
               " ignoring...",
               "({name}) unknown track_script {tracked} weight option {opt} - ignoring",
               254, True, True, False),
    "file": ("({name}) unknown track file option {opt} - ignoring",
             "({name}) weight without value specified for track file {tracked} - ignoring",
             "({name}) weight for track file {tracked} must be in [-254..254] inclusive."
             " Ignoring...",
             "({name}) unknown track file {tracked} weight option {opt} - ignoring",
             254, False, True, True),
    "process": ("({name}) unknown track process option {opt} - ignoring",
                "({name}) weight without value specified for track process {tracked} - ignoring",
                "({name}) weight for track process {tracked} must be in [-254..254] inclusive."
                " Ignoring...",
                "({name}) unknown track_process {tracked} weight option {opt} - ignoring",
                254, False, True, False),
    "bfd": ("({name}) unknown track bfd {tracked} option {opt} - ignoring",
            "({name}) weight without value specified for track bfd {tracked} - ignoring",
            "({name}) weight for track bfd {tracked} must be in [-253..253] inclusive."
            " Ignoring...",
            "({name}) unknown track bfd {tracked} weight option {opt} - ignoring",
            253, False, True, True),
}


@dataclass
class TrackLine(Arg):
    """A line of a track_* block: ``NAME [weight N [reverse|noreverse]]``.

    The value is ``(name, weight, reverse)``; ``None`` means "the tracked
    object's own setting".  Whether the object exists is checked elsewhere.
    """

    kind: str = "script"

    def parse(self, words: list[str], ctx: Ctx) -> tuple[str, int | None, bool | None]:
        if not words:
            raise ctx.missing(words, 0)
        (opt_err, no_value, bad_weight, bad_option, limit, clamp, noreverse,
         stop) = _TRACK_TEXT[self.kind]
        name = block_name(ctx)
        tracked = words[0]
        weight: int | None = None
        reverse: bool | None = None
        if len(words) >= 2:
            if words[1] != "weight":
                ctx.report(Level.GENERAL_ERROR,
                           opt_err.format(name=name, tracked=tracked, opt=words[1]))
                raise Invalid()
            if len(words) == 2:
                ctx.report(Level.GENERAL_ERROR, no_value.format(name=name, tracked=tracked))
                raise Invalid()
            weight = or_none(read_int, words[2], -limit, limit, ctx)
            if weight is None:
                ctx.report(Level.GENERAL_ERROR,
                           bad_weight.format(name=name, tracked=tracked, word=words[2]))
                weight = 0 if self.kind == "interface" else None
            elif clamp and abs(weight) == 254:
                ctx.report(Level.GENERAL_ERROR,
                           f"({name}) weight for {tracked} cannot be +/-254. Setting to +/-253")
                weight = 253 if weight > 0 else -253
            if len(words) >= 4:
                if words[3] == "reverse":
                    reverse = True
                elif words[3] == "noreverse" and noreverse:
                    reverse = False
                else:
                    ctx.report(Level.GENERAL_ERROR,
                               bad_option.format(name=name, tracked=tracked, opt=words[3]))
                    if stop:
                        raise Invalid()
            if self.kind == "interface" and reverse is None:
                reverse = False
        elif self.kind == "interface":
            weight, reverse = 0, False
        return (tracked, weight, reverse)

    def render(self, value: tuple[str, int | None, bool | None]) -> list[str]:
        tracked, weight, reverse = value
        out = [tracked]
        if weight is not None or reverse is not None:
            out += ["weight", str(weight if weight is not None else 0)]
            if reverse is not None and (reverse or self.kind != "interface"):
                out.append("reverse" if reverse else "noreverse")
        return out


# -- addresses ----------------------------------------------------------------

_ADDR_FLAGS = ("home", "-nodad", "mngtmpaddr", "noprefixroute", "autojoin", "no_track")
_ADDR_SCOPES = ("global", "site", "link", "host", "nowhere")


def parse_prefixed(word: str, ctx: Ctx, allow_mask: bool = True) -> tuple[str, int]:
    """``parse_ipaddress``: ``(address, prefix length)``; reports like keepalived."""
    v6 = ":" in word
    full = 128 if v6 else 32
    addr, slash, mask = word.partition("/") if allow_mask else (word, "", "")
    prefix = full
    if slash:
        value = or_none(read_unsigned, mask, 0, full, ctx)
        if value is None:
            ctx.report(Level.GENERAL_ERROR,
                       f"Invalid address prefix len {mask} for address {word} - using {full}")
        else:
            prefix = value
    try:
        parsed = ipaddress.IPv6Address(addr) if v6 else ipaddress.IPv4Address(addr)
    except ValueError:
        ctx.report(Level.GENERAL_ERROR, f"VRRP parsed invalid IP {word}. skipping IP...")
        raise Invalid() from None
    return (str(parsed) if v6 else addr, prefix)


@dataclass
class AddressLine(Arg):
    """A virtual_ipaddress / static_ipaddress line.

    ``IP[/LEN] [dev IF] [scope S] [brd|broadcast IP|+|-] [label L] [peer IP]
    [home] [-nodad] [mngtmpaddr] [noprefixroute] [autojoin] [no_track]
    [preferred_lft N|forever] [use_vmac | track_group G]``

    The value is a tuple of words in a normal form: the address with its prefix
    first, then the options that were accepted, in the order given.
    """

    static: bool = False

    def parse(self, words: list[str], ctx: Ctx) -> tuple[str, ...]:
        if not words:
            raise ctx.missing(words, 0)
        first = words[0]
        addr, prefix = parse_prefixed(first, ctx)
        v6 = ":" in first
        out: list[str] = [f"{addr}/{prefix}" if "/" in first else addr]
        seen_dev = False
        i = 1
        while i < len(words):
            word = words[i]
            has_param = i + 1 < len(words)
            if word in ("dev", "scope", "broadcast", "brd", "label", "peer", "preferred_lft") \
                    or (word == "track_group" and self.static):
                if not has_param:
                    ctx.report(Level.GENERAL_ERROR, f"No {word} parameter specified for {first}")
                    raise Invalid()
                param = words[i + 1]
                i += 2
                if word == "dev":
                    if seen_dev:
                        ctx.report(Level.GENERAL_ERROR,
                                   f"Cannot specify ipaddress device more than once for {first}")
                        raise Invalid()
                    seen_dev = True
                    out += [word, param]
                elif word == "scope":
                    if param in _ADDR_SCOPES or param.isdigit() and int(param) < 256:
                        out += [word, param]
                    else:
                        ctx.report(Level.GENERAL_ERROR,
                                   f"Invalid scope '{param}' specified for {first} - ignoring")
                elif word in ("broadcast", "brd"):
                    if v6:
                        ctx.report(Level.GENERAL_ERROR,
                                   f"VRRP is trying to assign a broadcast {word} to the IPv6 "
                                   f"address {first} !!?? WTF... skipping VIP...")
                        raise Invalid()
                    if param not in ("+", "-"):
                        try:
                            ipaddress.IPv4Address(param)
                        except ValueError:
                            ctx.report(Level.GENERAL_ERROR,
                                       f"VRRP is trying to assign invalid broadcast {param}. "
                                       "skipping VIP...")
                            raise Invalid() from None
                    out += ["brd", param]
                elif word == "label":
                    if len(param) >= IFNAMSIZ:
                        ctx.report(Level.GENERAL_ERROR,
                                   f"Address label {param} is longer than maximum length "
                                   f"{IFNAMSIZ - 1} - removing address")
                        raise Invalid()
                    out += [word, param]
                elif word == "peer":
                    if "peer" in out:
                        ctx.report(Level.GENERAL_ERROR,
                                   f"Peer {param} - another peer has already been specified")
                        continue
                    if not is_ip(param):
                        ctx.report(Level.GENERAL_ERROR,
                                   f"VRRP parsed invalid IP {param}. skipping IP...")
                        ctx.report(Level.GENERAL_ERROR, f"Invalid peer address {param}")
                    elif (":" in param) != v6:
                        ctx.report(Level.GENERAL_ERROR,
                                   f"Peer address {param} does not match address family")
                    else:
                        out += [word, param]
                elif word == "preferred_lft":
                    if param == "forever":
                        out += [word, param]
                    elif (value := or_none(read_unsigned, param, 0, UINT_MAX, ctx)) is not None:
                        out += [word, str(value)]
                    else:
                        ctx.report(Level.GENERAL_ERROR, f"preferred_lft {param} is invalid")
                else:       # track_group
                    if "track_group" in out:
                        ctx.report(Level.GENERAL_ERROR, f"track_group {param} is a duplicate")
                        break
                    out += [word, param]
                continue
            if word in _ADDR_FLAGS or (word == "use_vmac" and not self.static):
                out.append(word)
            else:
                ctx.report(Level.GENERAL_ERROR,
                           f"Unknown configuration entry '{word}' for ip address - ignoring")
            i += 1
        return tuple(out)

    def render(self, value: Sequence[str]) -> list[str]:
        return list(value)


@dataclass
class PeerLine(Arg):
    """A unicast_peer line: ``ADDR [min_ttl N] [max_ttl N]`` -> ``(addr, min, max)``."""

    def parse(self, words: list[str], ctx: Ctx) -> tuple[str, int, int]:
        if not words:
            raise ctx.missing(words, 0)
        name = block_name(ctx)
        addr = words[0]
        if not sockaddr_ok(addr):
            ctx.report(Level.GENERAL_ERROR,
                       f"Configuration error: VRRP instance[{name}] malformed unicast peer "
                       f"address[{addr}]. Skipping...")
            raise Invalid()
        ttls = {"min_ttl": 0, "max_ttl": 255}
        for i in range(1, len(words), 2):
            if i + 1 >= len(words):
                ctx.report(Level.GENERAL_ERROR, f"({name}) {words[i]} is missing a value")
                break
            value = or_none(read_unsigned, words[i + 1], 0, 255, ctx)
            if value is not None:
                if words[i] not in ttls:
                    ctx.report(Level.GENERAL_ERROR,
                               f"({name}) unknown unicast_peer option {words[i]}")
                    break
                ttls[words[i]] = value
        if ttls["min_ttl"] > ttls["max_ttl"]:
            ctx.report(Level.GENERAL_ERROR,
                       f"({name}) min_ttl {ttls['min_ttl']} > max_ttl {ttls['max_ttl']} - all "
                       "packets will be discarded")
        return (addr, ttls["min_ttl"], ttls["max_ttl"])

    def render(self, value: tuple[str, int, int]) -> list[str]:
        addr, low, high = value
        out = [addr]
        if low != 0:
            out += ["min_ttl", str(low)]
        if high != 255:
            out += ["max_ttl", str(high)]
        return out


# Route options taking one value (``ip route`` syntax as keepalived reads it).
_ROUTE_VALUE_OPTS = frozenset((
    "tos", "dsfield", "table", "protocol", "scope", "metric", "priority", "preference",
    "dev", "oif", "expires", "realms", "features", "congctl", "pref", "ttl-propagate",
    "track_group", "vrf",
))
_ROUTE_METRICS = frozenset(("mtu", "hoplimit", "advmss", "rtt", "rttvar", "reordering",
                            "window", "cwnd", "ssthresh", "rto_min", "initcwnd", "initrwnd"))
_ROUTE_FLAGS = frozenset(("onlink", "quickack", "fastopen_no_cookie", "add", "prepend",
                          "append", "no_track", "inet", "inet6", "lock"))
_ROUTE_TYPES = frozenset(("unicast", "blackhole", "unreachable", "prohibit", "throw",
                          "local", "broadcast", "anycast", "multicast", "nat", "xresolve"))


@dataclass
class RouteLine(Arg):
    """A virtual_routes / static_routes line, kept as its words.

    The destination and the ``src``/``via``/``gw``/``from``/``or`` addresses
    are checked with keepalived's messages; the other route attributes (and
    ``encap``/``nexthop`` sections) are kept as written.
    """

    static: bool = False

    def parse(self, words: list[str], ctx: Ctx) -> tuple[str, ...]:
        if not words:
            raise ctx.missing(words, 0)
        i = 0
        while i < len(words):
            word = words[i]
            if word in ("encap", "nexthop"):
                break               # sub-grammars of their own: kept as written
            if word in ("src", "via", "gw", "from", "or", "as"):
                if i + 1 >= len(words):
                    raise ctx.missing(words, i + 2)
                if word == "gw":
                    ctx.report(Level.GENERAL_ERROR,
                               '"gw" for routes is deprecated. Please use "via"')
                if word == "or":
                    ctx.report(Level.GENERAL_ERROR,
                               '"or" for routes is deprecated. Please use "nexthop"')
                i += 1
                if word == "as":
                    if words[i] == "to":
                        i += 1
                    ctx.report(Level.GENERAL_ERROR, '"as to" for MPLS only - ignoring')
                    i += 1
                    continue
                if word in ("via", "gw") and words[i] in ("inet", "inet6") and i + 1 < len(words):
                    i += 1
                param = words[i]
                try:
                    parse_prefixed(param, ctx, allow_mask=word == "from")
                except Invalid:
                    what = {"gw": "via"}.get(word, word)
                    ctx.report(Level.GENERAL_ERROR,
                               f'Invalid "or" address {param}' if word == "or"
                               else f"invalid route {what} address {param}")
                    raise
                i += 1
                continue
            if word in _ROUTE_VALUE_OPTS or word in _ROUTE_METRICS:
                # metrics may be locked: "mtu lock 1400"
                if word in _ROUTE_METRICS and i + 1 < len(words) and words[i + 1] == "lock":
                    i += 1
                if i + 1 >= len(words):
                    raise ctx.missing(words, i + 2)
                i += 2
                continue
            if word in _ROUTE_FLAGS:
                i += 1
                continue
            # anything else is the destination, optionally after "to" and a type
            if word == "to":
                i += 1
            if i < len(words) and words[i] in _ROUTE_TYPES:
                i += 1
            dest = words[i] if i < len(words) else ""
            if not parse_route_dest(dest, ctx):
                ctx.report(Level.GENERAL_ERROR, f"unknown route keyword {dest}")
                raise Invalid()
            i += 1
        return tuple(words)

    def render(self, value: Sequence[str]) -> list[str]:
        return list(value)


_RULE_VALUE_OPTS = frozenset((
    "table", "lookup", "preference", "priority", "order", "tos", "dsfield", "fwmark",
    "realms", "suppress_prefixlength", "sup_pl", "suppress_ifgroup", "sup_group", "dev",
    "iif", "oif", "tunnel-id", "uidrange", "protocol", "ipproto", "sport", "dport",
))
_RULE_FLAGS = frozenset(("inet", "inet6", "no_track", "l3mdev", "nop", "not"))
_RULE_ACTIONS = frozenset(("blackhole", "unreachable", "prohibit"))


@dataclass
class RuleLine(Arg):
    """A virtual_rules / static_rules line, kept as its words.

    ``from``/``to`` addresses and actions are checked; an unknown option drops
    the rule, with keepalived's "Unknown rule option" message.
    """

    static: bool = False

    def parse(self, words: list[str], ctx: Ctx) -> tuple[str, ...]:
        if not words:
            raise ctx.missing(words, 0)
        i = 0
        while i < len(words):
            word = words[i]
            if word in _RULE_FLAGS:
                i += 1
                continue
            if word in _RULE_VALUE_OPTS or word in ("from", "to", "goto") or \
                    (word == "track_group" and self.static):
                if i + 1 >= len(words):
                    raise ctx.missing(words, i + 2)
                param = words[i + 1]
                if word in ("from", "to") and not parse_route_dest(param, ctx):
                    ctx.report(Level.GENERAL_ERROR, f"Invalid rule {word} address {param}")
                    raise Invalid()
                if word == "goto" and or_none(read_unsigned, param, 0, UINT_MAX, ctx) is None:
                    ctx.report(Level.GENERAL_ERROR, "Invalid target goto specified")
                    raise Invalid()
                i += 2
                continue
            if word == "type" and i + 1 < len(words):
                i += 1
                word = words[i]
            if word in _RULE_ACTIONS:
                i += 1
                continue
            if word in _ROUTE_TYPES:
                ctx.report(Level.GENERAL_ERROR, f"Invalid rule action {word}")
            else:
                ctx.report(Level.GENERAL_ERROR, f"Unknown rule option {word}")
            raise Invalid()
        return tuple(words)

    def render(self, value: Sequence[str]) -> list[str]:
        return list(value)


# -- small structured lines ---------------------------------------------------

@dataclass
class LinkbeatLine(Arg):
    """``IF [MII|ETHTOOL|IOCTL]`` in linkbeat_interfaces -> ``(if, type)``."""

    def parse(self, words: list[str], ctx: Ctx) -> tuple[str, str]:
        if not words:
            raise ctx.missing(words, 0)
        kind = ""
        if len(words) > 1:
            if words[1] in ("MII", "ETHTOOL", "IOCTL"):
                kind = words[1]
            if not kind or len(words) > 2:
                ctx.report(Level.GENERAL_ERROR,
                           f"extra characters {words[1]} in linkbeat interface")
        return (words[0], kind)

    def render(self, value: tuple[str, str]) -> list[str]:
        return [value[0], *([value[1]] if value[1] else [])]


@dataclass
class UpDownDelayLine(Arg):
    """``IF DOWN_DELAY [UP_DELAY]`` in interface_up_down_delays -> ``(if, down, up)``.

    keepalived only logs problems here, so they are notes for us.
    """

    def parse(self, words: list[str], ctx: Ctx) -> tuple[str, float, float]:
        if not words:
            raise ctx.missing(words, 0)
        ifname = words[0]
        if len(words) < 2:
            ctx.report(Level.NOTE, f"No timeouts specified for {ifname} up/down delays")
            raise Invalid()
        if len(words) > 3:
            ctx.report(Level.NOTE, f"Too many parameters for {ifname} up/down delays")
        delays: list[float] = []
        for word, what in zip(words[1:3], ("down", "up"), strict=False):
            try:
                value = read_decimal(word, 0, 255 * 10**6, TIMER_HZ_DIGITS, ctx)
            except Invalid:
                ctx.report(Level.NOTE, f"Invalid {what} delay {word} for {ifname}")
                raise
            delays.append(value / 10**6)
        if len(delays) == 1:
            delays.append(0.0)
        return (ifname, delays[0], delays[1])

    def render(self, value: tuple[str, float, float]) -> list[str]:
        out = [value[0], format_decimal(value[1], 6)]
        if value[2]:
            out.append(format_decimal(value[2], 6))
        return out


@dataclass
class Word(Arg):
    """Each word of a value block on its own (group members, e-mail addresses...)."""

    def parse(self, words: list[str], ctx: Ctx) -> tuple[str, ...]:
        if not words:
            raise ctx.missing(words, 0)
        return tuple(words)

    def render(self, value: Sequence[str]) -> list[str]:
        return list(value)


# -- keyword-specific argument lists -------------------------------------------

def _dev_name_valid(name: str) -> bool:
    return bool(name) and len(name) < IFNAMSIZ and name not in (".", "..") and \
        not any(c in "/:" or c.isspace() for c in name)


@dataclass
class UseVmac(Arg):
    """``use_vmac [[name] IFNAME] [MAC] [netlink_notify_msg] [group ID]``."""

    def parse(self, words: list[str], ctx: Ctx) -> tuple[str, ...]:
        out: list[str] = []
        have_mac = have_name = False
        i = 0
        while i < len(words):
            word = words[i]
            if word in ("name", "group") and i + 1 < len(words):
                out += [word, words[i + 1]]         # 2.3.0 syntax
                i += 2
                continue
            if word == "netlink_notify_msg":
                out.append(word)
            elif i >= 2:
                break                               # 2.2.7 reads at most two words
            elif ":" in word:
                if have_mac:
                    ctx.report(Level.GENERAL_ERROR, "VMAC interface address already specified")
                elif not _mac_ok(word):
                    if word.strip("0123456789ABCDEFabcdef:"):
                        ctx.report(Level.GENERAL_ERROR, f"VMAC invalid MAC address {word}")
                    else:
                        ctx.report(Level.GENERAL_ERROR,
                                   f"VMAC invalid MAC address {word} - ignored")
                elif int(word.split(":")[0], 16) & 1:
                    ctx.report(Level.GENERAL_ERROR,
                               f"VMAC MAC address is multicast {word} - ignoring")
                else:
                    have_mac = True
                    out.append(word)
            else:
                if have_name:
                    ctx.report(Level.GENERAL_ERROR, "VMAC interface name already specified")
                elif not _dev_name_valid(word):
                    ctx.report(Level.GENERAL_ERROR,
                               f"VMAC interface name '{word}' too long or invalid characters"
                               " - ignoring")
                else:
                    have_name = True
                    out.append(word)
            i += 1
        return tuple(out)

    def render(self, value: Sequence[str]) -> list[str]:
        return list(value)


def _mac_ok(text: str) -> bool:
    """5 octets (VRID appended) or 6, each one or two hex digits."""
    parts = text.rstrip(":").split(":") if text.count(":") == 5 and text.endswith(":") \
        else text.split(":")
    return len(parts) in (5, 6) and all(
        1 <= len(p) <= 2 and all(c in "0123456789abcdefABCDEF" for c in p) for p in parts)


@dataclass
class UseIpvlan(Arg):
    """``use_ipvlan [IFNAME] [ADDR[/LEN]] [bridge|private|vepa]``."""

    def parse(self, words: list[str], ctx: Ctx) -> tuple[str, ...]:
        name = block_name(ctx)
        out: list[str] = []
        have_type = have_addr = have_if = False
        i = 0
        while i < len(words):
            word = words[i]
            if word in ("name", "group") and i + 1 < len(words):
                out += [word, words[i + 1]]         # 2.3.0 syntax
                i += 2
                continue
            i += 1
            if word in ("bridge", "private", "vepa"):
                if have_type:
                    ctx.report(Level.GENERAL_ERROR,
                               f"({name}) ipvlan type already specified - ignoring '{word}'")
                else:
                    have_type = True
                    out.append(word)
            elif is_ip(word.split("/", 1)[0]):
                if have_addr:
                    ctx.report(Level.GENERAL_ERROR,
                               f"({name}) ipvlan address already specified - ignoring '{word}'")
                else:
                    have_addr = True
                    out.append(word)
            elif have_if:
                ctx.report(Level.GENERAL_ERROR,
                           f"({name}) IPVLAN interface already specified - ignoring '{word}'")
            elif len(word) >= IFNAMSIZ:
                ctx.report(Level.GENERAL_ERROR,
                           f"({name}) IPVLAN interface name '{word}' too long - ignoring")
            else:
                have_if = True
                out.append(word)
        return tuple(out)

    def render(self, value: Sequence[str]) -> list[str]:
        return list(value)


@dataclass
class GarpExtraIf(Arg):
    """``[all] SECS`` for garp_extra_if / vrrp_garp_extra_if -> ``(all, secs)``."""

    lo: int = 0
    global_: bool = False
    name_prefix: bool = True

    def parse(self, words: list[str], ctx: Ctx) -> tuple[bool, int]:
        prefix = f"({block_name(ctx)}): " if self.name_prefix else ""
        all_if = False
        delay: int | None = None
        for word in words:
            if word == "all":
                all_if = True
                continue
            try:
                delay = read_unsigned(word, self.lo, 86400, ctx)
            except Invalid:
                ctx.report(Level.GENERAL_ERROR,
                           f"{prefix}{ctx.keyword} '{word}' invalid - ignoring")
                raise
        if delay is None or (self.global_ and delay == 0):
            ctx.report(Level.GENERAL_ERROR,
                       f"{prefix}{ctx.keyword} specified without time - ignoring")
            raise Invalid()
        return (all_if, delay)

    def render(self, value: tuple[bool, int]) -> list[str]:
        return [*(["all"] if value[0] else []), str(value[1])]


@dataclass
class LvsTimeouts(Arg):
    """``lvs_timeouts [tcp S] [tcpfin S] [udp S]`` -> sorted ``((name, secs), ...)``."""

    def parse(self, words: list[str], ctx: Ctx) -> tuple[tuple[str, int], ...]:
        if len(words) < 2:
            ctx.report(Level.GENERAL_ERROR, "lvs_timeouts requires at least one option")
            raise Invalid()
        got: dict[str, int] = {}
        i = 0
        while i < len(words):
            word = words[i]
            if word in ("tcp", "tcpfin", "udp"):
                if i == len(words) - 1:
                    ctx.report(Level.GENERAL_ERROR,
                               f"No value specified for lvs_timeout {word} - ignoring")
                    i += 1
                    continue
                value = or_none(read_unsigned, words[i + 1], 0, 86400 * 31, ctx)
                if value is None:
                    ctx.report(Level.GENERAL_ERROR,
                               f"Invalid lvs_timeout {word} ({words[i + 1]}) - ignoring")
                else:
                    got[word] = value
                i += 2
                continue
            ctx.report(Level.GENERAL_ERROR, f"Unknown option {word} specified for lvs_timeouts")
            i += 1
        return tuple(sorted(got.items()))

    def render(self, value: Sequence[tuple[str, int]]) -> list[str]:
        return [w for name, secs in value for w in (name, str(secs))]


@dataclass
class LvsSyncDaemon(Arg):
    """``lvs_sync_daemon IF [[inst] VI] [id N] [maxlen N] [port N] [ttl N] [group IP]``."""

    def parse(self, words: list[str], ctx: Ctx) -> tuple[str, ...]:
        if not words:
            ctx.report(Level.GENERAL_ERROR, "lvs_sync_daemon requires interface")
            raise Invalid()
        if len(words[0]) >= IFNAMSIZ:
            ctx.report(Level.GENERAL_ERROR,
                       f"lvs_sync_daemon interface name '{words[0]}' too long - ignoring")
            raise Invalid()
        out = [words[0]]
        limits = {"id": (0, 255), "maxlen": (1, 65535 - 20 - 8), "port": (1, 65535),
                  "ttl": (1, 255)}
        i = 1
        while i < len(words):
            word = words[i]
            last = i == len(words) - 1
            if word == "inst":
                if not last:
                    out += ["inst", words[i + 1]]
                i += 2
                continue
            if word in limits or word == "group":
                if last:
                    tail = ", defaulting to vrid" if word == "id" else " - ignoring"
                    ctx.report(Level.GENERAL_ERROR,
                               f"No value specified for lvs_sync_daemon {word}{tail}")
                    i += 1
                    continue
                param = words[i + 1]
                if word == "group":
                    if not is_ip(param):
                        ctx.report(Level.GENERAL_ERROR,
                                   f"Invalid lvs_sync_daemon group ({param}) - ignoring")
                    elif not ipaddress.ip_address(param).is_multicast:
                        ctx.report(Level.GENERAL_ERROR, f"lvs_sync_daemon group address "
                                   f"{param} is not multicast - ignoring")
                    else:
                        out += [word, param]
                elif (value := or_none(read_unsigned, param, *limits[word], ctx)) is None:
                    ctx.report(Level.GENERAL_ERROR,
                               f"Invalid syncid ({param}) - defaulting to vrid" if word == "id"
                               else f"Invalid lvs_sync_daemon {word} ({param}) - ignoring")
                else:
                    out += [word, str(value)]
                i += 2
                continue
            if i == 1:
                out += ["inst", word]           # old form: IF INSTANCE [SYNCID]
            elif i == 2:
                if (value := or_none(read_unsigned, word, 0, 255, ctx)) is None:
                    ctx.report(Level.GENERAL_ERROR, f"Invalid syncid ({word}) - defaulting to vrid")
                else:
                    ctx.report(Level.GENERAL_ERROR,
                               'Please use keyword "id" before lvs_sync_daemon SYNCID')
                    out += ["id", str(value)]
            else:
                ctx.report(Level.GENERAL_ERROR,
                           f"Unknown option {word} specified for lvs_sync_daemon")
            i += 1
        return tuple(out)

    def render(self, value: Sequence[str]) -> list[str]:
        return list(value)


_UMASK_BITS = {"IRUSR": 0o400, "IWUSR": 0o200, "IXUSR": 0o100, "IRGRP": 0o40, "IWGRP": 0o20,
               "IXGRP": 0o10, "IROTH": 0o4, "IWOTH": 0o2, "IXOTH": 0o1}


@dataclass
class Umask(Arg):
    """``umask NUMBER`` or ``umask IRUSR | IWGRP ...`` -> the mode bits."""

    def parse(self, words: list[str], ctx: Ctx) -> int:
        if not words:
            raise ctx.missing(words, 1)
        if words[0][:1].isdigit():
            if len(words) != 1:
                ctx.report(Level.GENERAL_ERROR, "Extra parameter(s) to umask option")
                raise Invalid()
            value, rest, _ = c_strtol(words[0], 0)     # 0755 is octal, 0x1ff hex
            if rest or value < 0 or value & ~0o777:
                ctx.report(Level.GENERAL_ERROR, f"invalid umask value {words[0]}")
                raise Invalid()
            return value
        bits = 0
        need_or = False
        for word in words:
            pos = 0
            while pos < len(word):
                if need_or:
                    if word[pos] == "|":
                        need_or = False
                        pos += 1
                        continue
                    ctx.report(Level.GENERAL_ERROR, f"Invalid umask syntax {word}")
                    raise Invalid()
                bit = _UMASK_BITS.get(word[pos:pos + 5])
                if bit is None:
                    ctx.report(Level.GENERAL_ERROR, f"Unknown umask bit {word[pos:]}")
                    raise Invalid()
                bits |= bit
                pos += 5
                need_or = True
        if not need_or:
            ctx.report(Level.GENERAL_ERROR, "umask missing bit value")
            raise Invalid()
        return bits

    def render(self, value: int) -> list[str]:
        return [f"0{value:o}"]


@dataclass
class CpuList(Arg):
    """``*_cpu_affinity CPU...`` -> the CPU numbers (checked against this host later)."""

    process: str = "vrrp"

    def parse(self, words: list[str], ctx: Ctx) -> tuple[int, ...]:
        if not words:
            ctx.report(Level.GENERAL_ERROR, f"No {self.process} cpu_id set specified")
            raise Invalid()
        cpus: list[int] = []
        for word in words:
            try:
                cpus.append(read_int(word, 0, 4095, ctx))
            except Invalid:
                ctx.report(Level.GENERAL_ERROR,
                           f"Invalid cpu_id:{word} specified for {self.process} process")
                raise
        return tuple(cpus)

    def render(self, value: Sequence[int]) -> list[str]:
        return [str(v) for v in value]


@dataclass
class RtPriority(Arg):
    """``*_rt_priority N``: clamped to SCHED_RR's 1..99 as keepalived does."""

    process: str = "vrrp"

    def parse(self, words: list[str], ctx: Ctx) -> int:
        if not words:
            ctx.report(Level.GENERAL_ERROR,
                       f"No {self.process} process real-time priority specified")
            raise Invalid()
        try:
            value = read_int(words[0], INT_MIN, INT_MAX, ctx)
        except Invalid:
            ctx.report(Level.GENERAL_ERROR,
                       f"{self.process} process real-time priority '{words[0]}' invalid")
            raise
        if value < 1:
            ctx.report(Level.GENERAL_ERROR, f"{self.process} process real-time priority "
                       f"{value} less than minimum 1 - setting to minimum")
            value = 1
        elif value > 99:
            ctx.report(Level.GENERAL_ERROR, f"{self.process} process real-time priority "
                       f"{value} greater than maximum 99 - setting to maximum")
            value = 99
        return value

    def render(self, value: int) -> list[str]:
        return [str(value)]


@dataclass
class RxBufsPolicy(Arg):
    """``vrrp_rx_bufs_policy MTU|ADVERT|SIZE`` -> the words kept."""

    def parse(self, words: list[str], ctx: Ctx) -> tuple[str, ...]:
        if not words:
            ctx.report(Level.GENERAL_ERROR, "vrrp_rx_bufs_policy missing")
            raise Invalid()
        policies: list[str] = []
        size: str | None = None
        for word in words:
            if word.upper() in ("MTU", "ADVERT"):
                policies.append(word.upper())
            # keepalived reads the first word as the size whatever word is wrong
            elif or_none(read_unsigned, words[0], 0, UINT_MAX, ctx) is None:
                ctx.report(Level.GENERAL_ERROR, f"Invalid vrrp_rx_bufs_policy {word}")
            else:
                size = words[0]
        if size is not None and policies:
            ctx.report(Level.GENERAL_ERROR,
                       "Cannot set vrrp_rx_bufs_policy size and policy, ignoring policy")
            policies = []
        elif "MTU" in policies and "ADVERT" in policies:
            ctx.report(Level.GENERAL_ERROR,
                       "Cannot set both vrrp_rx_bufs_policy MTU and ADVERT, ignoring ADVERT")
            policies.remove("ADVERT")
        return (size,) if size is not None else tuple(dict.fromkeys(policies))

    def render(self, value: Sequence[str]) -> list[str]:
        return list(value)


@dataclass
class McastGroup(Arg):
    """``vrrp_mcast_group4|6 ADDR`` with keepalived's checks."""

    version: int = 4

    def parse(self, words: list[str], ctx: Ctx) -> str:
        if not words:
            raise ctx.missing(words, 1)
        word, kw = words[0], ctx.keyword
        if not sockaddr_ok(word):
            ctx.report(Level.GENERAL_ERROR, f"Can't parse {kw} [{word}]. Skipping")
            raise Invalid()
        addr = ipaddress.ip_address(word.split("-", 1)[0].split("/", 1)[0])
        if addr.version != self.version:
            ctx.report(Level.GENERAL_ERROR,
                       f"{kw} [{word}] is not IPv{self.version}. Skipping")
            raise Invalid()
        if not addr.is_multicast:
            ctx.report(Level.GENERAL_ERROR, f"{kw} [{word}] is not multicast. Skipping")
            raise Invalid()
        if self.version == 6 and (addr.packed[1] & 0x0F) != 2:
            ctx.report(Level.WARNING, f"{kw} [{word}] should be link-local multicast.")
        return word

    def render(self, value: str) -> list[str]:
        return [value]


@dataclass
class McastDst(Arg):
    """vrrp_instance ``mcast_dst_ip``: IPv4 multicast or IPv6 link-local multicast."""

    def parse(self, words: list[str], ctx: Ctx) -> str:
        if not words:
            raise ctx.missing(words, 1)
        word, name = words[0], block_name(ctx)
        if not sockaddr_ok(word):
            ctx.report(Level.GENERAL_ERROR,
                       f"({name}) malformed mcast dest address {word}. Skipping...")
            raise Invalid()
        addr = ipaddress.ip_address(word.split("-", 1)[0].split("/", 1)[0])
        ok = addr.is_multicast and (addr.version == 4 or (addr.packed[1] & 0x0F) == 2)
        if not ok:
            ctx.report(Level.GENERAL_ERROR, f"({name}) mcast_dst_ip {word} not"
                       f"{' link-local' if addr.version == 6 else ''} multicast. Skipping...")
            raise Invalid()
        return word

    def render(self, value: str) -> list[str]:
        return [value]


@dataclass
class SmtpServer(Arg):
    """``smtp_server HOST [PORT]`` -> ``(host, port)``; names are resolved later."""

    def parse(self, words: list[str], ctx: Ctx) -> tuple[str, str]:
        if not words:
            raise ctx.missing(words, 1)
        port = words[1] if len(words) >= 2 else "25"
        if not port.isdigit() or not 0 < int(port) < 65536:
            ctx.report(Level.GENERAL_ERROR, f"Invalid smtp server {words[0]} {port}")
            raise Invalid()
        return (words[0], port)

    def render(self, value: tuple[str, str]) -> list[str]:
        return [value[0], *([value[1]] if value[1] != "25" else [])]


@dataclass
class InitFile(Arg):
    """track_file ``init_file [VALUE] [overwrite]`` -> ``(value, overwrite)``."""

    def parse(self, words: list[str], ctx: Ctx) -> tuple[int, bool]:
        name = block_name(ctx)
        value = 0
        overwrite = False
        for raw in words:
            word = raw.lstrip(WHITE_SPACE)
            if word[:1].isdigit() or word[:1] == "-":
                number = or_none(read_int, raw, INT_MIN, INT_MAX, ctx)
                if number is None:
                    ctx.report(Level.GENERAL_ERROR,
                               f"Track file {name} init value {word} is invalid")
                    number = 0
                elif not -254 <= number <= 254:
                    ctx.report(Level.GENERAL_ERROR, f"Track file {name} init value {number} "
                               "is outside sensible range [-254, 254]")
                value = number
            elif word == "overwrite":
                overwrite = True
            else:
                ctx.report(Level.GENERAL_ERROR, f"Unknown track file init option {word}")
        return (value, overwrite)

    def render(self, value: tuple[int, bool]) -> list[str]:
        return [str(value[0]), *(["overwrite"] if value[1] else [])]


@dataclass
class ProcessName(Arg):
    """``process_name NAME`` etc.: truncated to 15 characters like the kernel's comm."""

    def parse(self, words: list[str], ctx: Ctx) -> str:
        if not words:
            raise ctx.missing(words, 1)
        name = words[0]
        if len(name) >= 16:
            ctx.report(Level.GENERAL_ERROR,
                       f"Process name {name} more than 15 characters, truncating")
            name = name[:15]
        return name

    def render(self, value: str) -> list[str]:
        return [value]


@dataclass
class NameList(Arg):
    """Up to ``max`` names each shorter than ``maxlen`` (vrrp_iptables, vrrp_ipsets)."""

    max: int = 2
    maxlen: int = 30
    errors: tuple[str, ...] = field(default_factory=tuple)
    notice: str | None = None          # said whatever the words

    def parse(self, words: list[str], ctx: Ctx) -> tuple[str, ...]:
        if self.notice:
            ctx.report(Level.GENERAL_ERROR, self.notice)
        kept: list[str] = []
        for word, error in zip(words[: self.max], self.errors, strict=False):
            if len(word) >= self.maxlen:
                ctx.report(Level.GENERAL_ERROR, error)
                break
            kept.append(word)
        return tuple(kept)

    def render(self, value: Sequence[str]) -> list[str]:
        return list(value)


@dataclass
class HmacKey(Arg):
    """auth_hmac ``key ID VALUE`` (2.4.0) -> ``(id, value)``; the secret is not decoded."""

    def parse(self, words: list[str], ctx: Ctx) -> tuple[int, str]:
        name = block_name(ctx)
        if len(words) < 2:
            ctx.report(Level.GENERAL_ERROR, f"({name}) auth_hmac key needs an id and a value")
            raise Invalid()
        try:
            key_id = read_unsigned(words[0], 1, 255, ctx)
        except Invalid:
            ctx.report(Level.GENERAL_ERROR,
                       f"({name}) auth_hmac key id '{words[0]}' must be between 1 and 255")
            raise
        return (key_id, words[1])

    def render(self, value: tuple[int, str]) -> list[str]:
        return [str(value[0]), value[1]]


@dataclass
class Name(Arg):
    """A block's name where keepalived wants exactly one word after the keyword."""

    error: str = "{kw} must have a name"

    def parse(self, words: list[str], ctx: Ctx) -> str:
        if len(words) != 1:
            ctx.report(Level.GENERAL_ERROR, _fmt(self.error, ctx))
            raise Invalid()
        return words[0]

    def render(self, value: str) -> list[str]:
        return [value]


@dataclass
class Notice(Arg):
    """A bare keyword that keepalived accepts with a complaint (deprecated forms)."""

    messages: tuple[str, ...] = ()
    level: Level = Level.GENERAL_ERROR

    def parse(self, words: list[str], ctx: Ctx) -> bool:
        for message in self.messages:
            ctx.report(self.level, _fmt(message, ctx))
        return True

    def render(self, value: bool) -> list[str]:
        return []


@dataclass
class LvsSyncInterface(Arg):
    """vrrp_instance ``lvs_sync_daemon_interface IF`` (deprecated since 1.2.19)."""

    def parse(self, words: list[str], ctx: Ctx) -> str:
        name = block_name(ctx)
        ctx.report(Level.GENERAL_ERROR, f"({name}) Specifying lvs_sync_daemon_interface "
                   "against a vrrp is deprecated.")
        ctx.report(Level.GENERAL_ERROR,
                   "      " + " " * abs(len(name) - 2) + "Please use global lvs_sync_daemon")
        if not words:
            raise ctx.missing(words, 1)
        return words[0]

    def render(self, value: str) -> list[str]:
        return [value]
